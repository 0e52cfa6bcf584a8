"""Graphs as `jraph.GraphsTuple` (section 6.1): builders, self-loops, padding to size buckets,
padding masks and a deterministic batch iterator.

Conventions used throughout `dl_jax.graph`:

- An edge j -> i has sender j and receiver i; messages flow from sender to receiver, so node i
  aggregates over its incoming edges, N(i) = {j : j -> i} (eq. 6.3).
- The adjacency matrix A of section 6.1 is stored with A[i, j] != 0 for an edge j -> i (row =
  receiver), so that A X sums each node's neighbours, as in `dl_jax.symmetry.blueprint`. For an
  undirected graph A is symmetric and the distinction disappears.
- A batch of graphs is one GraphsTuple with the graphs' nodes and edges concatenated in graph
  order (`jraph.batch`); padded batches (`pad_to_buckets`) end with one or more padding graphs
  that hold all padding nodes and edges (`jraph.pad_with_graphs`), which the masks below mark.

Builders run on the host with numpy (data preparation); `add_self_loops`, the masks and
`masked_mean` are jittable.
"""

import math
from typing import Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from dl_jax.errors import ConfigError, DataError

GraphsTuple = jraph.GraphsTuple


def _as_index(x, name: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 1 or (x.size and not np.issubdtype(x.dtype, np.integer)):
    raise DataError(f"{name} must be a 1-D integer array, got shape {x.shape} dtype {x.dtype}")
  return x.astype(np.int32)


def from_edge_list(senders, receivers, num_nodes: int, nodes=None, edges=None, *,
                   symmetrize: bool = False, globals_=None) -> GraphsTuple:
  """A single graph from an edge list (edge k: senders[k] -> receivers[k]).

  Args:
    senders, receivers: int arrays [E], node ids in [0, num_nodes).
    num_nodes: n.
    nodes: node features [n, ...] (or a pytree of them), or None.
    edges: edge features [E, ...], or None.
    symmetrize: also add j -> i for every i -> j, then drop duplicate (sender, receiver) pairs,
      keeping the first occurrence (its features); the edges come out sorted by (receiver,
      sender). Without it the edges are kept as given, duplicates included.
    globals_: graph features [1, ...], or None.

  Raises:
    DataError: if an id is out of range or the arrays do not match.
  """
  senders, receivers = _as_index(senders, "senders"), _as_index(receivers, "receivers")
  if senders.shape != receivers.shape:
    raise DataError(f"senders and receivers differ in length: {senders.size} != "
                    f"{receivers.size}")
  ends = np.concatenate([senders, receivers])
  if ends.size and (ends.min() < 0 or ends.max() >= num_nodes):
    raise DataError(f"node ids must be in [0, {num_nodes}), got ids from {ends.min()} to "
                    f"{ends.max()}")
  if nodes is not None and jax.tree.leaves(nodes)[0].shape[0] != num_nodes:
    raise DataError(f"nodes has {jax.tree.leaves(nodes)[0].shape[0]} rows, expected "
                    f"num_nodes={num_nodes}")
  if edges is not None and np.shape(edges)[0] != senders.size:
    raise DataError(f"edges has {np.shape(edges)[0]} rows, expected one per edge "
                    f"({senders.size})")
  if symmetrize:
    senders, receivers = np.concatenate([senders, receivers]), np.concatenate([receivers,
                                                                               senders])
    if edges is not None:
      edges = np.concatenate([edges, edges])
    keys = receivers.astype(np.int64) * num_nodes + senders
    _, first = np.unique(keys, return_index=True)  # sorted by (receiver, sender)
    senders, receivers = senders[first], receivers[first]
    edges = None if edges is None else np.asarray(edges)[first]
  return GraphsTuple(nodes=nodes, edges=edges, senders=senders, receivers=receivers,
                     n_node=np.array([num_nodes], np.int32),
                     n_edge=np.array([senders.size], np.int32), globals=globals_)


def from_adjacency(adjacency, nodes=None, *, weights_as_edges: bool = False,
                   globals_=None) -> GraphsTuple:
  """A single graph from section 6.1's (X, A): an edge j -> i for every A[i, j] != 0.

  Edges come out sorted by (receiver, sender); with `weights_as_edges` the entries A[i, j] are
  the edge features [E] (edge weights e_ji as in section 6.5.2), otherwise `edges` is None.
  """
  a = np.asarray(adjacency)
  if a.ndim != 2 or a.shape[0] != a.shape[1]:
    raise DataError(f"adjacency must be a square matrix, got shape {a.shape}")
  receivers, senders = np.nonzero(a)
  edges = a[receivers, senders] if weights_as_edges else None
  return from_edge_list(senders, receivers, a.shape[0], nodes, edges, globals_=globals_)


def to_adjacency(graph: GraphsTuple, num_nodes: int | None = None,
                 weights: bool = False) -> np.ndarray:
  """The dense A [n, n] of a graph (n = all nodes of a batch): A[i, j] = number of edges j -> i,
  or the sum of their scalar edge features if `weights`."""
  n = int(np.sum(graph.n_node)) if num_nodes is None else num_nodes
  senders, receivers = np.asarray(graph.senders), np.asarray(graph.receivers)
  values = np.asarray(graph.edges).reshape(-1) if weights else np.ones(senders.size)
  a = np.zeros((n, n), values.dtype if weights else np.int64)
  np.add.at(a, (receivers, senders), values)
  return a


def node_graph_index(graph: GraphsTuple) -> jax.Array:
  """The graph each node belongs to, int32 [total nodes] (jittable: uses the static shapes)."""
  total = jax.tree.leaves(graph.nodes)[0].shape[0]
  n_graph = graph.n_node.shape[0]
  return jnp.repeat(jnp.arange(n_graph, dtype=jnp.int32), graph.n_node,
                    total_repeat_length=total)


def edge_graph_index(graph: GraphsTuple) -> jax.Array:
  """The graph each edge belongs to, int32 [total edges] (jittable)."""
  n_graph = graph.n_edge.shape[0]
  return jnp.repeat(jnp.arange(n_graph, dtype=jnp.int32), graph.n_edge,
                    total_repeat_length=graph.senders.shape[0])


def add_self_loops(graph: GraphsTuple, edge_fill: float = 0.0) -> GraphsTuple:
  """Adds an edge i -> i for every node (A -> A + I), keeping each graph's edges contiguous.

  Existing self-loops are kept (they then count twice). New edges get features `edge_fill`
  (same trailing shape and dtype as the existing edge features). Jittable: the new edge count
  is E + total nodes. Padding nodes get loops too; they stay in the padding graph.
  """
  total = jax.tree.leaves(graph.nodes)[0].shape[0]
  loops = jnp.arange(total, dtype=graph.senders.dtype)
  graph_of = jnp.concatenate([edge_graph_index(graph), node_graph_index(graph)])
  order = jnp.argsort(graph_of, stable=True)
  senders = jnp.concatenate([graph.senders, loops])[order]
  receivers = jnp.concatenate([graph.receivers, loops])[order]
  edges = jax.tree.map(
      lambda e: jnp.concatenate([e, jnp.full((total,) + e.shape[1:], edge_fill, e.dtype)])[order],
      graph.edges)
  return graph._replace(senders=senders, receivers=receivers, edges=edges,
                        n_edge=graph.n_edge + graph.n_node)


# ---------------------------------------------------------------------------------------------
# Padding to size buckets.

def bucket_size(n: int, growth: float = 2.0, minimum: int = 8) -> int:
  """The smallest rung ceil(minimum * growth^k) >= n of a geometric ladder (k = 0, 1, ...).

  growth=2 with a power-of-two minimum gives the next power of two. Few rungs mean few
  compilations; each padded batch wastes at most a factor `growth` of compute.
  """
  if growth <= 1 or minimum < 1:
    raise ConfigError(f"bucket ladder needs growth > 1 and minimum >= 1, got growth={growth}, "
                      f"minimum={minimum}")
  size = minimum
  k = 0
  while size < n:
    k += 1
    size = math.ceil(minimum * growth ** k)
  return size


def bucket_shape(num_nodes: int, num_edges: int, num_graphs: int, growth: float = 2.0,
                 minimum: int = 8) -> tuple[int, int, int]:
  """(nodes, edges, graphs) to pad a batch to: its rung on the ladder, with room for the
  padding graph (jraph.pad_with_graphs needs one more node and one more graph than the batch)."""
  return (bucket_size(num_nodes + 1, growth, minimum), bucket_size(num_edges, growth, minimum),
          bucket_size(num_graphs + 1, growth, 2))


def pad_to_buckets(graph: GraphsTuple, growth: float = 2.0, minimum: int = 8) -> GraphsTuple:
  """`jraph.pad_with_graphs` to the batch's `bucket_shape` (numpy in, numpy out)."""
  n_node, n_edge, n_graph = bucket_shape(int(np.sum(graph.n_node)), int(np.sum(graph.n_edge)),
                                         len(graph.n_node), growth, minimum)
  return jraph.pad_with_graphs(graph, n_node, n_edge, n_graph)


def node_mask(graph: GraphsTuple) -> jax.Array:
  """True for real nodes of a padded graph (`jraph.get_node_padding_mask`)."""
  return jraph.get_node_padding_mask(graph)


def edge_mask(graph: GraphsTuple) -> jax.Array:
  """True for real edges of a padded graph (`jraph.get_edge_padding_mask`)."""
  return jraph.get_edge_padding_mask(graph)


def graph_mask(graph: GraphsTuple) -> jax.Array:
  """True for real graphs of a padded batch (`jraph.get_graph_padding_mask`)."""
  return jraph.get_graph_padding_mask(graph)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of `values` [M, ...] over the rows where `mask` [M] is True (0 if none): a loss or
  metric that padding never enters. Masked rows are replaced, not multiplied, so a NaN or inf
  in a padding row cannot leak in."""
  values = jnp.where(mask.reshape(mask.shape + (1,) * (values.ndim - 1)), values, 0)
  count = jnp.sum(mask) * (values[0].size if values.ndim > 1 else 1)
  return jnp.sum(values) / jnp.maximum(count, 1)


# ---------------------------------------------------------------------------------------------
# Batching a list of graphs.

class GraphBatch(NamedTuple):
  """A padded batch. `indices` [graphs bucket]: the dataset index of each real graph, -1 for
  padding graphs (labels: `labels[indices]` where `graph_mask`)."""
  graph: GraphsTuple
  graph_mask: np.ndarray
  node_mask: np.ndarray
  indices: np.ndarray


def batch_order(num_graphs: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
  """The order of an epoch: a pure function of (seed, epoch)."""
  if not shuffle:
    return np.arange(num_graphs)
  return np.random.default_rng([seed, epoch]).permutation(num_graphs)


def iterate_batches(graphs: Sequence[GraphsTuple], batch_size: int, *, seed: int, epoch: int,
                    shuffle: bool = True, drop_remainder: bool = False, growth: float = 2.0,
                    minimum: int = 8) -> Iterator[GraphBatch]:
  """Batches single graphs `batch_size` at a time, each batch padded to its size bucket.

  The order is `batch_order(len(graphs), seed, epoch, shuffle)`, so the same (seed, epoch) gives
  the same batches. Batches have at most `batch_size` graphs; the graph axis is always padded
  to bucket_size(batch_size + 1), so batches differ only in their node and edge rungs and a
  jitted step compiles once per (nodes, edges) bucket.
  """
  if batch_size < 1:
    raise ConfigError(f"batch_size={batch_size} must be >= 1")
  order = batch_order(len(graphs), seed, epoch, shuffle)
  n_graph = bucket_size(batch_size + 1, growth, 2)
  stop = len(order) - len(order) % batch_size if drop_remainder else len(order)
  for start in range(0, stop, batch_size):
    chosen = order[start:start + batch_size]
    batch = jraph.batch_np([graphs[i] for i in chosen])
    n_node, n_edge, _ = bucket_shape(int(np.sum(batch.n_node)), int(np.sum(batch.n_edge)),
                                     len(chosen), growth, minimum)
    padded = jraph.pad_with_graphs(batch, n_node, n_edge, n_graph)
    indices = np.full(n_graph, -1, np.int64)
    indices[:len(chosen)] = chosen
    yield GraphBatch(padded, np.asarray(graph_mask(padded)), np.asarray(node_mask(padded)),
                     indices)
