"""Multilayer perceptron for MNIST (section 2.5 of the notes)."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dl_jax.models import registry


class MLP(nn.Module):
  """Fully connected network: flatten, hidden dense layers with ReLU, dense logits.

  The softmax output of eq. 2.60 and the categorical cross-entropy of eq. 2.62-2.63 are applied
  together, in log-space, by the loss (`dl_jax.train.steps.cross_entropy`), which is numerically
  stable; the module returns the logits v_0..v_9.
  """
  hidden: Sequence[int] = (256, 256)
  num_classes: int = 10
  dropout_rate: float = 0.0  # dropout on hidden activations (section 2.5.4), training only

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = x.reshape((x.shape[0], -1))  # 28x28 -> 784, section 2.5.1
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
      if self.dropout_rate:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes)(x)


registry.register(registry.ModelSpec(
    name="mnist_mlp",
    factory=MLP,
    defaults={"hidden": (256, 256), "num_classes": 10, "dropout_rate": 0.0},
    input_shape=(28, 28, 1),
    num_outputs=10,
    param_count=784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10,
    description="MLP 784-256-256-10 with ReLU, section 2.5",
))
