"""The MLP VAE with the architecture of Burda et al. (2016) for one stochastic layer: 784-200-200
tanh to a 50-dimensional Gaussian code and 50-200-200-784 Bernoulli logits, trained on the
negative ELBO (a VAE, k = 1, not an IWAE) for 1,000 epochs on statically binarized MNIST; the
test NLL estimated by importance sampling (k = 5000) on all 10,000 test images.

  ./launch.sh vae_mlp_burda     # 2 cores: ~32 min of training, ~8 min for the NLL

Anchor: Burda et al. report 88.71 nats for this model with static binarization, after 3,280
passes over the data (their schedule: 3^i epochs at a learning rate of 1e-3 * 10^(-i/7),
i = 0..7). The goal NLL <= 88.7 needs long training: at 100 epochs this model gives 91.66 (first
1,000 test images), about what 784-500-20 gives (91.91); the validation -ELBO still falls at
epoch 1,000 (94.4).
"""

from experiments.configs import vae_mlp


def get_config():
  config = vae_mlp.vae_config("vae_mlp_burda", "vae_mlp", num_epochs=1000)
  config.model_kwargs.hidden = (200, 200)
  config.model_kwargs.latent_dim = 50
  config.model_kwargs.activation = "tanh"
  config.nll_test_size = 0  # all 10,000 test images
  config.log_every_steps = 2000
  config.checkpoint_every_steps = 20000
  return config
