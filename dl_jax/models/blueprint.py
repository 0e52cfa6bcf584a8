"""The geometric-deep-learning blueprint (section 4.4, eq. 4.1) as whole networks:

    f = A o sigma o B_n o P_n o ... o sigma o P_1 o B_1, then a dense head on the invariant A(x)

on the grid (`GridInvariantNet`), a set (`SetInvariantNet`) and a graph (`GraphInvariantNet`),
composed of the layers of `dl_jax.symmetry.blueprint`. The grid and set networks are registered
with their symmetries; the graph one takes graph dicts (dense adjacency or edge lists, the
inputs of the symmetry checker) and is tested through `dl_jax.symmetry.layers`.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.symmetry import blueprint as bp
from dl_jax.symmetry import vocabulary as sym


def _dense(features: int, dtype, **kwargs) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, **kwargs)


class GridInvariantNet(nn.Module):
  """Eq. 4.1 on the grid: `PoolStack`, global pooling A over H, W, dense head.

  Invariant to circular shifts by multiples of the total stride 2^len(features) (the local
  pools only commute with those).
  """
  features: Sequence[int] = (8, 16)
  kernel_size: int = 3
  pool: str = "mean"
  num_classes: int = 10
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32

  @property
  def symmetry_params(self) -> dict:
    return {"stride": 2 ** len(self.features)}

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = bp.PoolStack(self.features, self.kernel_size, dtype=self.dtype)(x)
    return _dense(self.num_classes, self.dtype)(bp.global_pool(x, self.pool, (1, 2)))


class SetInvariantNet(nn.Module):
  """Eq. 4.1 on a set [N, n, F]: DeepSets layers with ReLU, global pooling over the n elements,
  then a dense head (a function of the pooled, invariant features only)."""
  features: Sequence[int] = (32, 32)
  pool: str = "sum"
  head: int = 32
  num_classes: int = 10
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    for width in self.features:
      x = nn.relu(bp.DeepSetsLinear(width, dtype=self.dtype)(x))
    x = nn.relu(_dense(self.head, self.dtype)(bp.global_pool(x, self.pool, (-2,))))
    return _dense(self.num_classes, self.dtype)(x)


class GraphInvariantNet(nn.Module):
  """Eq. 4.1 on a graph (figure 4.14): `GraphLinear` layers with ReLU, global pooling over the
  nodes, dense head. Takes a graph dict (see `dl_jax.symmetry.blueprint.neighbour_sum`)."""
  features: Sequence[int] = (16, 16)
  pool: str = "sum"
  num_classes: int = 2
  dtype: Any = None

  @nn.compact
  def __call__(self, graph: dict, train: bool = False) -> jax.Array:
    del train
    for width in self.features:
      graph = bp.GraphLinear(width, dtype=self.dtype)(graph)
      graph = {**graph, "nodes": nn.relu(graph["nodes"])}
    return _dense(self.num_classes, self.dtype)(bp.global_pool(graph["nodes"], self.pool, (-2,)))


SPECS = (
    ModelSpec(
        name="blueprint_grid",
        family="image",
        factory=GridInvariantNet,
        defaults={"features": (8, 16), "kernel_size": 3, "pool": "mean", "num_classes": 10,
                  "dtype": "float32"},
        param_count=(9 * 1 * 8 + 8) + (9 * 8 * 16 + 16) + (16 * 10 + 10),
        symmetries=(sym.TRANSLATION_CIRCULAR_INVARIANT,),
        description="Blueprint eq. 4.1 on the grid: circular conv, ReLU, max pool (x2), mean, "
                    "dense",
    ),
    ModelSpec(
        name="blueprint_set",
        family="set",
        factory=SetInvariantNet,
        defaults={"features": (32, 32), "pool": "sum", "head": 32, "num_classes": 10,
                  "dtype": "float32"},
        param_count=(3 * 32 + 32 + 3 * 32) + (32 * 32 + 32 + 32 * 32) + (32 * 32 + 32)
        + (32 * 10 + 10),
        symmetries=(sym.PERMUTATION_INVARIANT,),
        description="Blueprint eq. 4.1 on a set of 16 points in 3-D: DeepSets x2, sum, dense x2",
    ),
)
