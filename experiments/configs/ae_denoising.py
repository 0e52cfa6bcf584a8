"""The denoising autoencoder of eq. 5.29: the convolutional autoencoder fed images with a
fraction 0.3 of their pixels set to salt or pepper, trained to give back the clean image.

  ./launch.sh ae_denoising
  ./launch.sh ae_denoising --config.noise=gaussian --config.noise_level=0.3
"""

from experiments.configs import base


def get_config():
  config = base.autoencoder_config("ae_denoising", "ae_conv", num_epochs=20)
  config.noise = "salt_and_pepper"
  config.noise_level = 0.3
  return config
