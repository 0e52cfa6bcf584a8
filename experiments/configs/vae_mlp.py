"""The MLP VAE 784-500-20 of Kingma and Welling (2014) on statically binarized MNIST, trained on
the negative ELBO; the test NLL estimated by importance sampling (the IWAE bound, k = 5000).

  ./launch.sh vae_mlp                                    # the CPU default (2 cores: ~5 minutes)
  ./launch.sh vae_mlp --config.num_epochs=300 --config.nll_test_size=0    # the full run

Anchors: the Flax VAE example (the same 784-500-20 MLP, ReLU, Adam 1e-3, batch 128) reaches a
test loss (-ELBO) of about 104 nats after 10 epochs; Burda et al. (2016) report an NLL of 88.71
nats for a one-stochastic-layer VAE on statically binarized MNIST (86.76 with dynamic
binarization), estimated with k = 5000. Goals: test -ELBO <= 100 and NLL <= 88.7 nats (met by
`vae_mlp_burda`, the architecture of that anchor, in 1,000 epochs).

The default trains 100 epochs (about 4 minutes on 2 CPU cores) and estimates the NLL on the
first 1,000 test images (`nll_test_size`; 0: all 10,000, about 11 minutes more on 2 cores).
"""

import ml_collections

from experiments.configs import base


def vae_config(name: str, model: str, num_epochs: int) -> ml_collections.ConfigDict:
  """The VAE recipe (the `vae_*` configs): Adam 1e-3 with cosine decay, batch 128, one
  reparameterized sample per image, 5,000 training images held out for validation."""
  config = base.image_epoch_config("vae", name, model, num_epochs)
  config.binarization_seed = 0  # the one Bernoulli draw of the pixels ("static")
  config.iwae_samples = 5000  # k of the importance-sampled NLL (Burda et al. 2016)
  config.iwae_chunk = 500  # samples evaluated at once (memory: chunk x batch images)
  config.iwae_batch_size = 100  # test images per NLL batch
  config.nll_test_size = 1000  # the first n test images (0: all 10,000)
  config.manifold_size = 20  # the 2-D latent manifold figure: n x n decoded points
  return config


def get_config():
  return vae_config("vae_mlp", "vae_mlp", num_epochs=100)
