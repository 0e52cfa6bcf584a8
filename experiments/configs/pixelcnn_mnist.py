"""PixelCNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", section 3.5) on
statically binarized MNIST: exact negative log-likelihood by masked convolutions, ancestral
samples and completions.

  ./launch.sh pixelcnn_mnist        # the CPU default (2 cores: about 20 minutes)
  ./launch.sh pixelcnn_mnist --config.model_kwargs.features=128 \\
      --config.model_kwargs.num_layers=12 --config.model_kwargs.output_features=128 \\
      --config.num_epochs=50                                     # the full-size (GPU) run

Anchor: van den Oord et al. (2016) report 81.30 nats for PixelCNN on binarized MNIST.
Goals: test NLL <= 85 nats within a CPU budget, <= 81.3 on a GPU run.

The CPU default is the model's defaults (features 64, 5 residual blocks: 74,625 parameters) for
3 epochs of the 55,000 training images, batch 64 (about 0.35 s a step on 2 cores: 910 s), then
the exact NLL of the 10,000 test images, 64 samples and 10 x 3 completions (784 or 392
sequential passes): 17 minutes in all, test NLL 93.26 nats. The full-size run (12 blocks of 128
maps, 50 epochs) has not been made: there is no GPU here.
"""

import ml_collections

from experiments.configs import base


def pixelcnn_config(name: str, model: str, num_epochs: int) -> ml_collections.ConfigDict:
  """The recipe of the autoregressive configs: Adam 1e-3 with cosine decay, batch 64, the exact
  NLL per image as the loss, 5,000 training images held out for validation."""
  config = base.image_epoch_config("autoregressive", name, model, num_epochs, batch_size=64,
                                   eval_batch_size=500)
  config.binarization_seed = 0  # the one Bernoulli draw of the pixels ("static")
  config.num_samples = 64  # samples.png: ancestral samples (0: none)
  config.completion_images = 10  # completions.png: test images whose bottom half is sampled
  config.completion_samples = 3  # completions of each
  return config


def get_config():
  return pixelcnn_config("pixelcnn_mnist", "pixelcnn", num_epochs=3)
