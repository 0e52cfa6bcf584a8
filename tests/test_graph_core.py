"""The graph library of chapter 6 (`dl_jax.graph`): builders, aggregation corner cases, GCN and
GAT against dense numpy references, padding, size buckets, jraph compatibility, models."""

import chex
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from dl_jax.errors import ConfigError, DataError
from dl_jax.graph import compat
from dl_jax.graph import graphs as G
from dl_jax.graph import layers as L
from dl_jax.graph import message_passing as mp
from dl_jax.models import gnn, registry
from dl_jax.models.spec import count_params
from dl_jax.symmetry import blueprint as bp

JIT = pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])


def maybe_jit(f, jit):
  return jax.jit(f) if jit else f


def random_graph(rng, n, e, features=3, symmetrize=False):
  return G.from_edge_list(rng.integers(0, n, e), rng.integers(0, n, e), n,
                          nodes=rng.standard_normal((n, features)).astype(np.float32),
                          symmetrize=symmetrize)


def corner_batch(features=2):
  """Four graphs: 3 nodes with edges (one node without incoming edges), a single node without
  edges, an empty graph, and 2 nodes joined both ways."""
  x = np.arange(6 * features, dtype=np.float32).reshape(6, features) - 5.0
  return jraph.GraphsTuple(
      nodes=x, edges=None,
      senders=np.array([0, 1, 0, 4, 5], np.int32), receivers=np.array([1, 2, 2, 5, 4], np.int32),
      n_node=np.array([3, 1, 0, 2], np.int32), n_edge=np.array([3, 0, 0, 2], np.int32),
      globals=None)


def init(module, graph, seed=0):
  """Random variables for `module` drawn by numpy (no compilation): N(0, 1/fan_in) weights,
  N(0, 1) biases (nonzero, so the references check them)."""
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), graph)
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    value = rng.standard_normal(leaf.shape)
    if not jax.tree_util.keystr(path).endswith("['bias']"):
      value /= np.sqrt(max(1, int(np.prod(leaf.shape[:-1]))))
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


# ---------------------------------------------------------------------------------------------
# Builders.

def test_adjacency_edge_list_round_trip():
  rng = np.random.default_rng(0)
  a = (rng.random((7, 7)) < 0.3) * rng.integers(1, 4, (7, 7))  # directed, weighted
  x = rng.standard_normal((7, 2))
  graph = G.from_adjacency(a, x, weights_as_edges=True)
  assert int(graph.n_edge[0]) == np.count_nonzero(a) and graph.senders.dtype == np.int32
  np.testing.assert_array_equal(G.to_adjacency(graph, weights=True), a)
  np.testing.assert_array_equal(G.to_adjacency(graph), a != 0)  # counts of edges j -> i
  again = G.from_edge_list(graph.senders, graph.receivers, 7, x)
  np.testing.assert_array_equal(G.to_adjacency(again), a != 0)
  # Row = receiver: A X sums each node's in-neighbours.
  np.testing.assert_allclose((a != 0) @ x, mp.aggregate(x[graph.senders], graph.receivers, 7),
                             rtol=1e-6)


def test_symmetrize_self_loops_and_bad_edge_lists():
  graph = G.from_edge_list([0, 1, 1, 2], [1, 0, 2, 2], 4, symmetrize=True)
  a = G.to_adjacency(graph)
  np.testing.assert_array_equal(a, a.T)
  assert a.max() == 1 and int(graph.n_edge[0]) == 5  # 0-1 once each way, 1-2 both, loop 2
  batch = jraph.batch_np([G.from_edge_list([0], [1], 2), G.from_edge_list([], [], 1),
                          G.from_edge_list([1, 0], [2, 2], 3)])
  batch = batch._replace(nodes=np.zeros((6, 1)))
  looped = jax.jit(G.add_self_loops)(batch)
  np.testing.assert_array_equal(looped.n_edge, [3, 1, 5])
  np.testing.assert_array_equal(G.to_adjacency(looped), G.to_adjacency(batch) + np.eye(6))
  owner = np.repeat(np.arange(3), batch.n_node)
  np.testing.assert_array_equal(owner[looped.senders], np.repeat(np.arange(3), looped.n_edge))
  with pytest.raises(DataError, match=r"node ids must be in \[0, 3\), got ids from 0 to 3"):
    G.from_edge_list([0, 3], [1, 1], 3)
  with pytest.raises(DataError, match="differ in length"):
    G.from_edge_list([0, 1], [1], 3)
  with pytest.raises(DataError, match="square"):
    G.from_adjacency(np.zeros((2, 3)))


# ---------------------------------------------------------------------------------------------
# Aggregation and read-outs on corner cases.

@JIT
def test_aggregations_and_readouts_on_corner_cases(jit):
  graph = corner_batch()
  x = np.asarray(graph.nodes)
  incoming = {i: [s for s, r in zip(graph.senders, graph.receivers) if r == i] for i in range(6)}

  def expected(reduce):
    return np.stack([reduce(x[incoming[i]]) if incoming[i] else np.zeros(2) for i in range(6)])

  for kind, reduce in (("sum", lambda v: v.sum(0)), ("mean", lambda v: v.mean(0)),
                       ("max", lambda v: v.max(0))):
    got = maybe_jit(lambda g, kind=kind: mp.aggregate(g.nodes[g.senders], g.receivers, 6, kind),
                    jit)(graph)
    np.testing.assert_allclose(got, expected(reduce), rtol=1e-6, err_msg=kind)
  np.testing.assert_array_equal(
      maybe_jit(lambda g: mp.aggregate(g.nodes[g.senders], g.receivers, 6, "max"), jit)(graph)[0],
      [0.0, 0.0])  # no incoming edges: 0, not -inf

  offsets = np.concatenate([[0], np.cumsum(graph.n_node)])
  for kind, reduce in (("sum", np.sum), ("mean", np.mean), ("max", np.max)):
    got = maybe_jit(lambda g, kind=kind: mp.graph_readout(g, kind), jit)(graph)
    want = [reduce(x[a:b], axis=0) if b > a else np.zeros(2)
            for a, b in zip(offsets[:-1], offsets[1:])]
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-6, err_msg=kind)
  assert np.all(np.isfinite(maybe_jit(lambda g: mp.graph_readout(g, "max"), jit)(graph)))


@JIT
def test_attention_is_a_softmax_over_incoming_edges(jit):
  graph = corner_batch()
  logits = jnp.array([0.5, -1.0, 2.0, 0.0, 3.0])
  messages = jnp.arange(10.0).reshape(5, 2)
  out = maybe_jit(lambda l, m: mp.attention_aggregate(m, l, graph.receivers, 6), jit)(logits,
                                                                                       messages)
  w = np.exp([-1.0, 2.0]) / np.exp([-1.0, 2.0]).sum()  # edges 1 and 2 go into node 2
  np.testing.assert_allclose(out[2], w[0] * messages[1] + w[1] * messages[2], rtol=1e-6)
  np.testing.assert_allclose(out[1], messages[0], rtol=1e-6)  # a single edge: weight 1
  np.testing.assert_array_equal(out[0], [0.0, 0.0])  # no edges in


def test_unknown_aggregation_and_readout_are_config_errors():
  graph = corner_batch()
  with pytest.raises(ConfigError, match="unknown aggregation 'median'; accepted: sum, mean, max"):
    mp.aggregate(graph.nodes, graph.receivers[:1], 6, "median")
  with pytest.raises(ConfigError, match="unknown read-out 'min'"):
    mp.graph_readout(graph, "min")


def _sorted_ids(rng, n, num_segments, low=0, high=None):
  high = num_segments if high is None else high
  return np.sort(rng.integers(low, high, n)).astype(np.int32)


@JIT
@pytest.mark.parametrize("n,num_segments,block", [
    (1000, 64, 256), (1000, 7, 8), (777, 5, 100), (5, 3, 8), (256, 1, 16), (300, 40, 1)])
def test_sorted_segment_sums_equal_jax_segment_sum(n, num_segments, block, jit):
  rng = np.random.default_rng(n + num_segments)
  x = rng.standard_normal((n, 3)).astype(np.float32)
  ids = _sorted_ids(rng, n, num_segments)
  want = jax.ops.segment_sum(x, ids, num_segments)
  f = maybe_jit(lambda x, i: mp.sorted_segment_sum(x, i, num_segments, block), jit)
  np.testing.assert_allclose(f(x, ids), want, rtol=1e-5, atol=1e-5)
  for impl in mp.SEGMENT_SUM_IMPLS:
    got = maybe_jit(lambda x, i, impl=impl: mp.segment_sum(x, i, num_segments, impl), jit)(x, ids)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=impl)


@JIT
def test_sorted_segment_sum_corner_cases(jit):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((600, 2, 3)).astype(np.float32)  # trailing dims kept
  blocked = lambda x, ids, s: maybe_jit(
      lambda x, ids: mp.sorted_segment_sum(x, ids, s, 16), jit)(x, ids)
  # Empty segments (only even ids), ids out of range on both sides (dropped).
  for ids in (2 * _sorted_ids(rng, 600, 20), _sorted_ids(rng, 600, 20, low=-30, high=50),
              np.full(600, 40, np.int32), np.full(600, -1, np.int32)):
    want = jax.ops.segment_sum(x, ids, 20)
    np.testing.assert_allclose(blocked(x, ids, 20), want, rtol=1e-5, atol=1e-5)
  assert mp.sorted_segment_sum(x[:0], np.zeros(0, np.int32), 4).shape == (4, 2, 3)
  assert mp.sorted_segment_sum(x, _sorted_ids(rng, 600, 5), 0).shape == (0, 2, 3)
  ones = np.ones((1024, 1), np.float32)  # one segment: every block is pure
  np.testing.assert_array_equal(blocked(ones, np.zeros(1024, np.int32), 1), [[1024.0]])
  # bfloat16 data accumulates in float32 and comes back as bfloat16, as the scatter does.
  half = jnp.asarray(x[:, 0], jnp.bfloat16)
  ids = _sorted_ids(rng, 600, 6)
  got = mp.segment_sum(half, ids, 6, "blocked")
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(got, np.float32),
                             np.asarray(mp.segment_sum(half, ids, 6), np.float32), rtol=1e-2)


def test_unsorted_ids_are_rejected_or_give_nan():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((4000, 2)).astype(np.float32)
  ids = rng.integers(0, 8, 4000).astype(np.int32)
  for impl in ("sorted", "blocked"):
    with pytest.raises(DataError, match="must be sorted"):
      mp.segment_sum(x, ids, 8, impl)
  # Under jit the ids cannot be checked: the blocked sum is NaN rather than wrong ...
  assert np.all(np.isnan(jax.jit(lambda x, i: mp.sorted_segment_sum(x, i, 8, 16))(x, ids)))
  # ... and right where few blocks mix ids (here one block holds them all).
  few = np.concatenate([np.full(3000, 7), [3, 1, 2], np.full(997, 7)]).astype(np.int32)
  np.testing.assert_allclose(jax.jit(lambda x, i: mp.sorted_segment_sum(x, i, 8, 16))(x, few),
                             jax.ops.segment_sum(x, few, 8), rtol=1e-5, atol=1e-5)
  with pytest.raises(ConfigError, match="unknown segment_sum impl 'atomic'"):
    mp.segment_sum(x, ids, 8, "atomic")


@JIT
@pytest.mark.parametrize("impl", ["sorted", "blocked"])
def test_readouts_with_sorted_sums_match_the_scatter(impl, jit):
  graph = corner_batch()
  for kind in ("sum", "mean"):
    want = mp.graph_readout(graph, kind)
    got = maybe_jit(lambda g, kind=kind: mp.graph_readout(g, kind, impl=impl), jit)(graph)
    np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=kind)


# ---------------------------------------------------------------------------------------------
# GCN and GAT against dense references.

@JIT
@pytest.mark.parametrize("symmetric", [True, False], ids=["undirected", "directed"])
def test_gcn_matches_the_dense_formula(symmetric, jit):
  rng = np.random.default_rng(1)
  graph = random_graph(rng, 9, 20, features=4, symmetrize=symmetric)
  graph = graph._replace(senders=graph.senders[graph.senders != graph.receivers],
                         receivers=graph.receivers[graph.senders != graph.receivers])
  graph = graph._replace(n_edge=np.array([graph.senders.size], np.int32))
  variables = init(L.GCN(5), graph)
  out = maybe_jit(lambda g: L.GCN(5).apply(variables, g).nodes, jit)(graph)
  a_hat = G.to_adjacency(graph) + np.eye(9)
  d_in, d_out = a_hat.sum(1), a_hat.sum(0)  # row sums (in-degree + 1), column sums (out + 1)
  if symmetric:
    np.testing.assert_array_equal(d_in, d_out)
  w = np.asarray(variables["params"]["W"]["kernel"])
  b = np.asarray(variables["params"]["bias"])
  want = (np.diag(d_in ** -0.5) @ a_hat @ np.diag(d_out ** -0.5)) @ graph.nodes @ w + b
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@JIT
@pytest.mark.parametrize("concat", [True, False], ids=["concat", "mean"])
def test_gat_matches_the_dense_attention_formula(concat, jit):
  rng = np.random.default_rng(2)
  a = (rng.random((8, 8)) < 0.3) & ~np.eye(8, dtype=bool)  # directed, no self-loops
  graph = G.from_adjacency(a, rng.standard_normal((8, 3)).astype(np.float32))
  layer = L.GAT(4, num_heads=3, concat=concat)
  variables = init(layer, graph)
  out = maybe_jit(lambda g: layer.apply(variables, g).nodes, jit)(graph)
  p = jax.tree.map(np.asarray, variables["params"])
  h = (graph.nodes @ p["W"]["kernel"]).reshape(8, 3, 4)
  adjacency = G.to_adjacency(graph) > 0
  heads = []
  for k in range(3):
    score = (h[:, k] @ p["a_receiver"][k])[:, None] + (h[:, k] @ p["a_sender"][k])[None, :]
    score = np.where(score > 0, score, 0.2 * score)  # LeakyReLU 0.2: e[i, j] for edge j -> i
    mask = adjacency | np.eye(8, dtype=bool)  # the neighbourhood plus the node itself
    e = np.where(mask, np.exp(score - score.max(1, keepdims=True)), 0.0)
    alpha = e / e.sum(1, keepdims=True)
    heads.append(alpha @ h[:, k])
  want = np.concatenate(heads, -1) if concat else np.mean(heads, 0)
  np.testing.assert_allclose(out, want + p["bias"], rtol=1e-5, atol=1e-5)


def test_sage_mean_and_maxpool_match_their_formulas():
  graph = corner_batch(3)
  x = np.asarray(graph.nodes)
  for aggregator in ("mean", "maxpool"):
    layer = L.GraphSAGE(4, aggregator)
    variables = init(layer, graph)
    p = jax.tree.map(np.asarray, variables["params"])
    values = x if aggregator == "mean" else np.maximum(x @ p["pool"]["kernel"] + p["pool"]["bias"],
                                                       0)
    reduce = np.mean if aggregator == "mean" else np.max
    agg = np.zeros((6, values.shape[1]))
    for i in range(6):
      rows = graph.senders[graph.receivers == i]
      if rows.size:
        agg[i] = reduce(values[rows], axis=0)
    want = x @ p["self"]["kernel"] + p["self"]["bias"] + agg @ p["neighbours"]["kernel"]
    np.testing.assert_allclose(layer.apply(variables, graph).nodes, want, rtol=1e-5, atol=1e-5)


def test_sage_lstm_reads_a_random_order_of_at_most_max_neighbours():
  graph = jraph.GraphsTuple(nodes=np.random.default_rng(3).standard_normal((6, 2)).astype(
      np.float32), edges=None, senders=np.array([1, 2, 3, 4, 5], np.int32),
      receivers=np.zeros(5, np.int32), n_node=np.array([6]), n_edge=np.array([5]), globals=None)
  layer = L.GraphSAGE(3, "lstm", max_neighbours=4)
  variables = init(layer, graph)
  apply = jax.jit(lambda key: layer.apply(variables, graph, rngs={"neighbours": key}).nodes)
  a, b = apply(jax.random.PRNGKey(1)), apply(jax.random.PRNGKey(2))
  np.testing.assert_array_equal(a, apply(jax.random.PRNGKey(1)))  # same key, same order
  assert not np.allclose(a[0], b[0])  # node 0 sees its neighbours in another order
  np.testing.assert_array_equal(a[1:], b[1:])  # no neighbours: W_1 x_i + b, any order
  p = variables["params"]
  np.testing.assert_allclose(a[1:], graph.nodes[1:] @ p["self"]["kernel"] + p["self"]["bias"],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(layer.apply(variables, graph).nodes,
                                layer.apply(variables, graph).nodes)  # fixed seed without rngs


def test_ggnn_edge_types_and_weights():
  graph = corner_batch(3)._replace(edges=np.zeros(5, np.int32))
  typed = L.GatedGNN(4, num_steps=2, num_edge_types=1)
  plain = L.GatedGNN(4, num_steps=2)
  v_plain = init(plain, graph)
  v_typed = {"params": {"gru": v_plain["params"]["gru"],
                        "W": v_plain["params"]["W"]["kernel"][None]}}
  want = plain.apply(v_plain, graph).nodes
  np.testing.assert_allclose(typed.apply(v_typed, graph).nodes, want, rtol=1e-6, atol=1e-6)
  weighted = L.GatedGNN(4, num_steps=2, edge_weights=True)
  ones = graph._replace(edges=np.ones(5, np.float32))
  np.testing.assert_allclose(weighted.apply(v_plain, ones).nodes, want, rtol=1e-6, atol=1e-6)
  assert not np.allclose(weighted.apply(v_plain, ones._replace(edges=2 * ones.edges)).nodes,
                         want)
  with pytest.raises(ConfigError, match="features=2 is smaller than the 3 input features"):
    L.GatedGNN(2).init(jax.random.PRNGKey(0), graph)


def test_deepsets_on_arrays_and_on_graphs_without_edges():
  x = np.random.default_rng(5).standard_normal((2, 5, 3)).astype(np.float32)
  layer = L.DeepSetsEquivariant(4)
  variables = init(layer, x)
  inner = variables["params"]["DeepSetsLinear_0"]
  np.testing.assert_array_equal(layer.apply(variables, x),
                                bp.DeepSetsLinear(4).apply({"params": inner}, x))
  sets = jraph.batch_np([G.from_edge_list([], [], 5, x[i]) for i in range(2)])
  out = layer.apply({"params": inner}, sets).nodes  # each graph is a set: the same map
  np.testing.assert_allclose(out, layer.apply(variables, x).reshape(10, 4), rtol=1e-5, atol=1e-6)
  invariant = L.DeepSetsInvariant(2, (6,))
  v = init(invariant, x)
  np.testing.assert_allclose(invariant.apply(v, sets), invariant.apply(v, x), rtol=1e-5,
                             atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Padding and buckets.

PRECISION_LAYERS = {  # name -> (layer for a dtype, edge features of the corner batch)
    "gcn": (lambda d: L.GCN(4, dtype=d), None),
    "gat": (lambda d: L.GAT(2, num_heads=2, dtype=d), None),
    "sage_mean": (lambda d: L.GraphSAGE(4, "mean", dtype=d), None),
    "sage_maxpool": (lambda d: L.GraphSAGE(4, "maxpool", dtype=d), None),
    "sage_lstm": (lambda d: L.GraphSAGE(4, "lstm", max_neighbours=2, dtype=d), None),
    "ggnn_edge_types": (lambda d: L.GatedGNN(4, 2, num_edge_types=2, dtype=d), "types"),
    "ggnn_edge_weights": (lambda d: L.GatedGNN(4, 2, edge_weights=True, dtype=d), "weights"),
    "gin": (lambda d: L.GIN(4, dtype=d), None),
    "mlp": (lambda d: L.MLPLayer(4, dtype=d), None),
    "deepsets_equivariant": (lambda d: L.DeepSetsEquivariant(4, dtype=d), None),
    "deepsets_invariant": (lambda d: L.DeepSetsInvariant(4, (4,), dtype=d), None),
}


@pytest.mark.parametrize("name", PRECISION_LAYERS)
def test_layers_keep_float32_parameters_and_compute_in_their_dtype(name):
  build, edges = PRECISION_LAYERS[name]
  graph = corner_batch()
  if edges == "types":
    graph = graph._replace(edges=np.array([0, 1, 1, 0, 1], np.int32))
  elif edges == "weights":
    graph = graph._replace(edges=np.array([0.5, 1.0, 2.0, 1.0, 1.5], np.float32))
  nodes = lambda out: out.nodes if isinstance(out, jraph.GraphsTuple) else out
  reference = build(None)
  variables = reference.init(jax.random.PRNGKey(0), graph)
  out32 = nodes(reference.apply(variables, graph))
  # A bfloat16 layer on float32 inputs: float32 parameters, bfloat16 outputs close to float32.
  low = build(jnp.bfloat16)
  low_variables = low.init(jax.random.PRNGKey(0), graph)
  assert {leaf.dtype for leaf in jax.tree.leaves(low_variables)} == {jnp.dtype(jnp.float32)}
  out16 = nodes(low.apply(variables, graph))
  assert out16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out16, np.float32), out32, rtol=5e-2,
                             atol=5e-2 * max(1.0, float(np.abs(out32).max())))
  # bfloat16 inputs no longer make bfloat16 parameters.
  graph16 = graph._replace(nodes=graph.nodes.astype(jnp.bfloat16))
  shapes = jax.eval_shape(reference.init, jax.random.PRNGKey(0), graph16)
  assert {leaf.dtype for leaf in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}


def small_graphs(count, seed=0, features=3):
  rng = np.random.default_rng(seed)
  graphs = []
  for _ in range(count):
    n = int(rng.integers(1, 12))
    graphs.append(random_graph(rng, n, int(rng.integers(0, 2 * n)), features, symmetrize=True))
  return graphs


@pytest.mark.parametrize("name", gnn.NODE_MODELS)
def test_padding_does_not_change_real_nodes(name):
  graph = jraph.batch_np(small_graphs(5, seed=1))
  padded = G.pad_to_buckets(graph)
  assert padded.nodes.shape[0] > graph.nodes.shape[0] and padded.senders.size > graph.senders.size
  model = registry.build(name, num_classes=3, hidden=8, heads=2)
  variables = init(model, graph)
  real = graph.nodes.shape[0]
  apply = jax.jit(model.apply)
  out, out_padded = apply(variables, graph), apply(variables, padded)
  np.testing.assert_allclose(out_padded[:real], out, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(G.node_mask(padded), np.arange(len(out_padded)) < real)


def test_bucket_ladders():
  assert [G.bucket_size(n) for n in (1, 8, 9, 16, 17, 100)] == [8, 8, 16, 16, 32, 128]
  assert [G.bucket_size(n, 1.5, 10) for n in (10, 11, 16, 23)] == [10, 15, 23, 23]
  with pytest.raises(ConfigError, match="growth=1"):
    G.bucket_size(5, growth=1)


def test_batches_are_deterministic_masked_and_compile_once_per_bucket():
  graphs = small_graphs(40)
  labels = np.arange(40) % 3
  batches = list(G.iterate_batches(graphs, 8, seed=0, epoch=0))
  again = list(G.iterate_batches(graphs, 8, seed=0, epoch=0))
  other = list(G.iterate_batches(graphs, 8, seed=0, epoch=1))
  assert all(np.array_equal(a.indices, b.indices) for a, b in zip(batches, again))
  assert not all(np.array_equal(a.indices, b.indices) for a, b in zip(batches, other))
  seen = np.concatenate([b.indices[b.graph_mask] for b in batches])
  np.testing.assert_array_equal(np.sort(seen), np.arange(40))  # every graph once
  shapes = {(b.graph.nodes.shape[0], b.graph.senders.shape[0], b.graph.n_node.shape[0])
            for b in batches + other}
  assert len(shapes) < len(batches + other)  # batches share buckets

  model = registry.build("graph_gin", num_classes=3, hidden=8, num_layers=2)
  variables = init(model, batches[0].graph)

  def nll(variables, graph, labels):
    logits = model.apply(variables, graph)
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1)[:, 0]

  @jax.jit
  @chex.assert_max_traces(n=len(shapes))
  def loss(variables, graph, labels, mask):
    return G.masked_mean(nll(variables, graph, labels), mask)

  reference = np.asarray(jax.jit(nll)(variables, jraph.batch_np(graphs), labels))  # unpadded
  chex.clear_trace_counter()
  for b in batches + other:
    value = loss(variables, b.graph, labels[np.maximum(b.indices, 0)], b.graph_mask)
    # The padding never enters the loss: it is the mean over the batch's real graphs.
    np.testing.assert_allclose(value, reference[b.indices[b.graph_mask]].mean(), rtol=1e-5)


def test_masked_mean_ignores_nonfinite_padding():
  values = jnp.array([1.0, 3.0, jnp.nan, jnp.inf])
  assert float(G.masked_mean(values, jnp.array([True, True, False, False]))) == 2.0
  assert float(G.masked_mean(values, jnp.zeros(4, bool))) == 0.0


# ---------------------------------------------------------------------------------------------
# jraph on current JAX.

def padded_example():
  graph = corner_batch()._replace(edges=np.ones((5, 2), np.float32),
                                  globals=np.ones((4, 1), np.float32))
  return jraph.pad_with_graphs(graph, 9, 8, 6)


@JIT
def test_zero_out_padding_replacements(jit):
  padded = padded_example()
  if not hasattr(jax, "tree_map"):  # the jraph originals call the removed jax.tree_map
    with pytest.raises(AttributeError, match="tree_map"):
      jraph.zero_out_padding(padded)
    with pytest.raises(AttributeError, match="tree_map"):
      jraph.with_zero_out_padding_outputs(lambda g: g)(padded)
  noisy = padded._replace(nodes=padded.nodes + 7.0, edges=padded.edges + 7.0,
                          globals=padded.globals + 7.0)
  out = maybe_jit(compat.zero_out_padding, jit)(noisy)
  np.testing.assert_array_equal(out.nodes[:6], noisy.nodes[:6])
  np.testing.assert_array_equal(out.nodes[6:], 0.0)
  np.testing.assert_array_equal(out.edges[:5], noisy.edges[:5])
  np.testing.assert_array_equal(out.edges[5:], 0.0)
  np.testing.assert_array_equal(out.globals[:4], noisy.globals[:4])
  np.testing.assert_array_equal(out.globals[4:], 0.0)
  wrapped = maybe_jit(compat.with_zero_out_padding_outputs(
      lambda g: g._replace(nodes=g.nodes + 7.0)), jit)(padded)
  np.testing.assert_array_equal(wrapped.nodes, out.nodes)


@JIT
def test_fully_connected_graph_with_features(jit):
  x, glob = jnp.arange(6.0)[:, None], jnp.ones((2, 3))
  if not hasattr(jax, "tree_leaves"):
    with pytest.raises(AttributeError, match="tree_leaves"):
      jraph.get_fully_connected_graph(3, 2, node_features=x)
  graph = maybe_jit(lambda x, g: compat.get_fully_connected_graph(3, 2, x, g, False), jit)(x, glob)
  np.testing.assert_array_equal(graph.nodes, x)
  np.testing.assert_array_equal(graph.globals, glob)
  np.testing.assert_array_equal(graph.n_edge, [6, 6])
  np.testing.assert_array_equal(G.to_adjacency(graph, 6),
                                np.kron(np.eye(2), np.ones((3, 3)) - np.eye(3)))
  with pytest.raises(ValueError, match="num_nodes_per_graph"):
    compat.get_fully_connected_graph(4, 2, node_features=x)
  with pytest.raises(ValueError, match="globals"):
    compat.get_fully_connected_graph(3, 3, node_features=jnp.zeros((9, 1)), global_features=glob)


# ---------------------------------------------------------------------------------------------
# Models.

# Node classifiers at hidden 64 on 3000 input features and 26 classes, 2 layers.
PARAM_COUNTS = {
    "gcn": 3000 * 64 + 64 + 64 * 26 + 26,
    "mlp": 3000 * 64 + 64 + 64 * 26 + 26,
    "gat": 3000 * 64 + 2 * 64 + 64 + 64 * 26 + 2 * 26 + 26,
    "sage_mean": 2 * 3000 * 64 + 64 + 2 * 64 * 26 + 26,
    "sage_maxpool": 2 * (3000 * 64 + 64) + 64 * 64 + 2 * (64 * 26 + 26) + 26 * 26,
    "sage_lstm": (4 * 3000 * 64 + 4 * (64 * 64 + 64) + 3000 * 64 + 64 + 64 * 64)
    + (4 * 64 * 26 + 4 * (26 * 26 + 26) + 64 * 26 + 26 + 26 * 26),
    "ggnn": 3000 * 64 + 64 + 64 * 64 + (6 * 64 * 64 + 4 * 64) + 64 * 26 + 26,
    "gin": 3000 * 64 + 64 + 64 * 64 + 64 + 64 * 64 + 64 + 64 * 26 + 26 + 2,
}


@pytest.mark.parametrize("name", gnn.NODE_MODELS)
def test_node_model_parameter_counts(name):
  graph = G.from_edge_list([0, 1], [1, 0], 2, nodes=np.zeros((2, 3000), np.float32))
  shapes = jax.eval_shape(registry.build(name, num_classes=26, hidden=64).init,
                          jax.random.PRNGKey(0), graph)
  assert count_params(shapes) == PARAM_COUNTS[name]


def test_models_are_pure_and_dropout_uses_the_rng():
  graph = jraph.batch_np(small_graphs(3, seed=4))
  model = registry.build("gat", num_classes=3, hidden=8, heads=2, dropout=0.5)
  variables = init(model, graph)
  train = jax.jit(lambda key: model.apply(variables, graph, deterministic=False,
                                          rngs={"dropout": key}))
  np.testing.assert_array_equal(train(jax.random.PRNGKey(1)), train(jax.random.PRNGKey(1)))
  assert not np.allclose(train(jax.random.PRNGKey(1)), train(jax.random.PRNGKey(2)))
  evaluate = jax.jit(model.apply)
  np.testing.assert_array_equal(evaluate(variables, graph), evaluate(variables, graph))
  assert not np.allclose(train(jax.random.PRNGKey(1)), evaluate(variables, graph))
  graph_model = registry.build("graph_gcn", num_classes=2, hidden=8)
  v = init(graph_model, graph)
  assert jax.jit(graph_model.apply)(v, graph).shape == (3, 2)


def test_build_rejects_unknown_names_and_arguments():
  with pytest.raises(ConfigError, match="unknown model 'gcnn'; registered node models: gat, gcn, "):
    registry.get("gcnn", family="node")
  with pytest.raises(ConfigError, match="model 'gcn' has no hyper-parameter 'hiden'; "
                                        "accepted: dropout, dtype, heads, hidden, max_neighbours, "
                                        "num_classes, num_layers$"):
    registry.build("gcn", num_classes=2, hiden=3)
  with pytest.raises(ConfigError, match=r"model 'graph_gin': model_kwargs.num_classes=None "
                                        r"\(type NoneType\) has the wrong type; accepted: an int"):
    registry.build("graph_gin", num_classes=None)
  with pytest.raises(ConfigError, match="hidden=10 must be a multiple of heads=4"):
    registry.build("gat", num_classes=2, hidden=10, heads=4).init(jax.random.PRNGKey(0),
                                                           corner_batch())
  with pytest.raises(ConfigError, match="unknown GraphSAGE aggregator 'sum'"):
    L.GraphSAGE(2, "sum").init(jax.random.PRNGKey(0), corner_batch())
