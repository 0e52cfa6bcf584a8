"""Recurrent sequence classifiers (family "sequence": [batch, T, F] -> logits [batch, classes]):
an Elman RNN, LSTM or GRU encoder (`dl_jax.nn.recurrent`), stacked and optionally
bidirectional, and a dense layer on its summary (the last output).

The defaults hold about 70k parameters on pixel-by-pixel MNIST (F = 1), the budget of Bai et
al. (2018), "An empirical evaluation of generic convolutional and recurrent networks for
sequence modeling", table 1: Elman 260 units (70,730), LSTM 130 (69,950), GRU 150 (70,060).
Read row by row (F = 28) the input kernels grow: LSTM 83,990, GRU 82,210, Elman 77,750.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn.recurrent import RecurrentEncoder


class SequenceClassifier(nn.Module):
  """`num_layers` recurrent layers of `hidden` units (each direction), then dense logits on the
  last output (bidirectional: the forward layer's last output and the backward one's first)."""
  cell: str = "lstm"  # "elman", "lstm" or "gru"
  hidden: int = 130
  num_layers: int = 1
  bidirectional: bool = False
  num_classes: int = 10
  forget_bias: float = 1.0  # LSTM: initial bias of the forget gate (the others have none)
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32
  chrono: bool = False  # LSTM: the chrono initialization of its gate biases (Tallec & Ollivier)

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    _, summary = RecurrentEncoder(self.cell, self.hidden, self.num_layers, self.bidirectional,
                                  self.forget_bias, self.dtype, self.chrono,
                                  name="encoder")(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                    name="classifier")(summary)


def _defaults(hidden: int, **extra) -> dict:
  return {"hidden": hidden, "num_layers": 1, "bidirectional": False, "num_classes": 10,
          **extra, "dtype": "float32"}


def _count(gates: int, hidden: int, features: int = 1, classes: int = 10) -> int:
  """One layer of `gates` gate blocks on `features` inputs (the GRU adds its b_hn), then the
  dense classifier."""
  recurrent = gates * (features * hidden + hidden * hidden + hidden) + (hidden if gates == 3
                                                                        else 0)
  return recurrent + hidden * classes + classes


SPECS = (
    ModelSpec(
        name="rnn_classifier", family="sequence",
        factory=functools.partial(SequenceClassifier, cell="elman", forget_bias=0.0,
                                chrono=False),
        defaults=_defaults(260),
        param_count=_count(1, 260),
        description="Elman RNN (260 units) on a sequence, dense logits; course section 1.5"),
    ModelSpec(
        name="lstm_classifier", family="sequence",
        factory=functools.partial(SequenceClassifier, cell="lstm"),
        defaults=_defaults(130, forget_bias=1.0, chrono=False),
        param_count=_count(4, 130),
        description="LSTM (130 units) on a sequence, dense logits; course section 1.5"),
    ModelSpec(
        name="gru_classifier", family="sequence",
        factory=functools.partial(SequenceClassifier, cell="gru", forget_bias=0.0, chrono=False),
        defaults=_defaults(150),
        param_count=_count(3, 150),
        description="GRU (150 units) on a sequence, dense logits; course section 1.5"),
)
