"""Denoising Fashion-MNIST (section 5.3.5): `denoise_mnist` on Fashion-MNIST, Gaussian noise of
sigma 0.4 (the same flags give the other noises and the UNet).

  ./launch.sh denoise_fashion
  ./launch.sh denoise_fashion --config.noise=salt_and_pepper --config.noise_level=0.2
"""

from experiments.configs import denoise_mnist


def get_config():
  config = denoise_mnist.get_config()
  config.experiment = "denoise_fashion"
  config.dataset = "fashion_mnist"
  return config
