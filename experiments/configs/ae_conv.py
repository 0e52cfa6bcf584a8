"""A convolutional autoencoder (figure 5.41) with a 30-unit code on MNIST, section 5.5.1.

  ./launch.sh ae_conv
  ./launch.sh ae_conv --config.dataset=fashion_mnist
"""

from experiments.configs import base


def get_config():
  return base.autoencoder_config("ae_conv", "ae_conv", num_epochs=20)
