"""Logistic regression on MNIST-1D (1-D signals of 40 samples).

  ./launch.sh mnist1d_logreg

Measured (seed 0): 30.2 % test accuracy (the paper: 32 %, training on all 4000
signals; here 500 are held out for validation). The recipe is `base.mnist1d_config`.
"""

from experiments.configs import base


def get_config():
  return base.mnist1d_config("mnist1d_logreg", "mnist1d_logreg")
