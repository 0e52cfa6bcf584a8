"""The sparse autoencoder of eq. 5.27-5.28: the MLP autoencoder with a non-negative (ReLU) code
of 30 units and the penalty code_l1 * sum_i |h_i| on it, section 5.5.1.

  ./launch.sh ae_sparse
  ./launch.sh ae_sparse --config.code_l1=0.01   # sparser codes, larger reconstruction error
"""

from experiments.configs import base


def get_config():
  config = base.autoencoder_config("ae_sparse", "ae_mlp", num_epochs=20)
  config.model_kwargs.code_activation = "relu"
  config.code_l1 = 3e-3
  return config
