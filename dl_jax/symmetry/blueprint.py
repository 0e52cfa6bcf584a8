"""The geometric-deep-learning blueprint (section 4.4, eq. 4.1) on a grid, a set and a graph.

    f = A o sigma o B_n o P_n o ... o sigma o P_1 o B_1, then a dense head on the invariant A(x)

Building blocks, one per domain:

- B, linear equivariant layer: a convolution with circular padding on the grid (exactly
  translation-equivariant on the torus, section 4.3); on a set the DeepSets layer
  x -> x Lambda + 1 1^T x Gamma / n (Zaheer et al. 2017), the most general permutation-equivariant
  linear map of the rows; on a graph A X W + X V, the neighbours' sum plus a self term.
- sigma, element-wise nonlinearity: `nn.relu` (equivariant to any relabeling of the domain).
- P, local pooling: 2x2 max pooling with stride 2 on the grid (equivariant to shifts by
  multiples of 2; the coarser grid is Omega').
- A, invariant global pooling: sum, mean or max over the domain.

The invariant models (`GridInvariantNet`, `SetInvariantNet`, `GraphInvariantNet`) compose them;
the grid and set models are registered in `dl_jax.models.registry` with their symmetries.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models import registry
from dl_jax.nn.conv import Conv
from dl_jax.nn.pool import max_pool
from dl_jax.symmetry import vocabulary as sym

POOLS = ("sum", "mean", "max")


def global_pool(x: jax.Array, kind: str, axes: Sequence[int]) -> jax.Array:
  """Invariant global pooling A (section 4.4): sum, mean or max over the domain's `axes`."""
  if kind not in POOLS:
    raise ValueError(f"unknown global pooling {kind!r}; accepted: {', '.join(POOLS)}")
  return {"sum": jnp.sum, "mean": jnp.mean, "max": jnp.max}[kind](x, axis=tuple(axes))


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

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return Conv(self.features, self.kernel_size, self.strides, padding="VALID",
                use_bias=self.use_bias)(circular_pad(x, self.kernel_size))


class DeepSetsLinear(nn.Module):
  """Permutation-equivariant linear layer on sets [N, n, F]: x Lambda + 1 1^T x Gamma / n + b."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    own = nn.Dense(self.features, name="Lambda")(x)
    pooled = nn.Dense(self.features, use_bias=False, name="Gamma")(jnp.mean(x, axis=-2,
                                                                             keepdims=True))
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

  @nn.compact
  def __call__(self, graph: dict) -> dict:
    neighbours = nn.Dense(self.features, use_bias=False, name="W")(neighbour_sum(graph))
    return {**graph, "nodes": neighbours + nn.Dense(self.features, name="V")(graph["nodes"])}


class PoolStack(nn.Module):
  """(B o sigma o P) repeated on the grid: circular conv, ReLU, 2x2 max pool per width.

  Equivariant to circular shifts by multiples of `total_stride` = 2^len(features)."""
  features: Sequence[int] = (8, 16)
  kernel_size: int = 3

  @property
  def total_stride(self) -> int:
    return 2 ** len(self.features)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for width in self.features:
      x = nn.relu(CircularConv(width, self.kernel_size)(x))
      x = max_pool(x, (2, 2), (2, 2))
    return x


class GridInvariantNet(nn.Module):
  """Eq. 4.1 on the grid: `PoolStack`, global pooling A over H, W, dense head.

  Invariant to circular shifts by multiples of the total stride 2^len(features) (the local
  pools only commute with those).
  """
  features: Sequence[int] = (8, 16)
  kernel_size: int = 3
  pool: str = "mean"
  num_classes: int = 10

  @property
  def symmetry_params(self) -> dict:
    return {"stride": 2 ** len(self.features)}

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = PoolStack(self.features, self.kernel_size)(x)
    return nn.Dense(self.num_classes)(global_pool(x, self.pool, (1, 2)))


class SetInvariantNet(nn.Module):
  """Eq. 4.1 on a set [N, n, F]: DeepSets layers with ReLU, global pooling over the n elements,
  then a dense head (a function of the pooled, invariant features only)."""
  features: Sequence[int] = (32, 32)
  pool: str = "sum"
  head: int = 32
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    for width in self.features:
      x = nn.relu(DeepSetsLinear(width)(x))
    x = nn.relu(nn.Dense(self.head)(global_pool(x, self.pool, (-2,))))
    return nn.Dense(self.num_classes)(x)


class GraphInvariantNet(nn.Module):
  """Eq. 4.1 on a graph (figure 4.14): `GraphLinear` layers with ReLU, global pooling over the
  nodes, dense head. Takes a graph dict (see `neighbour_sum`)."""
  features: Sequence[int] = (16, 16)
  pool: str = "sum"
  num_classes: int = 2

  @nn.compact
  def __call__(self, graph: dict, train: bool = False) -> jax.Array:
    del train
    for width in self.features:
      graph = GraphLinear(width)(graph)
      graph = {**graph, "nodes": nn.relu(graph["nodes"])}
    return nn.Dense(self.num_classes)(global_pool(graph["nodes"], self.pool, (-2,)))


registry.register(registry.ModelSpec(
    name="blueprint_grid",
    factory=GridInvariantNet,
    defaults={"features": (8, 16), "kernel_size": 3, "pool": "mean", "num_classes": 10},
    input_shape=(28, 28, 1),
    num_outputs=10,
    param_count=(9 * 1 * 8 + 8) + (9 * 8 * 16 + 16) + (16 * 10 + 10),
    symmetries=(sym.TRANSLATION_CIRCULAR_INVARIANT,),
    description="Blueprint eq. 4.1 on the grid: circular conv, ReLU, max pool (x2), mean, dense",
))

registry.register(registry.ModelSpec(
    name="blueprint_set",
    factory=SetInvariantNet,
    defaults={"features": (32, 32), "pool": "sum", "head": 32, "num_classes": 10},
    input_shape=(16, 3),
    num_outputs=10,
    param_count=(3 * 32 + 32 + 3 * 32) + (32 * 32 + 32 + 32 * 32) + (32 * 32 + 32)
    + (32 * 10 + 10),
    symmetries=(sym.PERMUTATION_INVARIANT,),
    description="Blueprint eq. 4.1 on a set of 16 points in 3-D: DeepSets x2, sum, dense x2",
))
