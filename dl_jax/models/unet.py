"""UNet of Ronneberger, Fischer and Brox (2015), figure 5.37 of section 5.3.4, sized for the CPU.

The contracting path repeats (3x3 conv, ReLU) twice and a 2x2 max-pool, doubling the width at
every level; a bottleneck of two convolutions twice as wide as the last level; the expanding
path repeats a 2x2 up-convolution (transposed convolution, stride 2) that halves the width, the
concatenation with the contracting features of the same resolution (the skip connection that
carries the local detail needed at borders), and (3x3 conv, ReLU) twice; a 1x1 convolution maps
to `out_channels`. "Same" padding (the paper crops its valid convolutions instead), so the
output has the input's size; the output is raw (class logits per pixel for segmentation, the
softmax of section 5.3.4 is folded into the loss; pixel values for denoising, section 5.3.5).

`skips=False` is the same network without the concatenations (its convolutions after each
up-convolution see only the upsampled features): the ablation of the notes' claim about skips.

Kernels start as in the paper: Gaussian with standard deviation sqrt(2 / N), N the inputs of one
unit (e.g. 9 * 64 for a 3x3 convolution over 64 channels).
"""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn.pool import max_pool

_DRAW = 2 ** 18  # normal draws per kernel: one compiled sampler serves every smaller shape


def he_normal(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
  """N(0, 2 / fan_in) with fan_in = prod(shape[:-1]) (Ronneberger et al. 2015, section 3),
  sliced from a draw of at least _DRAW normals: eager initialization then compiles one random
  sampler instead of one per kernel shape."""
  size = math.prod(shape)
  draws = jax.random.normal(key, (max(size, _DRAW),), jnp.float32)[:size]
  return (draws * math.sqrt(2.0 / math.prod(shape[:-1]))).reshape(shape).astype(dtype)


class UNet(nn.Module):
  """Images [batch, image_size, image_size, in_channels] -> [batch, image_size, image_size,
  out_channels]. `features`: the widths of the contracting levels (the bottleneck has twice the
  last); image_size must be divisible by 2**len(features). `batch_norm`: batch normalization
  after every 3x3 convolution (batch statistics in training, running averages in evaluation)."""
  image_size: int = 64
  in_channels: int = 1
  out_channels: int = 11
  features: Sequence[int] = (8, 16, 32, 64)
  skips: bool = True
  batch_norm: bool = True
  dtype: Any = None  # compute dtype; parameters float32

  def _check(self, x: jax.Array) -> None:
    depth = len(self.features)
    if not depth or self.image_size % 2 ** depth:
      raise ValueError(f"image_size={self.image_size} is not divisible by 2**len(features) = "
                       f"{2 ** depth} (features={tuple(self.features)})")
    want = (self.image_size, self.image_size, self.in_channels)
    if tuple(x.shape[1:]) != want:
      raise ValueError(f"UNet with image_size={self.image_size}, in_channels="
                       f"{self.in_channels} takes [batch, *{want}], not {tuple(x.shape)}")

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    self._check(x)

    def conv_block(h, width, name):
      for i in range(2):
        h = nn.Conv(width, (3, 3), padding="SAME", use_bias=not self.batch_norm,
                    kernel_init=he_normal, dtype=self.dtype, param_dtype=jnp.float32,
                    name=f"{name}_conv{i}")(h)
        if self.batch_norm:
          h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                           dtype=self.dtype, param_dtype=jnp.float32, name=f"{name}_bn{i}")(h)
        h = nn.relu(h)
      return h

    contracting = []
    for level, width in enumerate(self.features):
      x = conv_block(x, width, f"down{level}")
      contracting.append(x)
      x = max_pool(x, (2, 2), (2, 2))
    x = conv_block(x, 2 * self.features[-1], "bottleneck")
    for level in reversed(range(len(self.features))):
      width = self.features[level]
      x = nn.ConvTranspose(width, (2, 2), strides=(2, 2), padding="VALID",
                           kernel_init=he_normal, dtype=self.dtype, param_dtype=jnp.float32,
                           name=f"up{level}_upconv")(x)
      if self.skips:
        x = jnp.concatenate([contracting[level].astype(x.dtype), x], axis=-1)
      x = conv_block(x, width, f"up{level}")
    return nn.Conv(self.out_channels, (1, 1), kernel_init=he_normal, dtype=self.dtype,
                   param_dtype=jnp.float32, name="output")(x)


def param_count(in_channels: int, out_channels: int, features: Sequence[int], skips: bool,
                batch_norm: bool) -> int:
  """The number of parameters of `UNet` (BatchNorm: scale and bias per channel, in place of
  the convolution's bias)."""
  def block(c_in, width):  # two 3x3 convolutions, each with a bias or a BatchNorm's 2 vectors
    extra = 2 * width if batch_norm else width
    return 9 * c_in * width + extra + 9 * width * width + extra

  total, c_in = 0, in_channels
  for width in features:
    total += block(c_in, width)
    c_in = width
  total += block(c_in, 2 * features[-1])
  c_in = 2 * features[-1]
  for width in reversed(features):
    total += 4 * c_in * width + width  # the 2x2 up-convolution
    total += block(2 * width if skips else width, width)
    c_in = width
  return total + c_in * out_channels + out_channels


_DEFAULTS = {"image_size": 64, "in_channels": 1, "out_channels": 11, "features": (8, 16, 32, 64),
             "skips": True, "batch_norm": True, "dtype": "float32"}
SPECS = (
    ModelSpec(
        name="unet",
        family="dense",
        factory=UNet,
        defaults=_DEFAULTS,
        param_count=param_count(1, 11, (8, 16, 32, 64), skips=True, batch_norm=True),
        description="UNet (Ronneberger et al. 2015), figure 5.37 of section 5.3.4; "
                    "skips=False: the ablation without skip connections",
    ),
)
