"""jraph functions that no longer run on current JAX, rewritten with `jax.tree`.

jraph 0.0.6.dev0 still calls `jax.tree_map` / `jax.tree_leaves`, which JAX removed (0.6). On
jax 0.10.2 exactly these public functions fail with AttributeError:

- `jraph.zero_out_padding` (`jax.tree_map`),
- `jraph.with_zero_out_padding_outputs` (it calls `zero_out_padding`),
- `jraph.get_fully_connected_graph` when given `node_features` or `global_features`
  (`jax.tree_leaves`; without features it works).

Everything else this package uses from jraph (`batch`, `pad_with_graphs`, `unpad_with_graphs`,
the padding masks, `segment_softmax`, `segment_max_or_constant`) goes through
`jax.tree_util` and works. The replacements below have jraph's signatures and results.
"""

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import jraph

ArrayTree = jraph.ArrayTree
GraphsTuple = jraph.GraphsTuple

#: The jraph functions replaced here (each fails on JAX >= 0.6).
REPLACED = ("zero_out_padding", "with_zero_out_padding_outputs", "get_fully_connected_graph")


def _zero_where_padding(mask: jax.Array) -> Callable[[jax.Array], jax.Array]:
  def zero(x):
    m = mask.reshape(mask.shape + (1,) * (x.ndim - 1))
    return jnp.where(m, x, jnp.zeros_like(x))
  return zero


def zero_out_padding(graph: GraphsTuple) -> GraphsTuple:
  """Zeroes the padding nodes, edges and graphs of a graph padded by `jraph.pad_with_graphs`.

  The padding is what `jraph.get_{node,edge,graph}_padding_mask` call padding: the last graph
  and its nodes and edges. Only for padded graphs: on an unpadded batch it zeroes the last graph.
  """
  return graph._replace(
      nodes=jax.tree.map(_zero_where_padding(jraph.get_node_padding_mask(graph)), graph.nodes),
      edges=jax.tree.map(_zero_where_padding(jraph.get_edge_padding_mask(graph)), graph.edges),
      globals=jax.tree.map(_zero_where_padding(jraph.get_graph_padding_mask(graph)),
                           graph.globals))


def with_zero_out_padding_outputs(
    graph_net: Callable[[GraphsTuple], GraphsTuple]) -> Callable[[GraphsTuple], GraphsTuple]:
  """Wraps a graph -> graph function so that its output's padding is zeroed."""

  @functools.wraps(graph_net)
  def wrapper(graph: GraphsTuple) -> GraphsTuple:
    return zero_out_padding(graph_net(graph))

  return wrapper


def get_fully_connected_graph(n_node_per_graph: int, n_graph: int,
                              node_features: Optional[ArrayTree] = None,
                              global_features: Optional[ArrayTree] = None,
                              add_self_edges: bool = True) -> GraphsTuple:
  """`n_graph` complete graphs of `n_node_per_graph` nodes each (jittable), with features.

  Raises:
    ValueError: as jraph does, if the features do not have n_graph * n_node_per_graph nodes
      or n_graph globals.
  """
  if node_features is not None:
    if jax.tree.leaves(node_features)[0].shape[0] != n_node_per_graph * n_graph:
      raise ValueError("Number of nodes is not equal to num_nodes_per_graph * n_graph.")
  if global_features is not None:
    if jax.tree.leaves(global_features)[0].shape[0] != n_graph:
      raise ValueError("The number of globals is not equal to n_graph.")
  graph = jraph.get_fully_connected_graph(n_node_per_graph, n_graph,
                                          add_self_edges=add_self_edges)
  return graph._replace(nodes=node_features, globals=global_features)
