"""Softmax output and categorical cross-entropy (section 2.5.2), in a numerically stable form.

Logits v have shape (..., K) and integer labels y shape (...); losses are per example, like
`optax.softmax_cross_entropy_with_integer_labels`.
"""

import jax
import jax.numpy as jnp


def one_hot(y, num_classes: int, dtype=jnp.float32):
  """i -> e_i = (delta_ij)_j, eq. 2.59."""
  return (y[..., None] == jnp.arange(num_classes)).astype(dtype)


def softmax(v):
  """e^{v_j} / sum_i e^{v_i}, eq. 2.60, with every logit shifted by max(v) first.

  The shift cancels between numerator and denominator, and afterwards every exponent is <= 0 and
  one of them is 0: nothing overflows and the denominator is >= 1.
  """
  e = jnp.exp(v - jax.lax.stop_gradient(v.max(axis=-1, keepdims=True)))
  return e / e.sum(axis=-1, keepdims=True)


def logsumexp(v):
  """log sum_i e^{v_i} = m + log sum_i e^{v_i - m} with m = max(v): finite for finite v."""
  m = jax.lax.stop_gradient(v.max(axis=-1, keepdims=True))
  return (m + jnp.log(jnp.exp(v - m).sum(axis=-1, keepdims=True)))[..., 0]


def log_softmax(v):
  """log softmax(v)_j = v_j - logsumexp(v)."""
  return v - logsumexp(v)[..., None]


def cross_entropy(v, y):
  """L(y, p) = -sum_i e_{y,i} log p_i = -log p_y with p = softmax(v), eq. 2.62-2.63.

  Taken from log_softmax rather than log(softmax(v)): at logits like (1e4, 0) softmax rounds
  p_1 to 0 and log(0) = -inf, whereas v_1 - logsumexp(v) = -1e4 is exact.
  """
  return -(one_hot(y, v.shape[-1], v.dtype) * log_softmax(v)).sum(axis=-1)


def cross_entropy_grad(v, y):
  """dL/dv = softmax(v) - e_y for each example, by hand.

  dL/dv_j = d/dv_j (logsumexp(v) - v_y) = e^{v_j} / sum_i e^{v_i} - delta_{jy}.
  """
  return softmax(v) - one_hot(y, v.shape[-1], v.dtype)
