"""PixelCNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", section 3.5) on
statically binarized MNIST: exact negative log-likelihood by masked convolutions, ancestral
samples and completions.

  ./launch.sh pixelcnn_mnist        # the CPU default (2 cores: about 12 minutes)
  ./launch.sh pixelcnn_mnist --config.model_kwargs.features=128 \\
      --config.model_kwargs.num_layers=12 --config.model_kwargs.output_features=128 \\
      --config.num_epochs=50                                     # the full-size (GPU) run

Anchor: van den Oord et al. (2016) report 81.30 nats for PixelCNN on binarized MNIST.
Goals: test NLL <= 85 nats within a CPU budget, <= 81.3 on a GPU run.

The CPU default is the model's defaults (features 64, 5 residual blocks: 74,625 parameters) for
3 epochs of the 55,000 training images at batch 4, then the exact NLL of the 10,000 test images,
64 samples and 10 x 3 completions (784 or 392 sequential passes): test NLL 90.84 nats after
629 s of training, 11 minutes in all. Batch 4: for the same images seen, more and smaller steps
train further, and on 2 cores small batches run faster per image. One epoch (cosine decay over
it) gave a test NLL of 93.37 nats at batch 16 (310 images/s) and 92.10 at batch 4 (240
images/s), where three epochs at batch 64 (185 images/s) gave 93.26.
"""

import ml_collections

from experiments.configs import base


def pixelcnn_config(name: str, model: str, num_epochs: int) -> ml_collections.ConfigDict:
  """The recipe of the autoregressive configs: Adam 1e-3 with cosine decay, batch 4, the exact
  NLL per image as the loss, 5,000 training images held out for validation."""
  config = base.image_epoch_config("autoregressive", name, model, num_epochs, batch_size=4,
                                   eval_batch_size=500)
  config.log_every_steps = 1000
  config.checkpoint_every_steps = 5000
  config.binarization_seed = 0  # the one Bernoulli draw of the pixels ("static")
  config.num_samples = 64  # samples.png: ancestral samples (0: none)
  config.completion_images = 10  # completions.png: test images whose bottom half is sampled
  config.completion_samples = 3  # completions of each
  return config


def get_config():
  return pixelcnn_config("pixelcnn_mnist", "pixelcnn", num_epochs=3)
