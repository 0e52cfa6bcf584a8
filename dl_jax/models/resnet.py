"""ResNet (section 5.3.2, figures 5.30-5.31; He, Zhang, Ren and Sun 2015), with the
pre-activation variant of He et al. 2016 ("Identity mappings in deep residual networks").

The residual block of figure 5.30 adds an identity (skip) connection to a stack of
convolutions, y = relu(F(x) + shortcut(x)):

- basic block (ResNet-18/34): conv 3x3 (stride s), BN, ReLU, conv 3x3, BN;
- bottleneck block (ResNet-50/101/152): conv 1x1 (width w), BN, ReLU, conv 3x3 (stride s), BN,
  ReLU, conv 1x1 (4 w), BN; the stride on the 3x3 conv, as torchvision ("ResNet v1.5"; the
  2015 paper strides the first 1x1);
- shortcut: the identity, or, where the shape changes (stride s > 1 or other channels),
  conv 1x1 stride s + BN (the paper's option B).

Network (table 1 of the paper, torchvision's layout and parameter counts): stem conv 7x7/2
64 + BN + ReLU + max-pool 3x3/2 (pad 1); four stages of `stage_sizes` blocks, 64, 128, 256,
512 wide (x4 out for bottlenecks), the first block of stages 2-4 with stride 2; global average
pool; dense num_classes. Output strides of the stages at 224x224: 4, 8, 16, 32 (56, 28, 14,
7). Convolutions have no bias; BN eps 1e-5, momentum 0.9 (torch's 0.1); convolutions
He-normal (fan-out) as torchvision.

Options:
- `preactivation=True` (v2, He et al. 2016, figure 1(b)): each block is
  x + F(relu(BN(x))) with F = conv, BN, ReLU, conv (...), no ReLU after the addition; a
  projection shortcut is then a 1x1 conv (no BN) of the pre-activated relu(BN(x)); the stem
  has no BN-ReLU (the first block's pre-activation does it) and a final BN + ReLU precedes the
  pooling.
- `zero_init_residual=True`: the scale of the last BN of every residual branch starts at 0
  (Goyal et al. 2017; torchvision's option, default False), so that each block starts as
  relu(shortcut(x)) (v1) or x + 0 (v2).
- `stem="small"` (the `resnet*_small` configurations, 28x28x1, 10 classes; the CIFAR ResNets
  of kuangliu/pytorch-cifar): conv 3x3 stride 1 64 + BN + ReLU and no max-pool, so that the
  stages run at 28, 14, 7, 4 (output strides 1, 2, 4, 8) instead of vanishing after /32.

Block i of stage s is the submodule `layer{s}_{i}` (torchvision's `layer{s}.{i}`).

Wide residual networks (Zagoruyko and Komodakis 2016), WRN-d-k, are the same code: three stages
of (d - 4) / 6 pre-activation basic blocks, 16k, 32k and 64k wide (`widths`), after a 3x3 stem
of 16 features (`stem_features`), the last two stages with stride 2. `wrn28_10` is the CIFAR
configuration of the paper (32x32x3, 10 classes, 36,479,194 parameters, as the authors' code);
`wrn28_10_small` takes 28x28x1 (a 3x3x1 stem: 288 fewer) and `wrn16_4_small` is WRN-16-4.
Without the paper's optional dropout between the two convolutions of a block.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn.conv import Conv
from dl_jax.nn.pool import max_pool

STAGE_SIZES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
               152: (3, 8, 36, 3)}
BLOCKS = {18: "basic", 34: "basic", 50: "bottleneck", 101: "bottleneck", 152: "bottleneck"}
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # torchvision's


class ResidualBlock(nn.Module):
  """One basic or bottleneck block, post- (v1) or pre-activation (v2); see the module
  docstring. `features` is the block's width (its output is 4x that for a bottleneck)."""
  features: int
  strides: int = 1
  bottleneck: bool = False
  preactivation: bool = False
  zero_init_residual: bool = False
  dtype: Any = None
  conv_impl: str = "auto"  # `dl_jax.nn.conv.Conv`'s impl

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv = lambda features, kernel, strides=1, name=None: Conv(
        features, (kernel, kernel), strides=(strides, strides),
        padding=[(kernel // 2, kernel // 2)] * 2, use_bias=False, kernel_init=_CONV_INIT,
        dtype=self.dtype, param_dtype=jnp.float32, impl=self.conv_impl, name=name)
    norm = lambda zero=False, name=None: nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
        param_dtype=jnp.float32,
        scale_init=nn.initializers.zeros if zero else nn.initializers.ones, name=name)
    out_features = self.features * (4 if self.bottleneck else 1)
    s = self.strides
    if self.bottleneck:
      convs = [(self.features, 1, 1), (self.features, 3, s), (out_features, 1, 1)]
    else:
      convs = [(self.features, 3, s), (out_features, 3, 1)]
    project = s != 1 or x.shape[-1] != out_features
    zero = self.zero_init_residual
    last = len(convs)

    if self.preactivation:
      y = nn.relu(norm(name="preact_bn")(x))
      shortcut = conv(out_features, 1, s, name="downsample_conv")(y) if project else x
      for i, (features, kernel, strides) in enumerate(convs, 1):
        if i > 1:
          y = nn.relu(norm(zero=zero and i == last, name=f"bn{i}")(y))
        y = conv(features, kernel, strides, name=f"conv{i}")(y)
      return shortcut + y

    shortcut = x
    if project:
      shortcut = norm(name="downsample_bn")(conv(out_features, 1, s, name="downsample_conv")(x))
    y = x
    for i, (features, kernel, strides) in enumerate(convs, 1):
      y = norm(zero=zero and i == last, name=f"bn{i}")(
          conv(features, kernel, strides, name=f"conv{i}")(y))
      if i < last:
        y = nn.relu(y)
    return nn.relu(y + shortcut)


class ResNet(nn.Module):
  """ResNet, section 5.3.2 (figures 5.30-5.31); see the module docstring."""
  stage_sizes: Sequence[int] = (2, 2, 2, 2)  # blocks per stage (table 1 of the paper)
  widths: Sequence[int] = (64, 128, 256, 512)  # each stage's block width (x4 out: bottleneck)
  stem_features: int = 64
  block: str = "basic"  # "basic" or "bottleneck"
  num_classes: int = 1000
  stem: str = "imagenet"  # "imagenet" (7x7/2 + max-pool) or "small" (3x3/1, no pool)
  preactivation: bool = False  # v2 blocks (He et al. 2016)
  zero_init_residual: bool = False  # last BN scale of every branch starts at 0
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32
  # How convolutions are computed (`dl_jax.nn.conv.Conv`): "auto" is XLA's convolution on an
  # accelerator and, on the CPU, Eigen's with the gradients written out (3x3 64 -> 64 at 28x28,
  # batch 128: 96 ms against XLA's 250 for the forward pass and both gradients).
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.block not in ("basic", "bottleneck"):
      raise ValueError(f"unknown block {self.block!r}; accepted: 'basic', 'bottleneck'")
    if self.stem not in ("imagenet", "small"):
      raise ValueError(f"unknown stem {self.stem!r}; accepted: 'imagenet', 'small'")
    if len(self.widths) != len(self.stage_sizes):
      raise ValueError(f"widths={tuple(self.widths)} must give one width per stage of "
                       f"stage_sizes={tuple(self.stage_sizes)}")
    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                     epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32,
                                     name=name)
    kernel, strides = (7, 2) if self.stem == "imagenet" else (3, 1)
    x = Conv(self.stem_features, (kernel, kernel), strides=(strides, strides),
             padding=[(kernel // 2, kernel // 2)] * 2, use_bias=False, kernel_init=_CONV_INIT,
             dtype=self.dtype, param_dtype=jnp.float32, impl=self.conv_impl, name="conv1")(x)
    if not self.preactivation:
      x = nn.relu(norm("bn1")(x))
    if self.stem == "imagenet":
      x = max_pool(x, (3, 3), (2, 2), [(1, 1), (1, 1)])
    for stage, blocks in enumerate(self.stage_sizes):
      for i in range(blocks):
        x = ResidualBlock(self.widths[stage], strides=2 if stage > 0 and i == 0 else 1,
                          bottleneck=self.block == "bottleneck",
                          preactivation=self.preactivation,
                          zero_init_residual=self.zero_init_residual, dtype=self.dtype,
                          conv_impl=self.conv_impl, name=f"layer{stage + 1}_{i}")(x, train)
    if self.preactivation:
      x = nn.relu(norm("final_bn")(x))
    x = x.mean(axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                    name="fc")(x)


_TORCHVISION_COUNTS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160,
                       152: 60_192_808}  # torchvision 0.28 resnet18 ... resnet152


def _defaults(depth: int, **overrides) -> dict:
  return {"stage_sizes": STAGE_SIZES[depth], "widths": (64, 128, 256, 512), "stem_features": 64,
          "block": BLOCKS[depth], "num_classes": 1000, "stem": "imagenet", "preactivation": False,
          "zero_init_residual": False, "dtype": "float32", "conv_impl": "auto", **overrides}


def _wide_defaults(depth: int, widen: int) -> dict:
  """WRN-depth-widen: (depth - 4) / 6 pre-activation basic blocks per stage."""
  return _defaults(18, stage_sizes=((depth - 4) // 6,) * 3,
                   widths=(16 * widen, 32 * widen, 64 * widen), stem_features=16,
                   num_classes=10, stem="small", preactivation=True)


_WRN_CIFAR_COUNTS = {(28, 10): 36_479_194, (16, 4): 2_748_890}  # the authors' (32x32x3, 10 classes)


def _small_count(depth: int) -> int:
  """Parameters of resnet*_small: torchvision's count without the 7x7x3 stem (a 3x3x1 one
  instead) and with a 10-class head."""
  expansion = 4 if BLOCKS[depth] == "bottleneck" else 1
  return (_TORCHVISION_COUNTS[depth] - 7 * 7 * 3 * 64 + 3 * 3 * 1 * 64
          - (512 * expansion + 1) * (1000 - 10))


SPECS = tuple(
    ModelSpec(
        name=f"resnet{depth}",
        family="image",
        factory=ResNet,
        defaults=_defaults(depth),
        param_count=_TORCHVISION_COUNTS[depth],
        description=f"ResNet-{depth} as torchvision (ImageNet 224x224x3, 1000 classes), "
                    "section 5.3.2",
        example_shape=(224, 224, 3),
        full_size=True,
    ) for depth in STAGE_SIZES) + tuple(
    ModelSpec(
        name=f"resnet{depth}_small",
        family="image",
        factory=ResNet,
        defaults=_defaults(depth, num_classes=10, stem="small"),
        param_count=_small_count(depth),
        description=f"ResNet-{depth} for 28x28x1: 3x3 stride-1 stem, no max-pool, "
                    "section 5.3.2",
    ) for depth in STAGE_SIZES) + (
    ModelSpec(
        name="wrn28_10",
        family="image",
        factory=ResNet,
        defaults=_wide_defaults(28, 10),
        param_count=_WRN_CIFAR_COUNTS[28, 10],
        description="Wide ResNet WRN-28-10 (Zagoruyko & Komodakis 2016), CIFAR 32x32x3, "
                    "10 classes; residual blocks of section 5.3.2",
        example_shape=(32, 32, 3),
        full_size=True,
    ),) + tuple(
    ModelSpec(
        name=f"wrn{depth}_{widen}_small",
        family="image",
        factory=ResNet,
        defaults=_wide_defaults(depth, widen),
        param_count=cifar_count - 3 * 3 * 2 * 16,  # a 3x3x1 stem instead of 3x3x3
        description=f"Wide ResNet WRN-{depth}-{widen} for 28x28x1, section 5.3.2",
    ) for (depth, widen), cifar_count in _WRN_CIFAR_COUNTS.items())
