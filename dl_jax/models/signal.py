"""The MNIST-1D baselines on 1-D signals [batch, 40, 1] (family "signal"): logistic regression,
MLP and CNN of Greydanus & Kobak, "Scaling down deep learning with MNIST-1D" (2020/2024), as
written in their repository's `notebooks/models.py` (LinearBase, MLPBase, ConvBase). Published
test accuracies on MNIST-1D: 32 %, 68 % and 94 %; on the shuffled variant 32 %, 68 % and 56 %
(the convolutions' prior, neighbouring samples belong together, no longer holds).

Each returns logits; the softmax is folded into the cross-entropy of the classification task.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn import initializers

LENGTH = 40  # MNIST-1D signals: 40 samples, one channel


class LogisticRegression(nn.Module):
  """Flatten the 40 samples, one dense layer to the logits (their LinearBase)."""
  num_classes: int = 10
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(x)


class SignalMLP(nn.Module):
  """Their MLPBase: h1 = relu(W1 x), h2 = h1 + relu(W2 h1) (the second hidden layer is added to
  the first, as in their code; `residual=False` stacks them plainly), logits = W3 h2; 40-100-100-10.
  """
  hidden: int = 100
  num_classes: int = 10
  residual: bool = True
  kernel_init: str = "lecun_normal"  # a name in dl_jax.nn.initializers
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    dense = lambda width: nn.Dense(width, kernel_init=initializers.get(self.kernel_init),
                                   dtype=self.dtype, param_dtype=jnp.float32)
    x = x.reshape((x.shape[0], -1))
    h = nn.relu(dense(self.hidden)(x))
    h2 = nn.relu(dense(self.hidden)(h))
    h = h + h2 if self.residual else h2
    return dense(self.num_classes)(h)


class SignalCNN(nn.Module):
  """Their ConvBase: three 1-D convolutions (`flax.linen.Conv` on [batch, length, channels]) of
  25 channels, kernels 5, 3, 3, stride 2, zero padding 1, ReLU after each; flatten; dense logits.

  Lengths: 40 -> 19 -> 10 -> 5, so the classifier sees 5 * 25 = 125 features. `features` is the
  convolutional part alone: it takes signals of any length and is translation-equivariant, a
  shift of the input by a multiple of the total stride 8 moving its output by shift / 8 (away
  from the zero-padded ends).
  """
  channels: int = 25
  kernel_sizes: Sequence[int] = (5, 3, 3)
  stride: int = 2
  padding: int = 1
  num_classes: int = 10
  kernel_init: str = "lecun_normal"  # a name in dl_jax.nn.initializers
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32

  def setup(self):
    init = initializers.get(self.kernel_init)
    self.convs = [nn.Conv(self.channels, (k,), strides=(self.stride,),
                          padding=((self.padding, self.padding),), kernel_init=init,
                          dtype=self.dtype, param_dtype=jnp.float32, name=f"conv{i + 1}")
                  for i, k in enumerate(self.kernel_sizes)]
    self.linear = nn.Dense(self.num_classes, kernel_init=init, dtype=self.dtype,
                           param_dtype=jnp.float32)

  def features(self, x: jnp.ndarray) -> jnp.ndarray:
    """[batch, length, 1] -> [batch, length', channels] after the convolutions and ReLUs."""
    for conv in self.convs:
      x = nn.relu(conv(x))
    return x

  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    h = self.features(x)
    return self.linear(h.reshape((h.shape[0], -1)))


def _conv_lengths(length: int = LENGTH, kernel_sizes=(5, 3, 3), stride=2, padding=1):
  lengths = [length]
  for k in kernel_sizes:
    lengths.append((lengths[-1] + 2 * padding - k) // stride + 1)
  return lengths


_CITE = "Greydanus & Kobak, Scaling down deep learning with MNIST-1D (2020/2024)"
_CNN_OUT = _conv_lengths()[-1] * 25  # 5 * 25 = 125, their linear_in

SPECS = (
    ModelSpec(
        name="mnist1d_logreg",
        family="signal",
        factory=LogisticRegression,
        defaults={"num_classes": 10, "dtype": "float32"},
        param_count=LENGTH * 10 + 10,
        description=f"logistic regression 40-10 on MNIST-1D (LinearBase; {_CITE})",
    ),
    ModelSpec(
        name="mnist1d_mlp",
        family="signal",
        factory=SignalMLP,
        defaults={"hidden": 100, "num_classes": 10, "residual": True,
                  "kernel_init": "lecun_normal", "dtype": "float32"},
        param_count=(LENGTH * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10),
        description=f"MLP 40-100-100-10 with ReLU on MNIST-1D (MLPBase; {_CITE})",
    ),
    ModelSpec(
        name="mnist1d_cnn",
        family="signal",
        factory=SignalCNN,
        defaults={"channels": 25, "kernel_sizes": (5, 3, 3), "stride": 2, "padding": 1,
                  "num_classes": 10, "kernel_init": "lecun_normal", "dtype": "float32"},
        param_count=(5 * 1 * 25 + 25) + 2 * (3 * 25 * 25 + 25) + (_CNN_OUT * 10 + 10),
        description=f"1-D CNN, 3 convs of 25 channels, stride 2, on MNIST-1D (ConvBase; {_CITE})",
    ),
)
