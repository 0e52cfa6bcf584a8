"""Pooling layers written out by hand (section 5.2.7, eq. 5.17-5.20), N-d windows with strides.

`pool(x, window, strides, kind)` with kind 'max', 'min' or 'avg' pools every window of a
channels-last (B, *spatial, C) or channels-first (B, C, *spatial) input ('valid' windows only).
Like `dl_jax.from_scratch.conv`, it loops over the window offsets, never over output positions:
each offset contributes one strided slice of the input.

The derivatives are written by hand (`jax.custom_vjp`):
- max, eq. 5.18: da/dx_i = 1 if x_i = max(x), else 0. Where the maximum is attained at several
  indices (a tie), footnote 6 of the notes: a has only one-sided derivatives there (1 from the
  right, 0 from the left, for each tied index). The backward pass then gives the whole output
  gradient to the first tied index in the window (row-major order), the convention of
  `jax.grad` of `lax.reduce_window` and of PyTorch: it is the one-sided derivative of moving that
  index alone, and the gradient still sums to the output gradient over the window.
- min: the same with the minimum.
- avg, eq. 5.20: da/dx_i = 1/m for each of the m window entries.
Overlapping windows (stride < window) add their contributions.
"""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

from dl_jax.errors import require
from dl_jax.from_scratch.conv import int_tuple

Array = jax.Array
KINDS = ("max", "min", "avg")


def _views(x: Array, window: tuple[int, ...], strides: tuple[int, ...]):
  """The m = prod(window) strided slices of channels-last `x`, one per window offset."""
  out = tuple((size - w) // s + 1 for size, w, s in zip(x.shape[1:-1], window, strides))
  require(all(o >= 1 for o in out), f"window {window} is larger than the input {x.shape[1:-1]}")
  views = []
  for offset in itertools.product(*map(range, window)):
    index = (slice(None), *(slice(o, o + (n - 1) * s + 1, s)
                            for o, n, s in zip(offset, out, strides)), slice(None))
    views.append((index, x[index]))
  return views


def _reduce(x, window, strides, kind):
  values = jnp.stack([v for _, v in _views(x, window, strides)])
  if kind == "max":
    return values.max(0)
  if kind == "min":
    return values.min(0)
  return values.mean(0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _pool(x: Array, window, strides, kind) -> Array:
  return _reduce(x, window, strides, kind)


def _pool_fwd(x, window, strides, kind):
  return _reduce(x, window, strides, kind), x


def _pool_bwd(window, strides, kind, x, g):
  views = _views(x, window, strides)
  dx = jnp.zeros_like(x)
  if kind == "avg":  # eq. 5.20
    m = math.prod(window)
    for index, _ in views:
      dx = dx.at[index].add(g / m)
    return (dx,)
  values = jnp.stack([v for _, v in views])
  best = values.max(0) if kind == "max" else values.min(0)
  # Eq. 5.18, with a tie given to the first extreme index of the window (footnote 6).
  first = jnp.argmax(values == best, axis=0)
  for t, (index, _) in enumerate(views):
    dx = dx.at[index].add(jnp.where(first == t, g, 0).astype(x.dtype))
  return (dx,)


_pool.defvjp(_pool_fwd, _pool_bwd)


def pool(x: Array, window, strides=None, kind: str = "max", *, channels: str = "last") -> Array:
  """Max, minimum or average pooling over N-d windows ('valid': only whole windows).

  Args:
    x: (B, *spatial, C) for channels='last', (B, C, *spatial) for channels='first'.
    window: the window size, an int or one per spatial axis.
    strides: an int or one per spatial axis; None: the window size (non-overlapping windows).
    kind: 'max' (eq. 5.17), 'min' or 'avg' (eq. 5.19).
    channels: 'last' or 'first'; the output uses the same convention.
  """
  require(kind in KINDS, f"unknown pooling {kind!r}; accepted: {', '.join(map(repr, KINDS))}")
  require(channels in ("last", "first"), f"channels must be 'last' or 'first', got {channels!r}")
  n = x.ndim - 2
  require(n >= 1, f"expected (batch, *spatial, channels), got shape {x.shape}")
  window = int_tuple(window, n, "window")
  strides = window if strides is None else int_tuple(strides, n, "strides")
  if channels == "first":
    x = jnp.moveaxis(x, 1, -1)
  y = _pool(x, window, strides, kind)
  return jnp.moveaxis(y, -1, 1) if channels == "first" else y


def reference_pool(x: Array, window, strides=None, kind: str = "max") -> Array:
  """`lax.reduce_window` pooling of channels-last `x` (differentiated by JAX), for comparison."""
  n = x.ndim - 2
  window = int_tuple(window, n, "window")
  strides = window if strides is None else int_tuple(strides, n, "strides")
  dims, steps = (1, *window, 1), (1, *strides, 1)
  if kind == "max":
    return lax.reduce_window(x, -jnp.inf, lax.max, dims, steps, "VALID")
  if kind == "min":
    return lax.reduce_window(x, jnp.inf, lax.min, dims, steps, "VALID")
  return lax.reduce_window(x, 0.0, lax.add, dims, steps, "VALID") / math.prod(window)
