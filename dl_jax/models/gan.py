"""The DCGAN of Radford, Metz and Chintala (2016, "Unsupervised representation learning with deep
convolutional generative adversarial networks"; the GANs of the course overview, section 1.5),
sized for 28x28x1 images, and the losses of Goodfellow et al. (2014) it is trained with.

The architecture guidelines of DCGAN (their section 3), all followed here:

- no pooling: strided convolutions in the discriminator, fractionally strided (transposed)
  convolutions in the generator;
- batch normalization in both networks, except at the generator's output and the
  discriminator's input layer;
- no fully connected hidden layers: the generator's first layer is a matrix product of z
  reshaped into a 7x7 stack of feature maps, the discriminator's last a flattened stack of
  feature maps to one logit;
- ReLU in the generator, tanh at its output (images in [-1, 1]); LeakyReLU with slope 0.2 in
  the discriminator;
- weights drawn from N(0, 0.02), batch-norm scales from N(1, 0.02) (their code).

With `features` = (64, 128): the generator maps z (100) to 7x7x128, 14x14x64 and 28x28x1; the
discriminator, its mirror, 28x28x1 to 14x14x64, 7x7x128 and one logit. One module holds both
(parameter and batch-statistics subtrees "generator" and "discriminator"); calling it is the
discriminator, logit [batch, 1] (the registry's "gan" family), `generate(z)` is the generator.

The losses, from the discriminator's logit l (D = sigmoid(l)):

- `discriminator_loss`: the binary cross-entropy -log D(x) - log(1 - D(G(z))), real images
  labelled 1 and generated ones 0 (Goodfellow et al. eq. 1, maximized by D);
- `generator_loss`: the non-saturating -log D(G(z)) (Goodfellow et al. section 3: log(1 - D(G(z)))
  saturates while D rejects the samples confidently, early in training; -log D(G(z)) has the
  same fixed point and strong gradients there).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec

IMAGE_SHAPE = (28, 28, 1)
WEIGHT_STDDEV = 0.02  # DCGAN section 4


def weight_init(key, shape, dtype=jnp.float32):
  """N(0, 0.02) (DCGAN section 4)."""
  return WEIGHT_STDDEV * jax.random.normal(key, shape, dtype)


def scale_init(key, shape, dtype=jnp.float32):
  """Batch-norm scales from N(1, 0.02), as in the DCGAN code."""
  return 1.0 + WEIGHT_STDDEV * jax.random.normal(key, shape, dtype)


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Mean -log D(x) + mean -log(1 - D(G(z))) with D = sigmoid(logit): the binary cross-entropy
  of real images (label 1) and generated ones (label 0), softplus(-l_real) + softplus(l_fake),
  finite for any logit."""
  real, fake = (jnp.asarray(a, jnp.promote_types(a.dtype, jnp.float32))
                for a in (real_logits, fake_logits))
  return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))


def generator_loss(fake_logits: jax.Array) -> jax.Array:
  """The non-saturating generator loss, mean -log D(G(z)) = softplus(-l) (Goodfellow et al.
  2014, section 3)."""
  fake = jnp.asarray(fake_logits, jnp.promote_types(fake_logits.dtype, jnp.float32))
  return jnp.mean(jax.nn.softplus(-fake))


def _batch_norm(train: bool, momentum: float, dtype) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-5,
                      dtype=dtype, param_dtype=jnp.float32, scale_init=scale_init)


class Generator(nn.Module):
  """z [batch, latent_dim] -> images [batch, 28, 28, 1] in [-1, 1]: a projection to
  side x side x features[-1] (side = 28 / 2**len(features)), then per earlier width a
  transposed convolution of stride 2 (BN, ReLU), and a last one of stride 2 to 1 channel, tanh."""
  features: Sequence[int]
  kernel_size: int
  bn_momentum: float
  dtype: Any = None

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    side = IMAGE_SHAPE[0] // 2 ** len(self.features)
    k = (self.kernel_size, self.kernel_size)
    x = nn.Dense(side * side * self.features[-1], use_bias=False, kernel_init=weight_init,
                 dtype=self.dtype, param_dtype=jnp.float32)(z)
    x = x.reshape((z.shape[0], side, side, self.features[-1]))
    x = nn.relu(_batch_norm(train, self.bn_momentum, self.dtype)(x))
    for width in reversed(self.features[:-1]):
      x = nn.ConvTranspose(width, k, strides=(2, 2), padding="SAME", use_bias=False,
                           kernel_init=weight_init, dtype=self.dtype,
                           param_dtype=jnp.float32)(x)
      x = nn.relu(_batch_norm(train, self.bn_momentum, self.dtype)(x))
    x = nn.ConvTranspose(IMAGE_SHAPE[-1], k, strides=(2, 2), padding="SAME",
                         kernel_init=weight_init, dtype=self.dtype, param_dtype=jnp.float32)(x)
    return jnp.tanh(x)


class Discriminator(nn.Module):
  """Images [batch, 28, 28, 1] -> logit [batch, 1]: per width a convolution of stride 2 and
  LeakyReLU, batch norm after every one but the first, then flatten and one dense logit."""
  features: Sequence[int]
  kernel_size: int
  negative_slope: float
  bn_momentum: float
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    k = (self.kernel_size, self.kernel_size)
    for i, width in enumerate(self.features):
      x = nn.Conv(width, k, strides=(2, 2), padding="SAME", use_bias=i == 0,
                  kernel_init=weight_init, dtype=self.dtype, param_dtype=jnp.float32)(x)
      if i > 0:  # no batch norm at the input layer
        x = _batch_norm(train, self.bn_momentum, self.dtype)(x)
      x = nn.leaky_relu(x, self.negative_slope)
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(1, kernel_init=weight_init, dtype=self.dtype, param_dtype=jnp.float32)(x)


class DCGAN(nn.Module):
  """Generator and discriminator of DCGAN for 28x28x1 images (see the module docstring).

  `__call__(x, train)` is the discriminator's logit [batch, 1]; `generate(z, train)` the
  generator's images [batch, 28, 28, 1]. Initializing through `__call__` initializes both.
  """
  latent_dim: int = 100
  features: Sequence[int] = (64, 128)  # discriminator widths 28 -> 14 -> 7; the generator's
  kernel_size: int = 5                 # reversed: 7 -> 14 -> 28
  negative_slope: float = 0.2
  bn_momentum: float = 0.9
  dtype: Any = None  # compute dtype; parameters and batch statistics float32

  def setup(self):
    self.generator = Generator(self.features, self.kernel_size, self.bn_momentum, self.dtype)
    self.discriminator = Discriminator(self.features, self.kernel_size, self.negative_slope,
                                       self.bn_momentum, self.dtype)

  def generate(self, z: jax.Array, train: bool = False) -> jax.Array:
    return self.generator(z, train)

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.is_initializing():  # create the generator's variables too
      self.generator(jnp.zeros((1, self.latent_dim), jnp.float32), train)
    return self.discriminator(x, train)


def _param_count(latent: int, features: Sequence[int], k: int) -> int:
  side = IMAGE_SHAPE[0] // 2 ** len(features)
  top = features[-1]
  generator = latent * side * side * top + 2 * top  # projection (no bias), BN
  widths = list(reversed(features))
  for w_in, w_out in zip(widths, widths[1:]):
    generator += k * k * w_in * w_out + 2 * w_out  # transposed conv (no bias), BN
  generator += k * k * features[0] * IMAGE_SHAPE[-1] + IMAGE_SHAPE[-1]
  discriminator = k * k * IMAGE_SHAPE[-1] * features[0] + features[0]
  for w_in, w_out in zip(features, features[1:]):
    discriminator += k * k * w_in * w_out + 2 * w_out
  discriminator += side * side * top + 1
  return generator + discriminator


SPECS = (
    ModelSpec(
        name="dcgan",
        family="gan",
        factory=DCGAN,
        defaults={"latent_dim": 100, "features": (64, 128), "kernel_size": 5,
                  "negative_slope": 0.2, "bn_momentum": 0.9, "dtype": "float32"},
        param_count=_param_count(100, (64, 128), 5),
        description="DCGAN for 28x28x1: z(100) -> 7x7x128 -> 14x14x64 -> 28x28 and its mirror "
                    "(Radford et al. 2016), section 1.5",
    ),
)
