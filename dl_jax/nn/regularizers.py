"""L1 and L2 regularization of weights and of activations, section 2.5.4.

On weights: `l1_penalty(params)` = sum |w| and `l2_penalty(params)` = sum w^2 over the leaves of a
parameter pytree that `include` selects, by default the kernels (flax's name for weight matrices
and filters), not biases. Multiply by a coefficient and add to the loss.

On activations: `activity_penalty(h, l1, l2)` returns (l1 sum |h| + l2 sum h^2) / batch_size;
the `ActivityRegularization` layer sows it into the "losses" collection and passes h through, and
`sown_penalty` sums that collection after `apply(..., mutable=["losses"])`.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

LOSSES = "losses"  # the collection the activity penalties are sown into

PathFilter = Callable[[str, jnp.ndarray], bool]  # ("Dense_0/kernel", leaf) -> selected?


def is_kernel(path: str, leaf: jnp.ndarray) -> bool:
  del leaf
  return path.rsplit("/", 1)[-1] == "kernel"


def _selected(params: Any, include: PathFilter) -> list[jnp.ndarray]:
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return [leaf for path, leaf in leaves
          if include("/".join(_key_name(k) for k in path), leaf)]


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def l1_penalty(params: Any, include: PathFilter = is_kernel) -> jnp.ndarray:
  """sum |w| over the selected leaves (LASSO: drives weights to exactly 0, a sparse model)."""
  return sum((jnp.abs(w).sum() for w in _selected(params, include)), jnp.zeros(()))


def l2_penalty(params: Any, include: PathFilter = is_kernel) -> jnp.ndarray:
  """sum w^2 over the selected leaves (ridge, "weight decay": keeps weights small)."""
  return sum(((w ** 2).sum() for w in _selected(params, include)), jnp.zeros(()))


def activity_penalty(h: jnp.ndarray, l1: float = 0.0, l2: float = 0.0) -> jnp.ndarray:
  """(l1 sum |h| + l2 sum h^2) / batch_size for activations h of shape (batch, ...).

  Divided by the batch size so that, added to a mean loss, its weight does not depend on it.
  An L1 penalty on activations asks for a sparse representation (sparse autoencoders, chapter 3).
  """
  return (l1 * jnp.abs(h).sum() + l2 * (h ** 2).sum()) / h.shape[0]


class ActivityRegularization(nn.Module):
  """Identity layer that sows `activity_penalty` of its input into the "losses" collection."""
  l1: float = 0.0
  l2: float = 0.0

  @nn.compact
  def __call__(self, h: jnp.ndarray) -> jnp.ndarray:
    self.sow(LOSSES, "activity_penalty", activity_penalty(h, self.l1, self.l2))
    return h


def sown_penalty(variables: Any) -> jnp.ndarray:
  """Sum of everything sown into "losses" (pass the mutated variables returned by `apply`)."""
  return sum((jnp.sum(v) for v in jax.tree.leaves(variables.get(LOSSES, {}))), jnp.zeros(()))
