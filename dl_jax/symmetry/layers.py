"""Registry of layers and small modules with the symmetries they declare.

The model registry (`dl_jax.models.registry`) holds whole models; this one holds
the building blocks of section 4.4 (convolutions with each padding, pooling stacks, DeepSets
and graph layers, p4 layers) and the message-passing layers of chapter 6 (`dl_jax.graph`, run
on graph dicts through `OnGraphsTuple`) with an example input each. `tests/test_symmetry.py`
checks every declared symmetry of every entry of both registries, so adding an entry adds its
tests.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from dl_jax.graph import layers as graph_layers
from dl_jax.graph import message_passing as mp
from dl_jax.models import blueprint as blueprint_models
from dl_jax.models import gnn
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


def typed_graph(batch: int, nodes: int, features: int, edges: int, num_types: int):
  """`random_graph` with edge lists and an int edge type in [0, num_types) per edge ("edges")."""
  base = random_graph(batch, nodes, features, edges)

  def make(key):
    k_graph, k_type = jax.random.split(key)
    return {**base(k_graph), "edges": jax.random.randint(k_type, (batch, edges), 0, num_types)}
  return make


class OnGraphsTuple(nn.Module):
  """Runs a `dl_jax.graph` module (it takes a jraph.GraphsTuple) on a batch of graph dicts:
  "nodes" [B, n, F], "senders"/"receivers" [B, E] and optional "edges" [B, E, ...] become one
  GraphsTuple of B graphs; output nodes come back as [B, n, F'] (per-graph arrays as they are).
  The node permutation of the dict (`groups.permute_graph`) is then a permutation within each
  of the B graphs."""
  layer: nn.Module

  def __call__(self, graph: dict):
    x = graph["nodes"]
    b, n = x.shape[:2]
    e = graph["senders"].shape[1]
    offset = (jnp.arange(b, dtype=graph["senders"].dtype) * n)[:, None]
    edges = graph.get("edges")
    batched = jraph.GraphsTuple(
        nodes=x.reshape(b * n, *x.shape[2:]),
        edges=None if edges is None else edges.reshape(b * e, *edges.shape[2:]),
        senders=(graph["senders"] + offset).reshape(-1),
        receivers=(graph["receivers"] + offset).reshape(-1),
        n_node=jnp.full((b,), n, jnp.int32), n_edge=jnp.full((b,), e, jnp.int32), globals=None)
    out = self.layer(batched)
    if isinstance(out, jraph.GraphsTuple):
      return out.nodes.reshape(b, n, *out.nodes.shape[1:])
    return out


def _gnn(name: str, build: Callable[[], nn.Module], symmetry: str, description: str,
         make_input=None) -> LayerSpec:
  return LayerSpec(name, lambda: OnGraphsTuple(build()),
                   make_input or random_graph(2, 10, 4, edges=25), (symmetry,),
                   description=description)


_GNN_SPECS = (
    _gnn("gnn_gcn", lambda: graph_layers.GCN(8), sym.PERMUTATION_EQUIVARIANT,
         "GCN, D^-1/2 (A + I) D^-1/2 X W (section 6.5.4)"),
    _gnn("gnn_gat", lambda: graph_layers.GAT(4, num_heads=2), sym.PERMUTATION_EQUIVARIANT,
         "GAT, 2 heads concatenated (section 6.5.3)"),
    _gnn("gnn_sage_mean", lambda: graph_layers.GraphSAGE(8, "mean"),
         sym.PERMUTATION_EQUIVARIANT, "GraphSAGE, mean aggregator (section 6.5.1)"),
    _gnn("gnn_sage_maxpool", lambda: graph_layers.GraphSAGE(8, "maxpool"),
         sym.PERMUTATION_EQUIVARIANT, "GraphSAGE, max-pool aggregator (section 6.5.1)"),
    _gnn("gnn_ggnn_edge_types", lambda: graph_layers.GatedGNN(8, 2, num_edge_types=3),
         sym.PERMUTATION_EQUIVARIANT, "Gated GNN, 2 GRU steps, 3 edge types (section 6.5.2)",
         typed_graph(2, 10, 4, 25, 3)),
    _gnn("gnn_gin", lambda: graph_layers.GIN(8), sym.PERMUTATION_EQUIVARIANT,
         "GIN, MLP((1 + eps) x_i + sum_j x_j)"),
    _gnn("gnn_deepsets_equivariant", lambda: graph_layers.DeepSetsEquivariant(8),
         sym.PERMUTATION_EQUIVARIANT, "DeepSets layer, each graph a set of nodes"),
    _gnn("gnn_deepsets_invariant", lambda: graph_layers.DeepSetsInvariant(3, (8,)),
         sym.PERMUTATION_INVARIANT, "rho(sum_i phi(x_i)) per graph"),
    _gnn("gnn_readout_sum", lambda: Fn(lambda g: mp.graph_readout(g, "sum")),
         sym.PERMUTATION_INVARIANT, "graph read-out: sum over each graph's nodes"),
    _gnn("gnn_graph_gin", lambda: gnn.GraphClassifier("gin", num_classes=3, hidden=8,
                                                      num_layers=2),
         sym.PERMUTATION_INVARIANT, "graph classifier 'graph_gin' (GIN, sum read-out, MLP)"),
)

_GRID = (sym.TRANSLATION_CIRCULAR_EQUIVARIANT,)
_P4_MAP = {"group_axis": 3, "out_group_axis": 3}

LAYERS: dict[str, LayerSpec] = {s.name: s for s in (
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
    LayerSpec("blueprint_graph_adjacency", blueprint_models.GraphInvariantNet,
              random_graph(2, 10, 4),
              (sym.PERMUTATION_INVARIANT,), description="eq. 4.1 on a graph"),
    LayerSpec("blueprint_graph_edges", blueprint_models.GraphInvariantNet,
              random_graph(2, 10, 4, edges=25),
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
    *_GNN_SPECS,
)}


def names() -> list[str]:
  return sorted(LAYERS)


def get(name: str) -> LayerSpec:
  return LAYERS[name]
