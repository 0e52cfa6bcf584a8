"""AlexNet (section 5.3.2, figure 5.25; Krizhevsky, Sutskever and Hinton 2012), with two helpers
the other architectures of that section reuse: adaptive average pooling and Krizhevsky's local
response normalization.

Layout as torchvision's `alexnet` (the single-GPU "one weird trick" variant, Krizhevsky 2014:
64, 192, 384, 256, 256 channels, no response normalization; its parameter count, 61,100,840):

    conv 64@11x11/4 pad 2, ReLU, [LRN], max-pool 3/2,
    conv 192@5x5 pad 2, ReLU, [LRN], max-pool 3/2,
    conv 384@3x3, ReLU, conv 256@3x3, ReLU, conv 256@3x3, ReLU, max-pool 3/2,
    adaptive average pool to 6x6, flatten,
    dropout 0.5, dense 4096, ReLU, dropout 0.5, dense 4096, ReLU, dense num_classes.

224x224x3 -> 55 -> 27 -> 27 -> 13 -> 13 -> 6 (x256) -> 9216 -> 4096 -> 4096 -> 1000.
`local_response_norm=True` puts the paper's response normalization after the first two ReLUs
(section 3.3 of the paper). The flatten runs over (H, W, C), torchvision's over (C, H, W): a
transplanted first dense kernel has its rows permuted accordingly.

`alexnet_small` (28x28x1, 10 classes) adapts it as CIFAR-sized AlexNets do: a 5x5 stride-1
stem (no 11x11/4, which would leave 5x5 maps after it), half the channels
(32, 96, 192, 128, 128), the three max-pools kept (28 -> 13 -> 6 -> 2), the adaptive pool to
2x2 and a 1024-wide classifier.
"""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn.conv import Conv
from dl_jax.nn.pool import max_pool


def adaptive_avg_pool(x: jax.Array, size: int | tuple[int, int]) -> jax.Array:
  """torch's `AdaptiveAvgPool2d` on NHWC: output cell (i, j) averages the rows
  floor(i H / h) .. ceil((i + 1) H / h) - 1 (and the same for columns), so that any input size
  gives an h x w output; a plain reshape-and-mean when h divides H and w divides W."""
  h, w = (size, size) if isinstance(size, int) else size
  H, W = x.shape[1:3]
  if H % h == 0 and W % w == 0:
    return x.reshape(x.shape[0], h, H // h, w, W // w, x.shape[3]).mean(axis=(2, 4))
  bins = lambda n, m: [(i * n // m, math.ceil((i + 1) * n / m)) for i in range(m)]
  rows = [x[:, a:b].mean(axis=1, keepdims=True) for a, b in bins(H, h)]
  x = jnp.concatenate(rows, axis=1)
  cols = [x[:, :, a:b].mean(axis=2, keepdims=True) for a, b in bins(W, w)]
  return jnp.concatenate(cols, axis=2)


def local_response_norm(x: jax.Array, size: int = 5, k: float = 2.0, alpha: float = 1e-4,
                        beta: float = 0.75) -> jax.Array:
  """Krizhevsky et al. 2012, section 3.3, across channels (the last axis):

      b_i = a_i / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} a_j^2)^beta

  with n = `size`. No parameters. Note alpha multiplies the sum itself (torch's
  `LocalResponseNorm` divides it by n first)."""
  half = size // 2
  squares = jnp.pad(jnp.square(x), [(0, 0)] * (x.ndim - 1) + [(half, size - 1 - half)])
  n = x.shape[-1]
  window = sum(squares[..., j:j + n] for j in range(size))
  return x / (k + alpha * window) ** beta


class AlexNet(nn.Module):
  """AlexNet, section 5.3.2 (figure 5.25); see the module docstring for the layout."""
  num_classes: int = 1000
  features: Sequence[int] = (64, 192, 384, 256, 256)  # channels of the five convolutions
  stem_kernel: int = 11
  stem_stride: int = 4
  stem_padding: int = 2
  pooled_size: int = 6  # side of the adaptive average pool before the classifier
  hidden: int = 4096  # width of the two hidden dense layers
  dropout_rate: float = 0.5  # before each hidden dense layer, training only
  local_response_norm: bool = False  # the 2012 paper's LRN after conv 1 and conv 2
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32
  conv_impl: str = "auto"  # `dl_jax.nn.conv.Conv`'s impl: XLA on accelerators, Eigen on CPU

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv = lambda features, kernel, stride=1, pad=None: Conv(
        features, (kernel, kernel), strides=(stride, stride),
        padding=[(kernel // 2 if pad is None else pad,) * 2] * 2,
        dtype=self.dtype, param_dtype=jnp.float32, impl=self.conv_impl)
    dense = lambda width: nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32)
    pool = lambda x: max_pool(x, (3, 3), (2, 2), "VALID")
    lrn = local_response_norm if self.local_response_norm else (lambda x: x)
    c1, c2, c3, c4, c5 = self.features
    x = pool(lrn(nn.relu(conv(c1, self.stem_kernel, self.stem_stride, self.stem_padding)(x))))
    x = pool(lrn(nn.relu(conv(c2, 5)(x))))
    x = nn.relu(conv(c3, 3)(x))
    x = nn.relu(conv(c4, 3)(x))
    x = pool(nn.relu(conv(c5, 3)(x)))
    x = adaptive_avg_pool(x, self.pooled_size)
    x = x.reshape((x.shape[0], -1))
    for _ in range(2):
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = nn.relu(dense(self.hidden)(x))
    return dense(self.num_classes)(x)


_DEFAULTS = {"num_classes": 1000, "features": (64, 192, 384, 256, 256), "stem_kernel": 11,
             "stem_stride": 4, "stem_padding": 2, "pooled_size": 6, "hidden": 4096,
             "dropout_rate": 0.5, "local_response_norm": False, "dtype": "float32",
             "conv_impl": "auto"}

SPECS = (
    ModelSpec(
        name="alexnet",
        family="image",
        factory=AlexNet,
        defaults=_DEFAULTS,
        param_count=61_100_840,  # torchvision 0.28 alexnet
        description="AlexNet as torchvision (ImageNet 224x224x3, 1000 classes), section 5.3.2",
        example_shape=(224, 224, 3),
        full_size=True,
    ),
    ModelSpec(
        name="alexnet_small",
        family="image",
        factory=AlexNet,
        defaults={**_DEFAULTS, "num_classes": 10, "features": (32, 96, 192, 128, 128),
                  "stem_kernel": 5, "stem_stride": 1, "stem_padding": 2, "pooled_size": 2,
                  "hidden": 1024},
        param_count=(5 * 5 * 1 * 32 + 32) + (5 * 5 * 32 * 96 + 96) + (3 * 3 * 96 * 192 + 192)
        + (3 * 3 * 192 * 128 + 128) + (3 * 3 * 128 * 128 + 128) + (2 * 2 * 128 * 1024 + 1024)
        + (1024 * 1024 + 1024) + (1024 * 10 + 10),
        description="AlexNet for 28x28x1: 5x5 stride-1 stem, half width, section 5.3.2",
    ),
)
