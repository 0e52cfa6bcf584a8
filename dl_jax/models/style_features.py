"""A narrow VGG-style network for the style transfer of section 5.3.5 (Gatys et al. 2015).

VGG's pattern (section 5.3.2, Simonyan and Zisserman 2014): blocks of `convs_per_block` 3x3
convolutions (padding 1, ReLU) of one width, a 2x2 stride-2 pool between blocks, the width
growing block by block; the classifier head is a global average pool and one dense layer. The
layers are named as Gatys et al. name VGG-19's: conv{block}_{index}, both 1-based, the name of
the activation after the ReLU. Pooling is average pooling by default: Gatys et al. replace
VGG's max-pooling by it for image synthesis ("slightly more appealing results").

Widths 16, 32, 64, 128 instead of VGG's 64 to 512: the style transfer runs the network on
every colour channel of a 128x128 photo at every optimization step, on two CPU cores. The
network takes 28x28x1 images (the "image" family) so that it can be trained on Fashion-MNIST
like any classifier, and, being convolutional up to its head, any size for `features`.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn.pool import max_pool

POOLINGS = ("average", "max")


def layer_names(widths: Sequence[int], convs_per_block: int) -> tuple[str, ...]:
  """conv1_1, conv1_2, ..., conv{len(widths)}_{convs_per_block}, in network order."""
  return tuple(f"conv{b + 1}_{i + 1}" for b in range(len(widths))
               for i in range(convs_per_block))


class StyleVGG(nn.Module):
  """Images [batch, H, W, 1] -> logits [batch, num_classes] (`__call__`) or the activations of
  chosen layers (`features`); see the module docstring."""
  widths: Sequence[int] = (16, 32, 64, 128)
  convs_per_block: int = 2
  pooling: str = "average"  # between blocks: "average" (Gatys et al.) or "max" (VGG)
  num_classes: int = 10
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32

  def setup(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling={self.pooling!r}; accepted: {', '.join(POOLINGS)}")
    # He-normal (fan-in) kernels, zero biases: the random-weight features keep the scale of
    # their input from layer to layer (He, Wang and Hopcroft 2016 use random VGG weights).
    # Each convolution's parameters are named after its layer (conv1_1, ...).
    names = layer_names(self.widths, self.convs_per_block)
    widths = [width for width in self.widths for _ in range(self.convs_per_block)]
    self.convs = [nn.Conv(width, (3, 3), padding=[(1, 1), (1, 1)], dtype=self.dtype,
                          param_dtype=jnp.float32, kernel_init=nn.initializers.he_normal(),
                          name=name) for name, width in zip(names, widths)]
    self.head = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)

  def features(self, x: jax.Array, layers: Sequence[str] | None = None) -> dict[str, jax.Array]:
    """{name: activation [batch, h, w, width]} of the layers in `layers` (None: all), computed
    up to the deepest one asked for only."""
    names = layer_names(self.widths, self.convs_per_block)
    wanted = names if layers is None else tuple(layers)
    unknown = [name for name in wanted if name not in names]
    if unknown:
      raise ValueError(f"no layer {unknown[0]!r}; accepted: {', '.join(names)}")
    last = max(names.index(name) for name in wanted)
    pool = nn.avg_pool if self.pooling == "average" else max_pool
    out = {}
    for i, (name, conv) in enumerate(zip(names[:last + 1], self.convs)):
      if i and i % self.convs_per_block == 0:
        x = pool(x, (2, 2), strides=(2, 2), padding="VALID")
      x = nn.relu(conv(x))
      if name in wanted:
        out[name] = x
    return out

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout, no batch statistics
    names = layer_names(self.widths, self.convs_per_block)
    last = self.features(x, names[-1:])[names[-1]]
    return self.head(jnp.mean(last, axis=(1, 2)))


_DEFAULTS = {"widths": (16, 32, 64, 128), "convs_per_block": 2, "pooling": "average",
             "num_classes": 10, "dtype": "float32"}

SPECS = (
    ModelSpec(
        name="style_vgg",
        family="image",
        factory=StyleVGG,
        defaults=_DEFAULTS,
        param_count=294_522,
        description="narrow VGG-style network (4 blocks of two 3x3 convs, widths 16-128, "
                    "average pooling): the features of the style transfer, section 5.3.5",
    ),
)
