"""GoogLeNet (section 5.3.2, figures 5.27-5.28; Szegedy et al. 2014, "Going deeper with
convolutions"), with its two auxiliary classifiers.

Inception module (figure 5.28): four parallel branches concatenated on the channels,
1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | max-pool 3x3/1 -> 1x1 ("pool proj"); the 1x1 reductions
before the 3x3 and 5x5 convolutions keep the depth, hence the cost, down (the note on 1x1
kernels in section 5.3.2). Network, the paper's table 1 (224x224x3):

    conv 7x7/2 64, max-pool 3x3/2, [LRN], conv 1x1 64, conv 3x3 192, [LRN], max-pool 3x3/2
      (224 -> 112 -> 56 -> 28),
    inception 3a, 3b, max-pool 3x3/2 (-> 14), 4a, [aux1], 4b, 4c, 4d, [aux2], 4e,
    max-pool 3x3/2 (-> 7), 5a, 5b, global average pool, dropout 0.4, dense num_classes.

Every convolution is followed by a ReLU; max-pools round up (torch's ceil_mode) so that 112
gives 56. Auxiliary classifier (after 4a and 4d, 14x14): avg-pool 5x5/3 (-> 4x4), conv 1x1
128 + ReLU, dense 1024 + ReLU, dropout 0.7, dense num_classes.

Auxiliary logits: computed in training only (`train=True`), and sown as
`self.sow(AUX_LOGITS, "aux1" / "aux2", logits)`; the classification task adds 0.3 x their
cross-entropy to the loss (as the paper). Apply with `mutable=[AUX_LOGITS, ...]` to get them
back (each a 1-tuple). The return value is always the main logits; at evaluation the
auxiliary heads are not computed, but `init` creates their parameters (`aux1_head`,
`aux2_head`) whatever `train` is (they are in the pinned parameter count), and init sows
nothing.

Options, default as the paper; torchvision's `googlenet` is `branch5x5_kernel=3` (the "5x5"
branch is a 3x3 conv there, a known quirk kept for its weights), `batch_norm=True`
(BN eps 1e-3 after every conv, which then has no bias), `local_response_norm=False`,
`pool4_kernel=2` (its max-pool after 4e is 2x2/2), `dropout_rate=0.2`: 13,004,888 parameters,
6,624,904 without the auxiliary heads. Its auxiliary heads pool adaptively to 4x4 (windows of
4 at 14x14), not 5x5/3; that changes only the training loss. Flattens run over (H, W, C),
torchvision's over (C, H, W).

Initialization: convolutions He-normal (fan-in), dense layers Flax's default (LeCun normal).
torchvision draws all weights from a truncated N(0, 0.01^2), fine under batch norm and for
loading weights, but without batch norm (the paper's default here) it makes the signal vanish
through the 22 layers.

`googlenet_small` (28x28x1, 10 classes), after the CIFAR GoogLeNet of kuangliu/pytorch-cifar:
the stem is one conv 3x3/1 192 (+ BN), with no early downsampling, so that 3a-3b run at 28x28,
4a-4e at 14x14 (the auxiliary heads see 14x14 and pool it to 4x4 as in the paper) and 5a-5b
at 7x7; batch norm on, no LRN.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.alexnet import local_response_norm
from dl_jax.models.spec import AUX_LOGITS, ModelSpec
from dl_jax.nn.conv import Conv
from dl_jax.nn.pool import max_pool

# Table 1 of the paper: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def max_pool_ceil(x: jax.Array, window: int, stride: int) -> jax.Array:
  """torch's `MaxPool2d(window, stride, ceil_mode=True)` without padding on NHWC: the output
  size rounds up, the last window hanging over the (-inf padded) bottom/right edge."""
  pads = []
  for n in x.shape[1:3]:
    out = -(-(n - window) // stride) + 1
    pads.append((0, (out - 1) * stride + window - n))
  return max_pool(x, (window, window), (stride, stride), pads)


class ConvBlock(nn.Module):
  """conv (bias unless batch norm), [BN eps 1e-3], ReLU."""
  features: int
  kernel: int = 1
  strides: int = 1
  batch_norm: bool = False
  dtype: Any = None
  conv_impl: str = "auto"  # `dl_jax.nn.conv.Conv`'s impl

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    k, p = self.kernel, self.kernel // 2
    x = Conv(self.features, (k, k), strides=(self.strides,) * 2, padding=[(p, p)] * 2,
             use_bias=not self.batch_norm, kernel_init=_CONV_INIT, dtype=self.dtype,
             param_dtype=jnp.float32, impl=self.conv_impl)(x)
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-3,
                       dtype=self.dtype, param_dtype=jnp.float32)(x)
    return nn.relu(x)


class Inception(nn.Module):
  """The inception module of figure 5.28 (see the module docstring)."""
  ch1x1: int
  ch3x3red: int
  ch3x3: int
  ch5x5red: int
  ch5x5: int
  pool_proj: int
  branch5x5_kernel: int = 5
  batch_norm: bool = False
  dtype: Any = None
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv = lambda features, kernel=1, name=None: ConvBlock(
        features, kernel, batch_norm=self.batch_norm, dtype=self.dtype,
        conv_impl=self.conv_impl, name=name)
    b1 = conv(self.ch1x1, name="branch1")(x, train)
    b2 = conv(self.ch3x3red, name="branch2_reduce")(x, train)
    b2 = conv(self.ch3x3, 3, name="branch2")(b2, train)
    b3 = conv(self.ch5x5red, name="branch3_reduce")(x, train)
    b3 = conv(self.ch5x5, self.branch5x5_kernel, name="branch3")(b3, train)
    b4 = max_pool(x, (3, 3), (1, 1), [(1, 1), (1, 1)])
    b4 = conv(self.pool_proj, name="branch4")(b4, train)
    return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class AuxClassifier(nn.Module):
  """Auxiliary head: avg-pool 5x5/3, conv 1x1 128 + ReLU, dense 1024 + ReLU, dropout 0.7,
  dense num_classes."""
  num_classes: int
  batch_norm: bool = False
  dtype: Any = None
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = nn.avg_pool(x, (5, 5), strides=(3, 3), padding="VALID")
    x = ConvBlock(128, batch_norm=self.batch_norm, dtype=self.dtype, conv_impl=self.conv_impl,
                  name="conv")(x, train)
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(1024, dtype=self.dtype, param_dtype=jnp.float32, name="fc1")(x))
    x = nn.Dropout(0.7, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                    name="fc2")(x)


class GoogLeNet(nn.Module):
  """GoogLeNet, section 5.3.2 (figures 5.27-5.28); see the module docstring."""
  num_classes: int = 1000
  stem: str = "imagenet"  # "imagenet" (the paper's, to 28x28 from 224) or "small" (3x3/1)
  aux_logits: bool = True  # the two auxiliary classifiers (their parameters and outputs)
  branch5x5_kernel: int = 5  # the "5x5" branch's kernel: 5 (paper) or 3 (torchvision)
  batch_norm: bool = False  # BN after every conv (torchvision), not in the paper
  local_response_norm: bool = True  # the paper's two LRNs in the stem (none in torchvision)
  pool4_kernel: int = 3  # the max-pool after 4e: 3x3/2 (paper) or 2x2/2 (torchvision)
  dropout_rate: float = 0.4  # before the last dense layer, training only
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32
  conv_impl: str = "auto"  # `dl_jax.nn.conv.Conv`'s impl: XLA on accelerators, Eigen on CPU

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.stem not in ("imagenet", "small"):
      raise ValueError(f"unknown stem {self.stem!r}; accepted: 'imagenet', 'small'")
    conv = lambda features, kernel=1, strides=1, name=None: ConvBlock(
        features, kernel, strides, batch_norm=self.batch_norm, dtype=self.dtype,
        conv_impl=self.conv_impl, name=name)
    lrn = local_response_norm if self.local_response_norm else (lambda x: x)
    if self.stem == "imagenet":
      x = conv(64, 7, 2, name="conv1")(x, train)
      x = lrn(max_pool_ceil(x, 3, 2))
      x = conv(64, name="conv2")(x, train)
      x = lrn(conv(192, 3, name="conv3")(x, train))
      x = max_pool_ceil(x, 3, 2)
    else:
      x = conv(192, 3, name="conv1")(x, train)

    heads = self.aux_logits and (train or self.is_initializing())
    for name in INCEPTION:
      if name == "4a" or name == "5a":
        x = max_pool_ceil(x, 3 if name == "4a" else self.pool4_kernel, 2)
      x = Inception(*INCEPTION[name], branch5x5_kernel=self.branch5x5_kernel,
                    batch_norm=self.batch_norm, dtype=self.dtype,
                    conv_impl=self.conv_impl, name=f"inception{name}")(x, train)
      if heads and name in ("4a", "4d"):
        aux = "aux1" if name == "4a" else "aux2"
        # The submodule cannot be named like the sown variable (one scope per name).
        logits = AuxClassifier(self.num_classes, self.batch_norm, self.dtype,
                               conv_impl=self.conv_impl, name=f"{aux}_head")(x, train)
        if not self.is_initializing():
          self.sow(AUX_LOGITS, aux, logits)

    x = x.mean(axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                    name="fc")(x)


def param_count(num_classes: int = 1000, stem: str = "imagenet", aux_logits: bool = True,
                branch5x5_kernel: int = 5, batch_norm: bool = False, **unused) -> int:
  """The parameter count of `GoogLeNet(...)`, from table 1 (`INCEPTION`) by hand."""
  conv = lambda cin, cout, k: k * k * cin * cout + (2 if batch_norm else 1) * cout
  if stem == "imagenet":
    count, cin = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3), 192
  else:
    count, cin = conv(1, 192, 3), 192
  for name, (c1, c3r, c3, c5r, c5, pp) in INCEPTION.items():
    count += (conv(cin, c1, 1) + conv(cin, c3r, 1) + conv(c3r, c3, 3) + conv(cin, c5r, 1)
              + conv(c5r, c5, branch5x5_kernel) + conv(cin, pp, 1))
    cin = c1 + c3 + c5 + pp
    if aux_logits and name in ("4a", "4d"):
      count += conv(cin, 128, 1) + (4 * 4 * 128 * 1024 + 1024) + (1024 * num_classes
                                                                + num_classes)
  return count + 1024 * num_classes + num_classes


_DEFAULTS = {"num_classes": 1000, "stem": "imagenet", "aux_logits": True,
             "branch5x5_kernel": 5, "batch_norm": False, "local_response_norm": True,
             "pool4_kernel": 3, "dropout_rate": 0.4, "dtype": "float32", "conv_impl": "auto"}
# torchvision's googlenet as options of this module (its parameter counts are checked in
# tests/test_architectures.py).
TORCHVISION = {"branch5x5_kernel": 3, "batch_norm": True, "local_response_norm": False,
               "pool4_kernel": 2, "dropout_rate": 0.2}

SPECS = (
    ModelSpec(
        name="googlenet",
        family="image",
        factory=GoogLeNet,
        defaults=_DEFAULTS,
        param_count=13_378_280,  # = param_count(**_DEFAULTS)
        description="GoogLeNet as the paper (ImageNet 224x224x3, 1000 classes, auxiliary "
                    "heads), section 5.3.2",
        example_shape=(224, 224, 3),
        full_size=True,
    ),
    ModelSpec(
        name="googlenet_small",
        family="image",
        factory=GoogLeNet,
        defaults={**_DEFAULTS, "num_classes": 10, "stem": "small", "batch_norm": True,
                  "local_response_norm": False},
        param_count=10_218_942,  # = param_count(num_classes=10, stem="small", batch_norm=True)
        description="GoogLeNet for 28x28x1: 3x3/1 stem, batch norm, auxiliary heads at "
                    "14x14, section 5.3.2",
    ),
)
