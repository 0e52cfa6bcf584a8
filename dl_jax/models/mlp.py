"""Multilayer perceptron for MNIST (section 2.5 of the notes)."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dl_jax.models import registry
from dl_jax.nn import activations, initializers


class MLP(nn.Module):
  """Fully connected network: flatten, hidden dense layers, dense logits.

  Each hidden layer is dense -> [batch norm] -> activation -> [dropout] (sections 2.5.3-2.5.5).
  The softmax output of eq. 2.60 and the categorical cross-entropy of eq. 2.62-2.63 are applied
  together, in log-space, by the loss (`dl_jax.train.state.cross_entropy`), which is numerically
  stable; the module returns the logits v_0..v_9.
  """
  hidden: Sequence[int] = (256, 256)
  num_classes: int = 10
  activation: str = "relu"  # a name in dl_jax.nn.activations, or "prelu" (alpha learned)
  kernel_init: str = "lecun_normal"  # a name in dl_jax.nn.initializers
  dropout_rate: float = 0.0  # dropout on hidden activations (section 2.5.4), training only
  batch_norm: bool = False  # running statistics live in the train state's batch_stats

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    init = initializers.get(self.kernel_init)
    act = None if self.activation == "prelu" else activations.get(self.activation)
    x = x.reshape((x.shape[0], -1))  # 28x28 -> 784, section 2.5.1
    for width in self.hidden:
      x = nn.Dense(width, kernel_init=init, use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = activations.PReLU()(x) if act is None else act(x)
      if self.dropout_rate:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=init)(x)


registry.register(registry.ModelSpec(
    name="mnist_mlp",
    factory=MLP,
    defaults={"hidden": (256, 256), "num_classes": 10, "activation": "relu",
              "kernel_init": "lecun_normal", "dropout_rate": 0.0, "batch_norm": False},
    input_shape=(28, 28, 1),
    num_outputs=10,
    param_count=784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10,
    description="MLP 784-256-256-10 with ReLU, section 2.5",
))
