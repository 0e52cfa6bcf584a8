"""DCGAN (Radford et al. 2016) on MNIST, measured by the Frechet distance on the features of
dl_jax's own `mnist_cnn` (trained by the task on the same images; see `dl_jax/tasks/gan.py`).

  ./launch.sh dcgan_mnist                     # the CPU default (2 cores: about 9 minutes)
  ./launch.sh dcgan_mnist --config.model_kwargs.features='(64,128)' --config.batch_size=128 \
      --config.num_steps=9375 --config.eval_every_steps=1000      # the full size: 20 epochs

The full size is the DCGAN recipe for 28x28 (generator z(100) -> 7x7x128 -> 14x14x64 -> 28x28,
discriminator its mirror, 1.05M parameters, batch 128 as in the paper; a step of batch 64
takes 0.32 s on 2 CPU cores, so this is a GPU run); the CPU default halves the widths
(z(100) -> 7x7x64 -> 14x14x32 -> 28x28, 0.42M parameters, 0.085 s per step) and trains 5,000
steps of batch 64 (5.3 epochs).
"""

import ml_collections


def dcgan_config(name: str, dataset: str) -> ml_collections.ConfigDict:
  """The DCGAN recipe (the `dcgan_*` configs): Adam 2e-4, beta1 0.5 for both players, one
  discriminator then one generator update per step, the non-saturating generator loss; the
  Frechet distance on 10,000 images at the end, on 2,000 at every evaluation."""
  config = ml_collections.ConfigDict()
  config.task = "gan"
  config.experiment = name
  config.model = "dcgan"
  config.model_kwargs = ml_collections.ConfigDict()
  config.model_kwargs.features = (32, 64)  # discriminator widths; the generator mirrors them
  config.dataset = dataset
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax
  config.train_subset = 0  # 0: all 60,000 training images
  config.seed = 0
  config.batch_size = 64
  config.eval_batch_size = 500
  config.num_steps = 5000
  config.eval_every_steps = 500
  config.max_steps = 0
  config.learning_rate = 2e-4  # both players (DCGAN section 4)
  config.beta1 = 0.5
  config.beta2 = 0.999
  # The features: '' -> mnist_cnn trained by the task (classifier_steps steps, Adam 1e-3,
  # batch 128, seed 0); or the workdir of a finished image_classification run of mnist_cnn on
  # the same dataset.
  config.feature_classifier = ""
  config.classifier_steps = 2000
  config.fd_samples = 10000  # generated vs test images at the end (the floor: train vs test)
  config.eval_fd_samples = 2000  # at every evaluation
  config.grid_size = 64  # the fixed z of the sample grids
  config.log_every_steps = 100
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 3
  return config


def get_config():
  return dcgan_config("dcgan_mnist", "mnist")
