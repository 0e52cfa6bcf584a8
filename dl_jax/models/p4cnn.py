"""The p4 group CNN (Cohen & Welling 2016): the blueprint of section 4.4 with G = p4.

Its layers (lifting, group convolution, p4 pooling, rotation pooling) are `dl_jax.nn.group_conv`.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn import group_conv as gc
from dl_jax.symmetry import blueprint as bp
from dl_jax.symmetry import vocabulary as sym


class P4CNN(nn.Module):
  """Rotation-invariant CNN for 28x28 digits: lifting, p4 group convs, pools, invariant head.

  Default shapes (5x5 lifting, 3x3 group convs, all 'VALID', ReLU after each):
  28x28x1 -> 24x24x4x8 -> pool 12x12 -> 10x10x4x16 -> 8x8x4x16 -> pool 4x4 -> 2x2x4x32
  -> max over rotations 2x2x32 -> max over space 32 -> dense 10. 32,858 parameters (the
  section 5.3.1 CNN has 36,054). Pools sit where the sizes are even, so the logits are
  exactly invariant to rotations by 90 degrees (up to float rounding).
  """
  features: Sequence[int] = (8, 16, 16, 32)
  kernel_sizes: Sequence[int] = (5, 3, 3, 3)
  pool_after: Sequence[int] = (0, 2)  # 2x2 max pool after these layers
  spatial_pool: str = "max"  # global pooling A over space: sum, mean or max
  num_classes: int = 10
  conv_impl: str = "xla"
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    if len(self.features) != len(self.kernel_sizes):
      raise ValueError("features and kernel_sizes must have the same length")
    for i, (width, k) in enumerate(zip(self.features, self.kernel_sizes)):
      layer = (gc.P4Lifting if i == 0 else gc.P4GroupConv)(
          width, k, conv_impl=self.conv_impl, dtype=self.dtype, param_dtype=jnp.float32)
      x = nn.relu(layer(x))
      if i in self.pool_after:
        x = gc.p4_max_pool(x)
    x = bp.global_pool(gc.rotation_pool(x, "max"), self.spatial_pool, (1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(x)


SPECS = (
    ModelSpec(
        name="p4cnn",
        family="image",
        factory=P4CNN,
        defaults={"features": (8, 16, 16, 32), "kernel_sizes": (5, 3, 3, 3),
                  "pool_after": (0, 2), "spatial_pool": "max", "num_classes": 10,
                  "conv_impl": "xla", "dtype": "float32"},
        param_count=(25 * 8 + 8) + (9 * 4 * 8 * 16 + 16) + (9 * 4 * 16 * 16 + 16)
        + (9 * 4 * 16 * 32 + 32) + (32 * 10 + 10),
        symmetries=(sym.ROTATION_P4_INVARIANT,),
        description="p4 group CNN (Cohen & Welling 2016, section 4.4), invariant to rotations "
                    "by 90 degrees",
    ),
)
