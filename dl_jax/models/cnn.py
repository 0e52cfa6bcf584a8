"""The MNIST convolutional network of section 5.3.1 (figure 5.23)."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn.conv import Conv
from dl_jax.nn.pool import max_pool


class MnistCNN(nn.Module):
  """conv 6@5x5 valid, conv 12@5x5 valid, max-pool 2x2, conv 12@5x5 valid, max-pool 2x2,
  flatten (3*3*12 = 108), dense 256, dense 10; ReLU after every hidden layer.

  Shapes: 28x28x1 -> 24x24x6 -> 20x20x12 -> 10x10x12 -> 6x6x12 -> 3x3x12 -> 108 -> 256 -> 10.
  Returns logits; the softmax of eq. 5.22 is folded into the loss of eq. 5.23-5.24.

  `conv_impl` and `pool_impl` choose how convolutions and max-pools are computed
  (`dl_jax.nn.conv`, `dl_jax.nn.pool`); 'auto' takes the fastest measured on the backend. The
  parameters are those of `flax.linen.Conv` whatever the choice.
  """
  num_classes: int = 10
  conv_impl: str = "auto"
  pool_impl: str = "auto"
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    conv = lambda features: Conv(features, (5, 5), padding="VALID", impl=self.conv_impl,
                                 dtype=self.dtype, param_dtype=jnp.float32)
    pool = lambda x: max_pool(x, (2, 2), strides=(2, 2), impl=self.pool_impl)
    dense = lambda width: nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32)
    x = nn.relu(conv(6)(x))
    x = nn.relu(conv(12)(x))
    x = pool(x)
    x = nn.relu(conv(12)(x))
    x = pool(x)
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(dense(256)(x))
    return dense(self.num_classes)(x)


SPECS = (
    ModelSpec(
        name="mnist_cnn",
        family="image",
        factory=MnistCNN,
        defaults={"num_classes": 10, "conv_impl": "auto", "pool_impl": "auto",
                  "dtype": "float32"},
        param_count=(5 * 5 * 1 * 6 + 6) + (5 * 5 * 6 * 12 + 12) + (5 * 5 * 12 * 12 + 12)
        + (108 * 256 + 256) + (256 * 10 + 10),
        description="CNN of section 5.3.1 (figure 5.23)",
    ),
)
