"""Activation functions of section 2.5.3 (figure 2.21) by name, and the learned PReLU.

`get(name)` is how configs pick an activation; the closed-form derivatives used by the hand-written
backpropagation are in `dl_jax.from_scratch.backprop.DERIVATIVES`.
"""

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.errors import ConfigError

ACTIVATIONS: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    "linear": lambda x: x,  # phi(x) = x, section 2.1.1; output layers only (footnote 6)
    "relu": jax.nn.relu,  # eq. 2.64
    "leaky_relu": functools.partial(jax.nn.leaky_relu, negative_slope=0.01),
    "elu": jax.nn.elu,  # alpha = 1
    "selu": jax.nn.selu,  # scaled ELU, lambda ~ 1.0507, alpha ~ 1.6733
    "softplus": jax.nn.softplus,  # log(1 + e^x), derivative sigmoid
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
}


def get(name: str) -> Callable[[jnp.ndarray], jnp.ndarray]:
  if name not in ACTIVATIONS:
    raise ConfigError(f"unknown activation {name!r}; accepted: {', '.join(ACTIVATIONS)}")
  return ACTIVATIONS[name]


class PReLU(nn.Module):
  """Leaky ReLU whose slope alpha is learned by gradient descent ("parameterized ReLU", 2.5.3).

  x if x > 0 else alpha x, with one alpha per feature (last axis) or a single scalar alpha.
  """
  per_feature: bool = True
  alpha_init: float = 0.25

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    shape = (x.shape[-1],) if self.per_feature else ()
    alpha = self.param("alpha", nn.initializers.constant(self.alpha_init), shape)
    return jnp.where(x > 0, x, alpha * x)
