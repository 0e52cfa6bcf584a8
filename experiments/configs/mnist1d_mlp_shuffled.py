"""The MLP on MNIST-1D with its 40 positions shuffled: no loss in the paper, an MLP has no
notion of position.

  ./launch.sh mnist1d_mlp_shuffled

Measured (seed 0): 61.6 % test accuracy (the paper: 68 % unshuffled, training on all 4000
signals; here 500 are held out for validation). The recipe is `base.mnist1d_config`.
"""

from experiments.configs import base


def get_config():
  return base.mnist1d_config("mnist1d_mlp_shuffled", "mnist1d_mlp", shuffled=True)
