"""Registry of layers and small modules with the symmetries they declare.

The model registry (`dl_jax.models.registry`) holds whole models on 28x28 digits; this one holds
the building blocks of section 4.4 (convolutions with each padding, pooling stacks, DeepSets
and graph layers, p4 layers) with an example input each. `tests/test_symmetry.py` checks every
declared symmetry of every entry of both registries, so adding an entry adds its tests.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.nn import group_conv as gc
from dl_jax.nn.conv import Conv
from dl_jax.nn.pool import max_pool
from dl_jax.symmetry import blueprint as bp
from dl_jax.symmetry import groups
from dl_jax.symmetry import vocabulary as sym


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """A module, how to make an example input for it, and the symmetries it declares."""
  name: str
  build: Callable[[], nn.Module]
  make_input: Callable[[jax.Array], Any]  # key -> a batched example input (pytree)
  symmetries: tuple[str, ...]
  params: dict = dataclasses.field(default_factory=dict)  # `vocabulary.SymmetryParams` fields
  description: str = ""


class Fn(nn.Module):
  """A parameter-free map as a module."""
  fn: Callable

  def __call__(self, x):
    return self.fn(x)


class GroupAveraged(nn.Module):
  """`groups.group_average` of a module: x -> mean over the finite group of base(g.x)."""
  base: nn.Module
  action: groups.GroupAction

  def __call__(self, x, train: bool = False):
    return groups.group_average(lambda x: self.base(x, train=train), self.action)(x)


class SmallCNN(nn.Module):
  """conv 3x3 (4 filters), ReLU, 2x2 max pool, dense 3: no symmetry but translations."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    x = max_pool(nn.relu(Conv(4, 3, padding="VALID")(x)), (2, 2), (2, 2))
    return nn.Dense(3)(x.reshape(x.shape[0], -1))


def normal(*shape: int) -> Callable[[jax.Array], jax.Array]:
  return lambda key: jax.random.normal(key, shape)


def random_graph(batch: int, nodes: int, features: int, edges: int | None = None):
  """A graph dict: normal "nodes" [batch, nodes, features] and a random symmetric 0/1
  "adjacency" without self-loops, or `edges` random directed "senders"/"receivers"."""
  def make(key):
    k_x, k_a = jax.random.split(key)
    graph = {"nodes": jax.random.normal(k_x, (batch, nodes, features))}
    if edges is None:
      upper = jnp.triu(jax.random.bernoulli(k_a, 0.3, (batch, nodes, nodes)), 1)
      graph["adjacency"] = (upper | jnp.swapaxes(upper, 1, 2)).astype(jnp.int32)
    else:
      ends = jax.random.randint(k_a, (2, batch, edges), 0, nodes)
      graph["senders"], graph["receivers"] = ends[0], ends[1]
    return graph
  return make


_GRID = (sym.TRANSLATION_CIRCULAR_EQUIVARIANT,)
_P4_MAP = {"group_axis": 3, "out_group_axis": 3}

_REGISTRY: dict[str, LayerSpec] = {s.name: s for s in (
    LayerSpec("circular_conv", lambda: bp.CircularConv(8, 3), normal(2, 12, 12, 3), _GRID,
              description="3x3 convolution with circular padding"),
    LayerSpec("circular_conv_stride2", lambda: bp.CircularConv(8, 3, strides=2),
              normal(2, 12, 12, 3), _GRID, {"stride": 2},
              description="stride 2: shifts by multiples of 2, output shifted by half"),
    LayerSpec("conv_same_zero_padding", lambda: Conv(8, 3, padding="SAME"),
              normal(2, 16, 16, 3), (sym.TRANSLATION_INTERIOR_EQUIVARIANT,), {"radius": 1},
              description="zero padding: exact away from the border (radius 1)"),
    LayerSpec("conv_valid_5x5", lambda: Conv(6, 5, padding="VALID"), normal(2, 16, 16, 1),
              (sym.TRANSLATION_INTERIOR_EQUIVARIANT,), {"radius": 0},
              description="valid padding: only the shift's own border is lost"),
    LayerSpec("max_pool_2x2", lambda: Fn(lambda x: max_pool(x, (2, 2), (2, 2))),
              normal(2, 12, 12, 3), (*_GRID, sym.ROTATION_P4_EQUIVARIANT), {"stride": 2},
              description="2x2 max pool, stride 2 (eq. 5.17), on an even grid"),
    LayerSpec("relu", lambda: Fn(nn.relu), normal(2, 8, 8, 3),
              (*_GRID, sym.ROTATION_P4_EQUIVARIANT, sym.PERMUTATION_EQUIVARIANT),
              description="element-wise nonlinearity: commutes with any relabeling"),
    LayerSpec("pool_stack", lambda: bp.PoolStack((8, 16)), normal(2, 16, 16, 3), _GRID,
              {"stride": 4}, description="(circular conv, ReLU, 2x2 max pool) x 2"),
    *(LayerSpec(f"global_{kind}_pool_grid",
                lambda kind=kind: Fn(lambda x: bp.global_pool(x, kind, (1, 2))),
                normal(2, 8, 8, 3),
                (sym.TRANSLATION_CIRCULAR_INVARIANT, sym.ROTATION_P4_INVARIANT,
                 sym.ROTATION_REFLECTION_P4M_INVARIANT),
                description=f"global {kind} pooling over the grid")
      for kind in bp.POOLS),
    *(LayerSpec(f"global_{kind}_pool_set",
                lambda kind=kind: Fn(lambda x: bp.global_pool(x, kind, (1,))),
                normal(2, 64, 5), (sym.PERMUTATION_INVARIANT,),
                description=f"global {kind} pooling over a set of 64")
      for kind in bp.POOLS),
    LayerSpec("deepsets_linear", lambda: bp.DeepSetsLinear(8), normal(2, 16, 5),
              (sym.PERMUTATION_EQUIVARIANT,), description="x Lambda + 1 1^T x Gamma / n"),
    LayerSpec("graph_linear_adjacency", lambda: bp.GraphLinear(8), random_graph(2, 10, 4),
              (sym.PERMUTATION_EQUIVARIANT,), description="A X W + X V, dense adjacency"),
    LayerSpec("graph_linear_edges", lambda: bp.GraphLinear(8), random_graph(2, 10, 4, edges=25),
              (sym.PERMUTATION_EQUIVARIANT,), description="A X W + X V, edge lists"),
    LayerSpec("blueprint_graph_adjacency", bp.GraphInvariantNet, random_graph(2, 10, 4),
              (sym.PERMUTATION_INVARIANT,), description="eq. 4.1 on a graph"),
    LayerSpec("blueprint_graph_edges", bp.GraphInvariantNet, random_graph(2, 10, 4, edges=25),
              (sym.PERMUTATION_INVARIANT,), description="eq. 4.1 on a graph (edge lists)"),
    LayerSpec("p4_lifting_circular", lambda: gc.P4Lifting(4, 3, "CIRCULAR"),
              normal(2, 12, 12, 3), (*_GRID, sym.ROTATION_P4_EQUIVARIANT),
              {"out_group_axis": 3}, description="Z2 -> p4, circular padding"),
    LayerSpec("p4_lifting_valid", lambda: gc.P4Lifting(4, 5, "VALID"), normal(2, 14, 14, 1),
              (sym.ROTATION_P4_EQUIVARIANT,), {"out_group_axis": 3},
              description="Z2 -> p4, 5x5 valid"),
    LayerSpec("p4_group_conv_circular", lambda: gc.P4GroupConv(5, 3, "CIRCULAR"),
              normal(2, 10, 10, 4, 3), (*_GRID, sym.ROTATION_P4_EQUIVARIANT), _P4_MAP,
              description="p4 -> p4, circular padding"),
    LayerSpec("p4_group_conv_same", lambda: gc.P4GroupConv(5, 3, "SAME"),
              normal(2, 12, 12, 4, 3),
              (sym.ROTATION_P4_EQUIVARIANT, sym.TRANSLATION_INTERIOR_EQUIVARIANT),
              {**_P4_MAP, "radius": 1}, description="p4 -> p4, zero padding"),
    LayerSpec("p4_max_pool", lambda: Fn(gc.p4_max_pool), normal(2, 12, 12, 4, 3),
              (*_GRID, sym.ROTATION_P4_EQUIVARIANT), {**_P4_MAP, "stride": 2},
              description="2x2 spatial max pool of a p4 map"),
    LayerSpec("rotation_pool", lambda: Fn(gc.rotation_pool), normal(2, 8, 8, 4, 3),
              (*_GRID, sym.ROTATION_P4_EQUIVARIANT), {"group_axis": 3},
              description="max over the rotation axis: p4 -> planar, equivariant"),
    LayerSpec("p4m_averaged_cnn", lambda: GroupAveraged(SmallCNN(), groups.Rotation90Flip()),
              normal(2, 12, 12, 1), (sym.ROTATION_REFLECTION_P4M_INVARIANT,),
              description="a plain CNN averaged over the 8 symmetries of the square"),
)}


def names() -> list[str]:
  return sorted(_REGISTRY)


def get(name: str) -> LayerSpec:
  return _REGISTRY[name]
