"""The MLP VAE 784-500-2 (two latent units) on statically binarized MNIST: the learned 2-D
manifold of digits (Kingma and Welling 2014, figure 4) in latent_manifold.png, decoded over a
20 x 20 grid of Gaussian quantiles, and the test codes in latent_codes.png.

  ./launch.sh vae_mlp_2d
"""

from experiments.configs import vae_mlp


def get_config():
  config = vae_mlp.vae_config("vae_mlp_2d", "vae_mlp", num_epochs=20)
  config.model_kwargs.latent_dim = 2
  return config
