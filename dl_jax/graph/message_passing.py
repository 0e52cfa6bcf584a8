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
"""

from typing import Callable

import jax
import jax.numpy as jnp
import jraph

from dl_jax.errors import ConfigError
from dl_jax.graph.graphs import node_graph_index

GraphsTuple = jraph.GraphsTuple
AGGREGATIONS = ("sum", "mean", "max")
READOUTS = ("sum", "mean", "max")


def _expand(x: jax.Array, like: jax.Array) -> jax.Array:
  return x.reshape(x.shape + (1,) * (like.ndim - x.ndim))


def accumulation_dtype(dtype) -> jnp.dtype:
  """The dtype sums of `dtype` values are accumulated in: at least float32."""
  return jnp.promote_types(dtype, jnp.float32)


def segment_sum(data: jax.Array, segment_ids: jax.Array, num_segments: int) -> jax.Array:
  """`jax.ops.segment_sum` accumulated in `accumulation_dtype`, returned in data's dtype."""
  total = jax.ops.segment_sum(data.astype(accumulation_dtype(data.dtype)), segment_ids,
                              num_segments)
  return total.astype(data.dtype)


def segment_aggregate(data: jax.Array, segment_ids: jax.Array, num_segments: int,
                      kind: str) -> jax.Array:
  """Sum, mean or max of the rows of `data` [M, ...] per segment -> [num_segments, ...].

  Empty segments give 0 for every kind. Sum and mean add the rows in their stored order.
  """
  if kind not in AGGREGATIONS:
    raise ConfigError(f"unknown aggregation {kind!r}; accepted: {', '.join(AGGREGATIONS)}")
  if kind == "sum":
    return segment_sum(data, segment_ids, num_segments)
  acc = accumulation_dtype(data.dtype)
  count = jax.ops.segment_sum(jnp.ones(segment_ids.shape, acc), segment_ids, num_segments)
  if kind == "mean":
    total = jax.ops.segment_sum(data.astype(acc), segment_ids, num_segments)
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


def graph_readout(graph: GraphsTuple, kind: str = "sum", values: jax.Array | None = None
                  ) -> jax.Array:
  """Graph read-out: sum, mean or max of each graph's node values -> [n_graph, ...].

  `values` [N, ...] defaults to `graph.nodes`. Empty graphs read out 0; padding nodes only
  reach the padding graphs. The mean divides by the graph's node count.
  """
  if kind not in READOUTS:
    raise ConfigError(f"unknown read-out {kind!r}; accepted: {', '.join(READOUTS)}")
  values = graph.nodes if values is None else values
  return segment_aggregate(values, node_graph_index(graph), graph.n_node.shape[0], kind)


def broadcast_to_nodes(graph: GraphsTuple, per_graph: jax.Array) -> jax.Array:
  """Copies a per-graph value [n_graph, ...] to each of the graph's nodes -> [N, ...]."""
  return per_graph[node_graph_index(graph)]
