"""The EGNN paper's "Linear" on the charged N-body system: x + t v with one learned time t
(test MSE 0.0819 in the paper). The recipe is `base.nbody_config` with a learning rate of 1e-2,
since one parameter has to travel from 1 to about 0.73.

  ./launch.sh nbody_linear
"""

from experiments.configs import base


def get_config():
  config = base.nbody_config("nbody_linear", "nbody_linear")
  config.learning_rate = 1e-2
  config.num_epochs = 100
  return config
