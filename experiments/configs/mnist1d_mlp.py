"""The MLP 40-100-100-10 on MNIST-1D (1-D signals of 40 samples).

  ./launch.sh mnist1d_mlp

Measured (seed 0): 63.8 % test accuracy (the paper: 68 %, training on all 4000
signals; here 500 are held out for validation). The recipe is `base.mnist1d_config`.
"""

from experiments.configs import base


def get_config():
  return base.mnist1d_config("mnist1d_mlp", "mnist1d_mlp")
