"""Multilayer perceptron for MNIST (section 2.5 of the notes)."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn import activations, initializers


class MLP(nn.Module):
  """Fully connected network: flatten, hidden dense layers, dense logits.

  Each hidden layer is dense -> [batch norm] -> activation -> [dropout] (sections 2.5.3-2.5.5).
  The softmax output of eq. 2.60 and the categorical cross-entropy of eq. 2.62-2.63 are applied
  together, in log-space, by the loss (`dl_jax.tasks.image_classification.cross_entropy`), which
  is numerically stable; the module returns the logits v_0..v_9.
  """
  hidden: Sequence[int] = (256, 256)
  num_classes: int = 10
  activation: str = "relu"  # a name in dl_jax.nn.activations, or "prelu" (alpha learned)
  kernel_init: str = "lecun_normal"  # a name in dl_jax.nn.initializers
  dropout_rate: float = 0.0  # dropout on hidden activations (section 2.5.4), training only
  batch_norm: bool = False  # running statistics live in the train state's batch_stats
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    init = initializers.get(self.kernel_init)
    act = None if self.activation == "prelu" else activations.get(self.activation)
    dense = lambda width, **kw: nn.Dense(width, kernel_init=init, dtype=self.dtype,
                                         param_dtype=jnp.float32, **kw)
    x = x.reshape((x.shape[0], -1))  # 28x28 -> 784, section 2.5.1
    for width in self.hidden:
      x = dense(width, use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                         param_dtype=jnp.float32)(x)
      x = activations.PReLU()(x).astype(x.dtype) if act is None else act(x)
      if self.dropout_rate:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return dense(self.num_classes)(x)


SPECS = (
    ModelSpec(
        name="mnist_mlp",
        family="image",
        factory=MLP,
        defaults={"hidden": (256, 256), "num_classes": 10, "activation": "relu",
                  "kernel_init": "lecun_normal", "dropout_rate": 0.0, "batch_norm": False,
                  "dtype": "float32"},
        param_count=784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10,
        description="MLP 784-256-256-10 with ReLU, section 2.5",
    ),
)
