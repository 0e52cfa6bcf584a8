"""VGGNet (section 5.3.2, figure 5.26; Simonyan and Zisserman 2014): 3x3 convolutions only,
stacked in five blocks separated by 2x2 max-pools, then three dense layers.

One configuration table, the paper's table 1 (columns A, B, D, E = VGG-11, 13, 16, 19); "M" is
a 2x2 stride-2 max-pool. Each convolution is 3x3, padding 1, [batch norm], ReLU. The head is
torchvision's: adaptive average pool to 7x7, flatten, dense 4096, ReLU, dropout 0.5, dense
4096, ReLU, dropout 0.5, dense num_classes (the parameter counts of torchvision's vgg11..vgg19
and, with `batch_norm=True`, vgg*_bn: the convolutions keep their bias under batch norm, as
there). The flatten runs over (H, W, C), torchvision's over (C, H, W).

Initialization as torchvision: convolutions He-normal (fan-out), dense N(0, 0.01^2), zero
biases.

`vgg*_small` (28x28x1, 10 classes), after the CIFAR VGGs (e.g. kuangliu/pytorch-cifar):
- batch norm on: VGG trained from scratch without it does not train well (the paper had to
  initialise its deeper nets from the trained VGG-11);
- only the first four max-pools (`pools=4`): 28 -> 14 -> 7 -> 3 -> 1, where five would
  floor 28 to 0; the fifth block then runs on the 1x1 map;
- the head sized for the 1x1x512 map: pooled 1x1, dense 512, 512, num_classes.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.alexnet import adaptive_avg_pool
from dl_jax.models.spec import ModelSpec
from dl_jax.nn.conv import Conv
from dl_jax.nn.pool import max_pool

# Simonyan and Zisserman 2014, table 1: output channels of each 3x3 conv, "M" = max-pool.
CONFIGS = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"),
}
DEPTHS = {"A": 11, "B": 13, "D": 16, "E": 19}  # weight layers: convolutions + 3 dense


class VGG(nn.Module):
  """VGG, section 5.3.2 (figure 5.26); see the module docstring."""
  config: str = "D"  # a key of CONFIGS
  num_classes: int = 1000
  batch_norm: bool = False  # after every convolution (torchvision's vgg*_bn)
  pools: int = 5  # how many of the configuration's max-pools are kept (the first ones)
  pooled_size: int = 7  # side of the adaptive average pool before the classifier
  hidden: int = 4096  # width of the two hidden dense layers
  dropout_rate: float = 0.5  # after each hidden dense layer, training only
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32
  conv_impl: str = "auto"  # `dl_jax.nn.conv.Conv`'s impl: XLA on accelerators, Eigen on CPU

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.config not in CONFIGS:
      raise ValueError(f"unknown VGG config {self.config!r}; accepted: {', '.join(CONFIGS)}")
    pools = 0
    for v in CONFIGS[self.config]:
      if v == "M":
        if pools < self.pools:
          x = max_pool(x, (2, 2), (2, 2), "VALID")
        pools += 1
        continue
      x = Conv(v, (3, 3), padding=[(1, 1), (1, 1)], dtype=self.dtype, param_dtype=jnp.float32,
               kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
               impl=self.conv_impl)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         dtype=self.dtype, param_dtype=jnp.float32)(x)
      x = nn.relu(x)
    x = adaptive_avg_pool(x, self.pooled_size)
    x = x.reshape((x.shape[0], -1))
    dense = lambda width: nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32,
                                   kernel_init=nn.initializers.normal(0.01))
    for _ in range(2):
      x = nn.relu(dense(self.hidden)(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return dense(self.num_classes)(x)


_DEFAULTS = {"config": "D", "num_classes": 1000, "batch_norm": False, "pools": 5,
             "pooled_size": 7, "hidden": 4096, "dropout_rate": 0.5, "dtype": "float32",
             "conv_impl": "auto"}
_TORCHVISION_COUNTS = {"A": 132_863_336, "B": 133_047_848, "D": 138_357_544,
                       "E": 143_667_240}  # torchvision 0.28 vgg11, 13, 16, 19


def _small_count(config: str) -> int:
  """Parameters of vgg*_small: convolutions with bias, batch norm scale and bias, the head on
  the 1x1x512 map (dense 512, 512, 10)."""
  count, channels = 0, 1
  for v in CONFIGS[config]:
    if v != "M":
      count += 3 * 3 * channels * v + v + 2 * v
      channels = v
  return count + (512 * 512 + 512) * 2 + (512 * 10 + 10)


SPECS = tuple(
    ModelSpec(
        name=f"vgg{DEPTHS[c]}",
        family="image",
        factory=VGG,
        defaults={**_DEFAULTS, "config": c},
        param_count=_TORCHVISION_COUNTS[c],
        description=f"VGG-{DEPTHS[c]} (config {c}) as torchvision (ImageNet 224x224x3, 1000 "
                    "classes), section 5.3.2",
        example_shape=(224, 224, 3),
        full_size=True,
    ) for c in CONFIGS) + tuple(
    ModelSpec(
        name=f"vgg{DEPTHS[c]}_small",
        family="image",
        factory=VGG,
        defaults={**_DEFAULTS, "config": c, "num_classes": 10, "batch_norm": True, "pools": 4,
                  "pooled_size": 1, "hidden": 512},
        param_count=_small_count(c),
        description=f"VGG-{DEPTHS[c]} for 28x28x1: batch norm, 4 pools, 512-wide head, "
                    "section 5.3.2",
    ) for c in CONFIGS)
