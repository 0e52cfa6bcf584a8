"""Neural message passing (section 6.4, eq. 6.3) as pure functions on `jraph.GraphsTuple`.

    x_i^(k) = gamma(x_i^(k-1), AGG_{j in N(i)} phi(x_i^(k-1), x_j^(k-1), e_ji))        (6.3)

- phi, the edge transfer function, makes one message per edge j -> i;
- AGG, the aggregation, combines the messages arriving at node i. It must not depend on their
  order (section 6.4): sum, mean, max, or attention (a softmax over the incoming edges).
  Every aggregation is defined on empty neighbourhoods: the result is 0 there (max included:
  `jax.ops.segment_max` alone would give -inf);
- gamma, the node update, combines the old node value with the aggregate.

Precision: sums over edges and nodes (aggregations, read-outs, attention softmax) of
low-precision values (bfloat16) accumulate in float32 and return the dtype of their input;
float32 and float64 are summed as they are.

Read-outs turn node values into one value per graph (sum, mean or max over the graph's nodes,
an invariant global pooling A of section 4.4). Each graph only sees its own nodes, so the padding
nodes of a padded batch (all in the padding graphs) never reach a real graph's read-out; the
padding graphs' read-outs are garbage-free (0 when empty) and are masked out of losses by
`dl_jax.graph.graphs.graph_mask`.

Sums over sorted segment ids (a batch's node-to-graph index is sorted) can skip most of the
scatter: `segment_sum(..., impl=...)` with `SEGMENT_SUM_IMPLS`. "scatter" (the default) adds
every row into its segment; "sorted" is that scatter told the ids are sorted; "blocked"
(`sorted_segment_sum`) sums whole blocks of rows densely and scatters only the few blocks that
straddle a segment boundary.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from dl_jax.errors import ConfigError, DataError
from dl_jax.graph.graphs import node_graph_index

GraphsTuple = jraph.GraphsTuple
AGGREGATIONS = ("sum", "mean", "max")
READOUTS = ("sum", "mean", "max")
SEGMENT_SUM_IMPLS = ("scatter", "sorted", "blocked")
SORTED_BLOCK = 256  # rows per block of `sorted_segment_sum`


def _expand(x: jax.Array, like: jax.Array) -> jax.Array:
  return x.reshape(x.shape + (1,) * (like.ndim - x.ndim))


def accumulation_dtype(dtype) -> jnp.dtype:
  """The dtype sums of `dtype` values are accumulated in: at least float32."""
  return jnp.promote_types(dtype, jnp.float32)


def _check_sorted(segment_ids) -> None:
  """DataError when `segment_ids` are concrete and not sorted; traced ids are not checked."""
  try:
    ids = np.asarray(segment_ids)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return
  if ids.size > 1 and np.any(ids[1:] < ids[:-1]):
    first = int(np.argmax(ids[1:] < ids[:-1]))
    raise DataError(f"segment ids must be sorted for this sum: id {ids[first]} at {first} "
                    f"comes before {ids[first + 1]}")


def sorted_segment_sum(data: jax.Array, segment_ids: jax.Array, num_segments: int,
                       block: int = SORTED_BLOCK) -> jax.Array:
  """`jax.ops.segment_sum` for ids sorted in increasing order, with few scattered rows.

  The rows are cut into blocks of `block` (the last one padded). A block whose ids are all one
  id in [0, num_segments) adds its dense row sum to that segment (one scattered row per block);
  a block of ids all out of range is dropped. Every other block holds a change of id next to an
  id in range, or the one step from below the range to above it; sorted ids have at most
  num_segments + 1 of those, so at most that many blocks are scattered row by row. Every total
  is a direct sum (no difference of prefix sums). Ids outside [0, num_segments) are dropped, as
  by `jax.ops.segment_sum`.

  Unsorted ids: a DataError when they are concrete; under jit the sum is still right unless
  more blocks mix ids than sorted ids allow, and then every value is NaN (inexact data).
  """
  if block < 1:
    raise ConfigError(f"block={block} must be >= 1")
  _check_sorted(segment_ids)
  data, ids = jnp.asarray(data), jnp.asarray(segment_ids).astype(jnp.int32)
  n, tail = data.shape[0], data.shape[1:]
  if n == 0 or num_segments == 0:
    return jnp.zeros((num_segments, *tail), data.dtype)
  num_blocks = -(-n // block)
  pad = num_blocks * block - n  # the last block is padded inside the reductions (no copy)

  def per_block(x, init, op):
    ones = (1,) * (x.ndim - 1)
    return jax.lax.reduce_window(x, init, op, (block, *ones), (block, *ones),
                                 ((0, pad),) + ((0, 0),) * (x.ndim - 1))

  int32 = jnp.iinfo(jnp.int32)
  low, high = per_block(ids, int32.max, jax.lax.min), per_block(ids, int32.min, jax.lax.max)
  pure = (low == high) & (low >= 0) & (low < num_segments)
  mixed = (low != high) & (high >= 0) & (low < num_segments)
  totals = per_block(data, jnp.zeros((), data.dtype), jax.lax.add)
  out = jax.ops.segment_sum(jnp.where(_expand(pure, totals), totals, 0), low, num_segments)
  bound = min(num_blocks, num_segments + 1)
  count = jnp.sum(mixed)
  index = jnp.nonzero(mixed, size=bound, fill_value=0)[0]
  row_index = (index[:, None] * block + jnp.arange(block)).reshape(-1)
  keep = jnp.repeat(jnp.arange(bound) < count, block)
  rows = jnp.take(data, row_index, axis=0, mode="fill", fill_value=0)
  row_ids = jnp.take(ids, row_index, mode="fill", fill_value=-1)  # -1: dropped
  out = out + jax.ops.segment_sum(jnp.where(_expand(keep, rows), rows, 0), row_ids,
                                  num_segments)
  if jnp.issubdtype(out.dtype, jnp.inexact):
    out = jnp.where(count > bound, jnp.nan, out)
  return out


def segment_sum(data: jax.Array, segment_ids: jax.Array, num_segments: int,
                impl: str = "scatter") -> jax.Array:
  """`jax.ops.segment_sum` accumulated in `accumulation_dtype`, returned in data's dtype.

  `impl` (`SEGMENT_SUM_IMPLS`): "scatter", any ids; for ids sorted in increasing order,
  "sorted" (the scatter with `indices_are_sorted=True`: XLA may add runs of equal ids before
  its updates; unsorted ids under jit give undefined sums) or "blocked" (`sorted_segment_sum`).
  Concrete unsorted ids raise a DataError with both.
  """
  if impl not in SEGMENT_SUM_IMPLS:
    raise ConfigError(f"unknown segment_sum impl {impl!r}; accepted: "
                      f"{', '.join(SEGMENT_SUM_IMPLS)}")
  wide = data.astype(accumulation_dtype(data.dtype))
  if impl == "blocked":
    total = sorted_segment_sum(wide, segment_ids, num_segments)
  else:
    if impl == "sorted":
      _check_sorted(segment_ids)
    total = jax.ops.segment_sum(wide, segment_ids, num_segments,
                                indices_are_sorted=impl == "sorted")
  return total.astype(data.dtype)


def segment_aggregate(data: jax.Array, segment_ids: jax.Array, num_segments: int,
                      kind: str, impl: str = "scatter") -> jax.Array:
  """Sum, mean or max of the rows of `data` [M, ...] per segment -> [num_segments, ...].

  Empty segments give 0 for every kind. Sum and mean add with `impl` (see `segment_sum`; the
  default "scatter" adds the rows in their stored order); max ignores it.
  """
  if kind not in AGGREGATIONS:
    raise ConfigError(f"unknown aggregation {kind!r}; accepted: {', '.join(AGGREGATIONS)}")
  if kind == "sum":
    return segment_sum(data, segment_ids, num_segments, impl)
  acc = accumulation_dtype(data.dtype)
  count = jax.ops.segment_sum(jnp.ones(segment_ids.shape, acc), segment_ids, num_segments)
  if kind == "mean":
    total = segment_sum(data.astype(acc), segment_ids, num_segments, impl)
    return (total / _expand(jnp.maximum(count, 1), total)).astype(data.dtype)
  top = jax.ops.segment_max(data, segment_ids, num_segments)
  return jnp.where(_expand(count > 0, top), top, jnp.zeros_like(top))


def aggregate(messages: jax.Array, receivers: jax.Array, num_nodes: int,
              kind: str = "sum") -> jax.Array:
  """AGG of eq. 6.3: the messages [E, ...] of the edges into each node -> [num_nodes, ...]."""
  return segment_aggregate(messages, receivers, num_nodes, kind)


def attention_weights(logits: jax.Array, receivers: jax.Array, num_nodes: int) -> jax.Array:
  """alpha_ij (section 6.5.3): a softmax of the edge logits [E] or [E, heads] over the edges
  into each receiver (`jraph.segment_softmax`; numerically stable), in the logits' dtype."""
  acc = accumulation_dtype(logits.dtype)
  return jraph.segment_softmax(logits.astype(acc), receivers, num_nodes).astype(logits.dtype)


def attention_aggregate(messages: jax.Array, logits: jax.Array, receivers: jax.Array,
                        num_nodes: int) -> jax.Array:
  """sum_j alpha_ij m_ji: attention over the incoming edges.

  Args:
    messages: [E, F] or [E, heads, F].
    logits: [E] or [E, heads], one per message (and head).
    receivers: [E].
    num_nodes: the number of nodes.

  Returns:
    [num_nodes, F] or [num_nodes, heads, F]; 0 for nodes without incoming edges.
  """
  weights = attention_weights(logits, receivers, num_nodes).astype(messages.dtype)
  return segment_sum(_expand(weights, messages) * messages, receivers, num_nodes)


def num_nodes_of(graph: GraphsTuple) -> int:
  """The static total number of nodes of a (batched, padded) graph."""
  return jax.tree.leaves(graph.nodes)[0].shape[0]


def message_passing(graph: GraphsTuple,
                    edge_fn: Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array],
                    update_fn: Callable[[jax.Array, jax.Array], jax.Array],
                    aggregation: str = "sum") -> GraphsTuple:
  """One step of eq. 6.3; returns the graph with the new node values.

  Args:
    graph: nodes [N, F]; edges [E, ...] or None.
    edge_fn: phi(x_i, x_j, e_ji) -> message, applied to all edges at once ([E, F] receiver
      values, [E, F] sender values, edge features or None).
    update_fn: gamma(x_i, aggregate) -> new x_i, on all nodes at once.
    aggregation: "sum", "mean" or "max".
  """
  x = graph.nodes
  messages = edge_fn(x[graph.receivers], x[graph.senders], graph.edges)
  aggregated = aggregate(messages, graph.receivers, x.shape[0], aggregation)
  return graph._replace(nodes=update_fn(x, aggregated))


def degrees(graph: GraphsTuple, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """(in-degree, out-degree) of every node [N]: incoming edges j -> i, outgoing i -> j."""
  n = num_nodes_of(graph)
  ones = jnp.ones(graph.senders.shape, dtype)
  return (jax.ops.segment_sum(ones, graph.receivers, n),
          jax.ops.segment_sum(ones, graph.senders, n))


def graph_readout(graph: GraphsTuple, kind: str = "sum", values: jax.Array | None = None,
                  impl: str = "scatter") -> jax.Array:
  """Graph read-out: sum, mean or max of each graph's node values -> [n_graph, ...].

  `values` [N, ...] defaults to `graph.nodes`. Empty graphs read out 0; padding nodes only
  reach the padding graphs. The mean divides by the graph's node count. `impl`: how sums add
  up (`segment_sum`; the node-to-graph index is sorted, so "sorted" and "blocked" apply).
  """
  if kind not in READOUTS:
    raise ConfigError(f"unknown read-out {kind!r}; accepted: {', '.join(READOUTS)}")
  values = graph.nodes if values is None else values
  return segment_aggregate(values, node_graph_index(graph), graph.n_node.shape[0], kind, impl)


def broadcast_to_nodes(graph: GraphsTuple, per_graph: jax.Array) -> jax.Array:
  """Copies a per-graph value [n_graph, ...] to each of the graph's nodes -> [N, ...]."""
  return per_graph[node_graph_index(graph)]
