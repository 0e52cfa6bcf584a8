"""Variational autoencoders (Kingma and Welling 2014, "Auto-Encoding Variational Bayes"; the
generative models of the course overview, section 1.5, and the note of section 5.5.1) and the
bounds they are trained and measured with.

A model has `encode(x) -> (mean, log_variance)`, the diagonal Gaussian q(z|x) [batch,
latent_dim] each, and `decode(z) -> logits [batch, 28, 28, 1]` of the Bernoulli p(x|z); the
prior p(z) is N(0, I). Calling it returns decode(mean): the reconstruction from the mean code,
deterministic (the registry's "vae" family).

The mechanism, written out:

- `reparameterize`: z = mean + exp(log_variance / 2) * eps, eps ~ N(0, I) (K&W section 2.4):
  the sample is a differentiable function of the encoder's outputs, so the gradient of a
  Monte Carlo estimate flows through it;
- `gaussian_kl`: KL(q(z|x) || N(0, I)) = -1/2 sum_j (1 + log s_j^2 - m_j^2 - s_j^2) in closed
  form (K&W appendix B);
- `bernoulli_log_likelihood`: log p(x|z) = sum_d x_d l_d - softplus(l_d) from the logits l,
  the negative binary cross-entropy (course eq. 2.39-2.40), stable for any l;
- `elbo`: E_q[log p(x|z)] - KL(q(z|x) || p(z)) with one reparameterized sample (the SGVB
  estimator B of K&W eq. 7);
- `iwae_bound`: log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x) (Burda et al. 2016, eq. 8),
  by a running logsumexp over chunks of samples so that k = 5000 fits in memory; k = 1 is the
  ELBO in expectation, it does not decrease with k and tends to log p(x), and -iwae_bound at
  k = 5000 is the test negative log-likelihood estimate of the IWAE paper (section 5.1).
"""

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn import activations

IMAGE_SHAPE = (28, 28, 1)
PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------------------------
# The mechanism

def _at_least_float32(a: jax.Array) -> jax.Array:
  """`a` in float32, or in float64 when it is float64 (the bounds are not summed in bfloat16)."""
  return a.astype(jnp.promote_types(a.dtype, jnp.float32))


def reparameterize(key, mean: jax.Array, log_variance: jax.Array,
                   sample_shape: tuple[int, ...] = ()) -> jax.Array:
  """z = mean + sigma * eps with eps ~ N(0, I) (K&W section 2.4): [*sample_shape, *mean.shape]."""
  eps = jax.random.normal(key, (*sample_shape, *mean.shape),
                          jnp.promote_types(mean.dtype, jnp.float32))
  return mean + jnp.exp(0.5 * log_variance) * eps


def gaussian_kl(mean: jax.Array, log_variance: jax.Array) -> jax.Array:
  """KL(N(mean, diag exp(log_variance)) || N(0, I)) per example, summed over the last axis
  (K&W appendix B: -1/2 sum (1 + log sigma^2 - mu^2 - sigma^2))."""
  return -0.5 * jnp.sum(1.0 + log_variance - jnp.square(mean) - jnp.exp(log_variance), -1)


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x | logits) of independent Bernoulli pixels, summed over all axes but the first:
  x log sigmoid(l) + (1 - x) log sigmoid(-l) = x l - softplus(l) (course eq. 2.39)."""
  logits = _at_least_float32(logits)
  axes = tuple(range(1, logits.ndim))
  return jnp.sum(x * logits - jax.nn.softplus(logits), axes)


def gaussian_log_density(z: jax.Array, mean: jax.Array, log_variance: jax.Array) -> jax.Array:
  """log N(z; mean, diag exp(log_variance)), summed over the last axis."""
  return -0.5 * jnp.sum(LOG_2PI + log_variance + jnp.square(z - mean) * jnp.exp(-log_variance),
                        -1)


def standard_normal_log_density(z: jax.Array) -> jax.Array:
  """log N(z; 0, I), summed over the last axis."""
  return -0.5 * jnp.sum(LOG_2PI + jnp.square(z), -1)


Encode = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
Decode = Callable[[jax.Array], jax.Array]


def elbo(key, x: jax.Array, encode: Encode, decode: Decode) -> dict[str, jax.Array]:
  """Per-example ELBO log p(x|z) - KL(q(z|x) || p(z)) with one reparameterized z ~ q(z|x) and
  the analytic KL (K&W eq. 7): {"elbo", "log_likelihood", "kl"}, each [batch]."""
  mean, log_variance = (_at_least_float32(a) for a in encode(x))
  z = reparameterize(key, mean, log_variance)
  log_likelihood = bernoulli_log_likelihood(decode(z), x)
  kl = gaussian_kl(mean, log_variance)
  return {"elbo": log_likelihood - kl, "log_likelihood": log_likelihood, "kl": kl}


def log_importance_weights(key, x: jax.Array, mean: jax.Array, log_variance: jax.Array,
                           decode: Decode, num_samples: int) -> jax.Array:
  """log p(x, z_i) - log q(z_i|x) for z_i ~ q(z|x), i = 1..num_samples: [num_samples, batch]."""
  z = reparameterize(key, mean, log_variance, (num_samples,))  # [k, batch, latent]
  logits = decode(z.reshape(-1, z.shape[-1]))
  log_likelihood = bernoulli_log_likelihood(logits, jnp.tile(x, (num_samples,) + (1,) *
                                                             (x.ndim - 1)))
  log_likelihood = log_likelihood.reshape(num_samples, -1)
  return (log_likelihood + standard_normal_log_density(z)
          - gaussian_log_density(z, mean, log_variance))


def iwae_bound(key, x: jax.Array, encode: Encode, decode: Decode, num_samples: int,
               chunk_size: int = 500) -> jax.Array:
  """Per-example log (1/k) sum_{i=1..k} p(x, z_i) / q(z_i|x), z_i ~ q(z|x) (Burda et al. eq. 8),
  k = num_samples: the log-weights of `chunk_size` samples at a time (the last chunk's surplus
  masked to -inf) folded into a running logsumexp, so memory does not grow with k. [batch]."""
  if num_samples < 1 or chunk_size < 1:
    raise ValueError(f"num_samples={num_samples} and chunk_size={chunk_size} must be >= 1")
  mean, log_variance = (_at_least_float32(a) for a in encode(x))
  chunk = min(chunk_size, num_samples)
  num_chunks = -(-num_samples // chunk)

  def body(total, i):
    log_w = log_importance_weights(jax.random.fold_in(key, i), x, mean, log_variance, decode,
                                   chunk)
    index = i * chunk + jnp.arange(chunk)[:, None]
    log_w = jnp.where(index < num_samples, log_w, -jnp.inf)
    return jnp.logaddexp(total, jax.nn.logsumexp(log_w, axis=0)), None

  start = jnp.full(mean.shape[:1], -jnp.inf, mean.dtype)
  total, _ = jax.lax.scan(body, start, jnp.arange(num_chunks))
  return total - math.log(num_samples)


# ---------------------------------------------------------------------------------------------
# The models

class MLPVAE(nn.Module):
  """The MLP VAE of K&W (section 3 and appendix C.2), 784-500-(mean, log-variance of 20) and
  20-500-784 Bernoulli logits (their MNIST runs: 500 hidden units, 2 to 200 latent units).

  K&W used tanh hidden units; the default here is ReLU, as in the Flax VAE example whose
  ~104 nats after 10 epochs is the anchor: with Adam it trains faster at the same width and
  reaches a lower -ELBO (`activation="tanh"` gives the paper's units).
  """
  hidden: Sequence[int] = (500,)
  latent_dim: int = 20
  activation: str = "relu"
  dtype: Any = None  # compute dtype; parameters float32

  def setup(self):
    dense = lambda width: nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32)
    self.encoder = [dense(w) for w in self.hidden]
    self.to_mean, self.to_log_variance = dense(self.latent_dim), dense(self.latent_dim)
    self.decoder = [dense(w) for w in reversed(self.hidden)] + [dense(PIXELS)]

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    act = activations.get(self.activation)
    h = x.reshape((x.shape[0], -1))
    for layer in self.encoder:
      h = act(layer(h))
    return self.to_mean(h), self.to_log_variance(h)

  def decode(self, z: jax.Array) -> jax.Array:
    act = activations.get(self.activation)
    for layer in self.decoder[:-1]:
      z = act(layer(z))
    return self.decoder[-1](z).reshape((z.shape[0], *IMAGE_SHAPE))

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    return self.decode(self.encode(x)[0])


class ConvVAE(nn.Module):
  """A convolutional VAE: strided 3x3 convolutions 28 -> 14 -> 7 and dense maps to the mean and
  log-variance; the decoder a dense map to 7x7 feature maps and transposed convolutions
  7 -> 14 -> 28 to one Bernoulli logit per pixel (the layout of `autoencoder.ConvAutoencoder`,
  figure 5.41, with a stochastic code)."""
  features: Sequence[int] = (32, 64)
  latent_dim: int = 20
  activation: str = "relu"
  dtype: Any = None

  def setup(self):
    conv = lambda f: nn.Conv(f, (3, 3), strides=(2, 2), padding="SAME", dtype=self.dtype,
                             param_dtype=jnp.float32)
    deconv = lambda f: nn.ConvTranspose(f, (3, 3), strides=(2, 2), padding="SAME",
                                        dtype=self.dtype, param_dtype=jnp.float32)
    dense = lambda width: nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32)
    self.down = [conv(f) for f in self.features]
    self.to_mean, self.to_log_variance = dense(self.latent_dim), dense(self.latent_dim)
    side = IMAGE_SHAPE[0] // 2 ** len(self.features)
    self.grid = (side, side, self.features[-1])
    self.from_latent = dense(side * side * self.features[-1])
    self.up = [deconv(f) for f in reversed(self.features[:-1])] + [deconv(IMAGE_SHAPE[-1])]

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    act = activations.get(self.activation)
    for layer in self.down:
      x = act(layer(x))
    h = x.reshape((x.shape[0], -1))
    return self.to_mean(h), self.to_log_variance(h)

  def decode(self, z: jax.Array) -> jax.Array:
    act = activations.get(self.activation)
    x = act(self.from_latent(z)).reshape((z.shape[0], *self.grid))
    for layer in self.up[:-1]:
      x = act(layer(x))
    return self.up[-1](x)

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    return self.decode(self.encode(x)[0])


def _dense(n_in: int, n_out: int) -> int:
  return n_in * n_out + n_out


def _conv(n_in: int, n_out: int) -> int:
  return 9 * n_in * n_out + n_out


SPECS = (
    ModelSpec(
        name="vae_mlp",
        family="vae",
        factory=MLPVAE,
        defaults={"hidden": (500,), "latent_dim": 20, "activation": "relu",
                  "dtype": "float32"},
        param_count=_dense(PIXELS, 500) + 2 * _dense(500, 20) + _dense(20, 500)
        + _dense(500, PIXELS),
        description="MLP VAE 784-500-20, Bernoulli decoder (Kingma & Welling 2014), section 1.5",
    ),
    ModelSpec(
        name="vae_conv",
        family="vae",
        factory=ConvVAE,
        defaults={"features": (32, 64), "latent_dim": 20, "activation": "relu",
                  "dtype": "float32"},
        param_count=_conv(1, 32) + _conv(32, 64) + 2 * _dense(7 * 7 * 64, 20)
        + _dense(20, 7 * 7 * 64) + _conv(64, 32) + _conv(32, 1),
        description="convolutional VAE 28-14-7 -> latent 20 -> 7-14-28, Bernoulli decoder",
    ),
)
