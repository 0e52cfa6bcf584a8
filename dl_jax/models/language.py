"""Character-level recurrent language models (family "char_lm": ids [batch, T] int32 -> logits
[batch, T, num_classes], num_classes the number of characters; the models for sequential data of
the course overview, section 1.5): an embedding of each character, stacked LSTM or GRU layers
(`dl_jax.nn.recurrent`), and a dense softmax layer over the vocabulary at every step, the next
character's distribution (Graves 2013, "Generating sequences with recurrent neural networks";
Karpathy's char-rnn, 2015).

The logit at t depends on the characters up to t only (the layers run forward in time), so the
model factorizes p(x_1..x_T) = prod_t p(x_{t+1} | x_1..x_t). `unroll` takes and returns the
carry of every layer, so that a long text is read in windows, each starting from the state the
previous one ended in (truncated BPTT in training, exact evaluation over a whole text), and
`sample` draws text one character at a time inside one `jax.lax.scan`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn.recurrent import GATES, Recurrent, zero_carry


class CharLanguageModel(nn.Module):
  """Embedding (`embed_dim`), `num_layers` recurrent layers of `hidden` units, dense logits."""
  cell: str = "lstm"  # "lstm" or "gru" (or "elman")
  num_classes: int = 96  # the vocabulary size (the task sets it from the data)
  embed_dim: int = 64
  hidden: int = 256
  num_layers: int = 1
  forget_bias: float = 1.0  # LSTM: initial bias of the forget gate
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32

  def setup(self):
    if self.num_layers < 1:
      raise ValueError(f"num_layers={self.num_layers} must be at least 1")
    self.embed = nn.Embed(self.num_classes, self.embed_dim, param_dtype=jnp.float32)
    self.layers = [Recurrent(self.cell, self.hidden, forget_bias=self.forget_bias,
                             dtype=self.dtype) for _ in range(self.num_layers)]
    self.head = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)

  def __call__(self, ids: jax.Array, train: bool = False) -> jax.Array:
    del train
    return self.unroll(ids)[0]

  def unroll(self, ids: jax.Array, carry=None):
    """ids [batch, T] from `carry` (None: zeros) -> (logits [batch, T, vocab], final carry)."""
    return self.unroll_embedded(self.embed(ids), carry)

  def unroll_embedded(self, x: jax.Array, carry=None):
    """The same from the embedded characters x [batch, T, embed_dim]."""
    if self.dtype is not None:
      x = x.astype(self.dtype)
    if carry is None:
      carry = self.initial_carry(x.shape[0])
    final = []
    for layer, layer_carry in zip(self.layers, carry):
      layer_carry, x = layer(x, layer_carry)
      final.append(layer_carry)
    return self.head(x), tuple(final)

  @nn.nowrap
  def initial_carry(self, batch: int) -> tuple:
    """Zeros for every layer: h (GRU, Elman) or (c, h) (LSTM), [batch, hidden] float32."""
    return tuple(zero_carry(self.cell, (batch,), self.hidden) for _ in range(self.num_layers))


def sample(model: CharLanguageModel, params, prompt: jax.Array, key: jax.Array, length: int,
           temperature) -> jax.Array:
  """`length` characters [count, length] after the prompt ids [count, P] (P >= 1), each drawn
  from softmax(logits / temperature) with key fold_in(key, t) at step t, inside one lax.scan.
  Deterministic in `key`; as the temperature goes to 0 it becomes greedy (argmax) decoding."""
  logits, carry = model.apply({"params": params}, prompt, method="unroll")

  def step(state, t):
    last, carry = state
    scaled = last.astype(jnp.float32) / temperature
    ids = jax.random.categorical(jax.random.fold_in(key, t), scaled, axis=-1).astype(jnp.int32)
    logits, carry = model.apply({"params": params}, ids[:, None], carry, method="unroll")
    return (logits[:, -1], carry), ids

  _, ids = jax.lax.scan(step, (logits[:, -1], carry), jnp.arange(length))
  return ids.T


def _defaults(hidden: int, num_layers: int, **extra) -> dict:
  return {"num_classes": 96, "embed_dim": 64, "hidden": hidden, "num_layers": num_layers,
          **extra, "dtype": "float32"}


def _count(cell: str, hidden: int, num_layers: int, vocab: int = 96, embed: int = 64) -> int:
  """Embedding, `num_layers` layers (the GRU adds its b_hn), dense logits."""
  gates, total, features = GATES[cell], vocab * embed, embed
  for _ in range(num_layers):
    total += gates * (features * hidden + hidden * hidden + hidden)
    total += hidden if cell == "gru" else 0
    features = hidden
  return total + hidden * vocab + vocab


SPECS = (
    ModelSpec(
        name="lstm_lm", family="char_lm",
        factory=functools.partial(CharLanguageModel, cell="lstm"),
        defaults=_defaults(256, 1, forget_bias=1.0),
        param_count=_count("lstm", 256, 1),
        description="character LSTM language model (256 units); course overview, section 1.5"),
    ModelSpec(
        name="gru_lm", family="char_lm",
        factory=functools.partial(CharLanguageModel, cell="gru", forget_bias=0.0),
        defaults=_defaults(256, 1),
        param_count=_count("gru", 256, 1),
        description="character GRU language model (256 units); course overview, section 1.5"),
)
