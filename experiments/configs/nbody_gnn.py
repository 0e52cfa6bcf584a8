"""The EGNN paper's GNN baseline on the charged N-body system: message passing with the raw
coordinates and velocities as node inputs (4 layers of width 64), permutation-equivariant but
not E(3)-equivariant. The recipe is `base.nbody_config` with the paper's learning rate for
this model, 1e-3.

  ./launch.sh nbody_gnn

The paper reports a test MSE of 0.0107.
"""

from experiments.configs import base


def get_config():
  config = base.nbody_config("nbody_gnn", "nbody_gnn")
  config.learning_rate = 1e-3
  return config
