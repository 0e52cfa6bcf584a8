"""The deep autoencoder 784-1000-500-250-30 of Hinton and Salakhutdinov (2006), figure 5.40,
on MNIST (section 5.5.1), against PCA with 30 components.

  ./launch.sh ae_mlp
  ./launch.sh ae_mlp --config.dataset=fashion_mnist

See the README's autoencoder table for the squared error per image (the paper: 3.00 against
PCA's 13.87 on MNIST) and the linear probe on the codes.
"""

from experiments.configs import base


def get_config():
  return base.autoencoder_config("ae_mlp", "ae_mlp", num_epochs=20)
