"""The building blocks of the geometric-deep-learning blueprint (section 4.4, eq. 4.1) on a
grid, a set and a graph:

    f = A o sigma o B_n o P_n o ... o sigma o P_1 o B_1, then a dense head on the invariant A(x)

- B, linear equivariant layer: a convolution with circular padding on the grid (exactly
  translation-equivariant on the torus, section 4.3); on a set the DeepSets layer
  x -> x Lambda + 1 1^T x Gamma / n (Zaheer et al. 2017), the most general permutation-equivariant
  linear map of the rows; on a graph A X W + X V, the neighbours' sum plus a self term.
- sigma, element-wise nonlinearity: `nn.relu` (equivariant to any relabeling of the domain).
- P, local pooling: 2x2 max pooling with stride 2 on the grid (equivariant to shifts by
  multiples of 2; the coarser grid is Omega').
- A, invariant global pooling: sum, mean or max over the domain.

The networks composed of them are models: `dl_jax.models.blueprint`. Layers keep their
parameters in `param_dtype` (float32) and compute in `dtype` (None: from inputs and parameters,
flax's rule).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.nn.conv import Conv
from dl_jax.nn.pool import max_pool

POOLS = ("sum", "mean", "max")


def global_pool(x: jax.Array, kind: str, axes: Sequence[int]) -> jax.Array:
  """Invariant global pooling A (section 4.4): sum, mean or max over the domain's `axes`.

  Sums and means of low-precision values (bfloat16) accumulate in float32; the result keeps
  the dtype of `x`."""
  if kind not in POOLS:
    raise ValueError(f"unknown global pooling {kind!r}; accepted: {', '.join(POOLS)}")
  if kind == "max":
    return jnp.max(x, axis=tuple(axes))
  fn = jnp.sum if kind == "sum" else jnp.mean
  return fn(x.astype(jnp.promote_types(x.dtype, jnp.float32)), axis=tuple(axes)).astype(x.dtype)


def circular_pad(x: jax.Array, kernel_size: int) -> jax.Array:
  """Pads H and W of NHWC `x` periodically, so a 'VALID' convolution keeps the size (stride 1)."""
  lo, hi = (kernel_size - 1) // 2, kernel_size // 2
  return jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)), mode="wrap")


class CircularConv(nn.Module):
  """Convolution on the torus: circular padding, then `dl_jax.nn.conv.Conv` with 'VALID'.

  f(roll(x, s)) = roll(f(x), s / strides) exactly, for shifts s that are multiples of
  `strides` (when H and W are too).
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return Conv(self.features, self.kernel_size, self.strides, padding="VALID",
                use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype)(
                    circular_pad(x, self.kernel_size))


class DeepSetsLinear(nn.Module):
  """Permutation-equivariant linear layer on sets [N, n, F]: x Lambda + 1 1^T x Gamma / n + b."""
  features: int
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dense = lambda name, **kw: nn.Dense(self.features, dtype=self.dtype,
                                        param_dtype=self.param_dtype, name=name, **kw)
    own = dense("Lambda")(x)
    pooled = dense("Gamma", use_bias=False)(global_pool(x, "mean", (-2,))[..., None, :])
    return own + pooled


def neighbour_sum(graph: dict) -> jax.Array:
  """A X for a graph dict: "nodes" X [N, n, F] and either "adjacency" A [N, n, n] or edge lists
  "senders", "receivers" [N, E] (edge j -> i adds X_j to node i; multi-edges count)."""
  x = graph["nodes"]
  if "adjacency" in graph:
    return jnp.einsum("bij,bjf->bif", graph["adjacency"].astype(x.dtype), x)
  n = x.shape[-2]
  return jax.vmap(lambda x, s, r: jax.ops.segment_sum(x[s], r, num_segments=n))(
      x, graph["senders"], graph["receivers"])


class GraphLinear(nn.Module):
  """Permutation-equivariant linear layer on a graph: X -> A X W + X V + b (nodes updated,
  the structure passed on)."""
  features: int
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, graph: dict) -> dict:
    dense = lambda name, **kw: nn.Dense(self.features, dtype=self.dtype,
                                        param_dtype=self.param_dtype, name=name, **kw)
    neighbours = dense("W", use_bias=False)(neighbour_sum(graph))
    return {**graph, "nodes": neighbours + dense("V")(graph["nodes"])}


class PoolStack(nn.Module):
  """(B o sigma o P) repeated on the grid: circular conv, ReLU, 2x2 max pool per width.

  Equivariant to circular shifts by multiples of `total_stride` = 2^len(features)."""
  features: Sequence[int] = (8, 16)
  kernel_size: int = 3
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @property
  def total_stride(self) -> int:
    return 2 ** len(self.features)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for width in self.features:
      x = nn.relu(CircularConv(width, self.kernel_size, dtype=self.dtype,
                               param_dtype=self.param_dtype)(x))
      x = max_pool(x, (2, 2), (2, 2))
    return x
