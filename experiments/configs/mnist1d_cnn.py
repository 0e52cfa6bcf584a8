"""The 1-D CNN (three convolutions of 25 channels, stride 2) on MNIST-1D.

  ./launch.sh mnist1d_cnn

Measured (seed 0): 90.8 % test accuracy (the paper: 94 %, training on all 4000
signals; here 500 are held out for validation). The recipe is `base.mnist1d_config`.
"""

from experiments.configs import base


def get_config():
  return base.mnist1d_config("mnist1d_cnn", "mnist1d_cnn")
