"""The neural probabilistic language model (section 3.2, eq. 3.2-3.5) as a linen module.

    g = softmax(b + U tanh(d + H [E w_{t-n+1}; ...; E w_{t-1}]))

`NPLM` declares the parameters of `dl_jax.text.models.init_nplm` under the same names and shapes
(E, H, d, U, b) and computes `dl_jax.text.models.nplm_logits`: `NPLM(...).apply({"params": p},
contexts)` equals `nplm_logits(p, contexts)` for any such `p`. The initial values follow the
same distributions as `init_nplm`, drawn from linen's per-parameter keys.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.models.spec import ModelSpec
from dl_jax.text import models as text_models


def _normal(scale: float):
  return lambda key, shape, dtype: jax.random.normal(key, shape, dtype) * scale


class NPLM(nn.Module):
  """Logits [B, vocab_size] of the next word given the `context_size` = n - 1 previous word ids
  [B, context_size] (eq. 3.4-3.5; the softmax is left to the loss, eq. 3.3)."""
  vocab_size: int = 6731
  dim: int = 60  # m, the embedding size
  context_size: int = 4  # n - 1
  hidden: int = 100  # h, tanh units
  dtype: Any = None  # compute dtype (None: float32, the parameters'); parameters float32

  @nn.compact
  def __call__(self, contexts: jax.Array) -> jax.Array:
    if contexts.shape[-1] != self.context_size:
      raise ValueError(f"contexts {contexts.shape} must end in context_size={self.context_size}")
    fan_in = self.context_size * self.dim
    params = {
        "E": self.param("E", _normal(0.1), (self.vocab_size, self.dim), jnp.float32),
        "H": self.param("H", _normal(1 / np.sqrt(fan_in)), (fan_in, self.hidden), jnp.float32),
        "d": self.param("d", nn.initializers.zeros, (self.hidden,), jnp.float32),
        "U": self.param("U", _normal(1 / np.sqrt(self.hidden)), (self.hidden, self.vocab_size),
                        jnp.float32),
        "b": self.param("b", nn.initializers.zeros, (self.vocab_size,), jnp.float32),
    }
    if self.dtype is not None:
      params = jax.tree.map(lambda p: p.astype(self.dtype), params)
    return text_models.nplm_logits(params, contexts)


def _param_count(vocab_size: int, dim: int, context_size: int, hidden: int) -> int:
  return (vocab_size * dim + context_size * dim * hidden + hidden + hidden * vocab_size
          + vocab_size)


SPECS = (
    ModelSpec(
        name="nplm",
        family="text",
        factory=NPLM,
        defaults={"vocab_size": 6731, "dim": 60, "context_size": 4, "hidden": 100,
                  "dtype": "float32"},
        param_count=_param_count(6731, 60, 4, 100),
        description="neural probabilistic language model, n = 5, full softmax (section 3.2, "
                    "eq. 3.2-3.5)",
    ),
)
