"""MLP 784-256-256-10 on MNIST (section 2.5 of the notes).

  ./launch.sh mnist_mlp

Expected: >= 98.0 % test accuracy (see the README results table).
"""

from experiments.configs import base


def get_config():
  config = base.base_config()
  config.experiment = "mnist_mlp"
  config.model = "mnist_mlp"
  config.model_kwargs.dropout_rate = 0.2
  config.num_epochs = 20
  return config
