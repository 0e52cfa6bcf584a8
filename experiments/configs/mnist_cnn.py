"""The CNN of section 5.3.1 (figure 5.23) on MNIST.

  ./launch.sh mnist_cnn

Expected: >= 99.0 % test accuracy (see the README results table).
"""

from experiments.configs import base


def get_config():
  config = base.base_config()
  config.experiment = "mnist_cnn"
  config.model = "mnist_cnn"
  config.num_epochs = 10
  return config
