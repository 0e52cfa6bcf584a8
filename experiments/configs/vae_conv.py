"""A convolutional VAE (strided convolutions 28-14-7, latent 20, transposed convolutions back)
on statically binarized MNIST, the same recipe as `vae_mlp`.

  ./launch.sh vae_conv                              # the CPU default (2 cores: ~8 minutes)
  ./launch.sh vae_conv --config.num_epochs=100 --config.nll_test_size=0    # the full run

Its decoder costs about ten times the MLP's per sample, so the CPU default estimates the NLL
(IWAE, k = 5000) on the first 200 test images only (about 2 minutes on 2 cores; the whole test
set about 110). Compare its test -ELBO and NLL with those of `vae_mlp`.
"""

from experiments.configs import vae_mlp


def get_config():
  config = vae_mlp.vae_config("vae_conv", "vae_conv", num_epochs=10)
  config.nll_test_size = 200
  return config
