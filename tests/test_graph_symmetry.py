"""Permutation symmetry of the graph layers and models (eq. 6.1-6.2, section 6.4), through the
one checker of `dl_jax.symmetry.check`, eagerly and jitted:

- relabeling the nodes (within each graph of a batch, edges relabeled, edge order kept) commutes
  with every layer and every registered node model that declares it: exactly (atol = rtol =
  0), since every sum still adds the same terms in the same order; DeepSets' set mean and the
  read-outs sum in another order, so they get an atol that grows with the set size (float32
  rounding);
- graph read-outs and the registered graph classifiers are invariant (as they declare);
- the order the edges are stored in does not matter (exact for max aggregation, float32
  rounding for sums);
- padding does not change the real nodes' or graphs' outputs;
- the GraphSAGE-LSTM aggregator, order-dependent by design, must fail the equivariance check.
"""

import functools

import jax
import jraph
import numpy as np
import pytest

from dl_jax.graph import graphs as G
from dl_jax.graph import layers as L
from dl_jax.graph import message_passing as mp
from dl_jax.models import registry
from dl_jax.symmetry import breaking, groups
from dl_jax.symmetry import vocabulary as sym
from dl_jax.symmetry.check import check_equivariant, check_invariant

KEY = jax.random.PRNGKey(0)
JIT = pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
EPS32 = float(np.finfo(np.float32).eps)


def sum_atol(n: int, scale: float) -> float:
  """Rounding bound of a float32 sum of n terms of size <= scale summed in another order."""
  return 2 * n * EPS32 * scale


def make_batch(edge_kind: str | None = None, seed: int = 0) -> jraph.GraphsTuple:
  """A batch of 4 graphs: 7 nodes, a single node, an empty graph, 9 nodes; random directed
  edges (multi-edges and self-loops included); `edge_kind` "types" (int in [0, 3)) or
  "weights" (float) edge features."""
  rng = np.random.default_rng(seed)
  graphs = []
  for n, e in ((7, 14), (1, 0), (0, 0), (9, 20)):
    edges = None
    if edge_kind == "types":
      edges = rng.integers(0, 3, e).astype(np.int32)
    elif edge_kind == "weights":
      edges = rng.uniform(0.5, 2.0, e).astype(np.float32)
    graphs.append(G.from_edge_list(rng.integers(0, max(n, 1), e), rng.integers(0, max(n, 1), e),
                                   n, rng.standard_normal((n, 3)).astype(np.float32), edges))
  return jraph.batch_np(graphs)


def node_permutation(graph) -> groups.Permutation:
  return groups.Permutation(int(np.sum(graph.n_node)), axis=0,
                            segments=tuple(int(n) for n in graph.n_node))


def edge_permutation(graph) -> groups.EdgePermutation:
  return groups.EdgePermutation(int(np.sum(graph.n_edge)),
                                segments=tuple(int(n) for n in graph.n_edge))


def bound(module, graph):
  """x -> module(x) with random variables drawn by numpy (no compilation): N(0, 1/fan_in)
  weights and N(0, 1) biases, so that a bias breaking a symmetry cannot hide behind a zero."""
  shapes = jax.eval_shape(module.init, KEY, graph)
  rng = np.random.default_rng(1)

  def draw(path, leaf):
    value = rng.standard_normal(leaf.shape)
    if not jax.tree_util.keystr(path).endswith("['bias']"):
      value /= np.sqrt(max(1, int(np.prod(leaf.shape[:-1]))))
    return value.astype(leaf.dtype)

  variables = jax.tree_util.tree_map_with_path(draw, shapes)
  return lambda g: module.apply(variables, g)


# name -> (layer, edge features, exact under node relabeling, exact under edge reordering)
LAYERS = {
    "gcn": (lambda: L.GCN(5), None, True, False),
    "gat_concat": (lambda: L.GAT(3, num_heads=2), None, True, False),
    "gat_mean": (lambda: L.GAT(3, num_heads=2, concat=False), None, True, False),
    "sage_mean": (lambda: L.GraphSAGE(5, "mean"), None, True, False),
    "sage_maxpool": (lambda: L.GraphSAGE(5, "maxpool"), None, True, True),
    "ggnn_edge_types": (lambda: L.GatedGNN(4, 2, num_edge_types=3), "types", True, False),
    "ggnn_edge_weights": (lambda: L.GatedGNN(4, 2, edge_weights=True), "weights", True, False),
    "gin": (lambda: L.GIN(5), None, True, False),
    "mlp": (lambda: L.MLPLayer(5), None, True, True),
    "deepsets_equivariant": (lambda: L.DeepSetsEquivariant(5), None, False, True),
}


@functools.lru_cache(maxsize=None)  # one initialization per layer for all its tests
def layer_case(name):
  build, edges, exact_nodes, exact_edges = LAYERS[name]
  graph = make_batch(edges)
  return bound(build(), graph), graph, exact_nodes, exact_edges


def declaring(family: str, symmetry: str) -> list[str]:
  """The registered models of `family` that declare `symmetry`."""
  return [n for n in registry.names(family) if symmetry in registry.get(n).symmetries]


NODE_EQUIVARIANT = declaring("node", sym.PERMUTATION_EQUIVARIANT)
GRAPH_INVARIANT = declaring("graph", sym.PERMUTATION_INVARIANT)


@functools.lru_cache(maxsize=None)
def model_case(name):
  graph = make_batch()
  small = {"num_classes": 3, "hidden": 8}
  if registry.get(name).family == "node":
    small["heads"] = 2
  return bound(registry.build(name, **small), graph), graph


def test_every_declared_graph_model_symmetry_is_tested():
  for family, tested in (("node", NODE_EQUIVARIANT), ("graph", GRAPH_INVARIANT)):
    for name in registry.names(family):
      assert set(registry.get(name).symmetries) <= {sym.PERMUTATION_EQUIVARIANT,
                                                    sym.PERMUTATION_INVARIANT}, name
      assert bool(registry.get(name).symmetries) == (name in tested), name
  assert set(registry.names("node")) - set(NODE_EQUIVARIANT) == {"sage_lstm"}
  assert GRAPH_INVARIANT == registry.names("graph")


def tolerance(exact: bool, f, graph) -> float:
  if exact:
    return 0.0
  scale = float(max(np.abs(leaf).max() for leaf in jax.tree.leaves(f(graph).nodes)))
  return sum_atol(int(max(graph.n_node)), scale)


@JIT
@pytest.mark.parametrize("name", LAYERS)
def test_layers_are_node_permutation_equivariant(name, jit):
  f, graph, exact, _ = layer_case(name)
  atol = tolerance(exact, f, graph)
  report = check_equivariant(f, graph, node_permutation(graph), KEY, atol=atol, rtol=0.0,
                             n_samples=1 + jit, jit=jit)
  assert report.output_scale > 0.1, report
  if exact:
    assert report.max_abs_error == 0.0, report


@JIT
@pytest.mark.parametrize("name", LAYERS)
def test_layers_do_not_see_the_edge_order(name, jit):
  f, graph, _, exact = layer_case(name)
  atol = tolerance(exact, f, graph)
  check_equivariant(f, graph, edge_permutation(graph), KEY, atol=atol, rtol=0.0,
                    n_samples=1 + jit, jit=jit)


@pytest.mark.parametrize("name", LAYERS)
def test_padding_does_not_change_real_nodes(name):
  f, graph, _, _ = layer_case(name)
  padded = G.pad_to_buckets(graph)
  out, out_padded = jax.jit(f)(graph), jax.jit(f)(padded)
  real = graph.nodes.shape[0]
  np.testing.assert_allclose(out_padded.nodes[:real], out.nodes, rtol=1e-6, atol=1e-6)


@JIT
@pytest.mark.parametrize("name", NODE_EQUIVARIANT)
def test_node_models_are_equivariant(name, jit):
  f, graph = model_case(name)
  report = check_equivariant(f, graph, node_permutation(graph), KEY, atol=0.0, rtol=0.0,
                             n_samples=1 + jit, jit=jit)
  assert report.max_abs_error == 0.0 and report.output_scale > 0.1, report


@JIT
@pytest.mark.parametrize("name", GRAPH_INVARIANT)
def test_graph_models_are_invariant_and_ignore_padding(name, jit):
  f, graph = model_case(name)
  f = jax.jit(f) if jit else f
  out = f(graph)
  scale = float(np.abs(out).max())
  check_invariant(f, graph, node_permutation(graph), KEY, atol=sum_atol(64, scale), rtol=1e-6,
                  n_samples=1 + jit, jit=jit)
  np.testing.assert_allclose(f(G.pad_to_buckets(graph))[:4], out, rtol=1e-5, atol=1e-5)


@JIT
@pytest.mark.parametrize("n", [10, 1000])
@pytest.mark.parametrize("kind", mp.READOUTS)
def test_readouts_are_invariant_with_size_dependent_tolerance(kind, n, jit):
  x = np.random.default_rng(n).standard_normal((n, 4)).astype(np.float32) + 1.0
  graph = jraph.GraphsTuple(nodes=x, edges=None, senders=np.zeros(0, np.int32),
                            receivers=np.zeros(0, np.int32), n_node=np.array([n]),
                            n_edge=np.array([0]), globals=None)
  f = lambda g: mp.graph_readout(g, kind)
  scale = float(np.abs(x).max()) / (n if kind == "mean" else 1)
  atol = 0.0 if kind == "max" else sum_atol(n, scale)  # max is exact
  report = check_invariant(f, graph, node_permutation(graph), KEY, atol=atol, rtol=0.0,
                           n_samples=3, jit=jit)
  assert report.max_abs_error <= atol


@JIT
def test_sage_lstm_is_the_negative_control(jit):
  graph = make_batch()
  f = bound(L.GraphSAGE(5, "lstm", max_neighbours=4), graph)
  with pytest.raises(AssertionError, match="FAILED"):
    check_equivariant(f, graph, node_permutation(graph), KEY, atol=1e-4, rtol=1e-4,
                      n_samples=1 + jit, jit=jit)
  # Its order is a random ranking of node ids, not of storage: edge order does not matter.
  check_equivariant(f, graph, edge_permutation(graph), KEY, atol=0.0, rtol=0.0,
                    n_samples=1 + jit, jit=jit)
  # The registered model built on it declares no symmetry, and indeed has none.
  model, graph = model_case("sage_lstm")
  with pytest.raises(AssertionError, match="FAILED"):
    check_equivariant(model, graph, node_permutation(graph), KEY, atol=1e-4, rtol=1e-4,
                      n_samples=1 + jit, jit=jit)


# ---------------------------------------------------------------------------------------------
# The actions on a GraphsTuple.

def test_node_permutation_of_a_graphs_tuple_is_p_a_p_transpose():
  graph = make_batch("weights")
  action = node_permutation(graph)
  perm = action.sample(jax.random.PRNGKey(3))
  owner = np.repeat(np.arange(4), graph.n_node)
  np.testing.assert_array_equal(owner[np.asarray(perm)], owner)  # stays within each graph
  moved = action.act(perm, graph)
  p = np.eye(len(perm))[np.asarray(perm)]
  np.testing.assert_array_equal(moved.nodes, p @ graph.nodes)
  np.testing.assert_array_equal(G.to_adjacency(moved), p @ G.to_adjacency(graph) @ p.T)
  np.testing.assert_array_equal(moved.edges, graph.edges)  # edge order and features kept
  jitted = jax.jit(action.act)(perm, graph)
  np.testing.assert_array_equal(jitted.senders, moved.senders)


def test_edge_permutation_keeps_the_graph():
  graph = make_batch("types")
  action = edge_permutation(graph)
  perm = action.sample(jax.random.PRNGKey(4))
  moved = action.act(perm, graph)
  assert not np.array_equal(moved.senders, graph.senders)
  edge_owner = np.repeat(np.arange(4), graph.n_edge)
  np.testing.assert_array_equal(edge_owner[np.asarray(perm)], edge_owner)
  typed = lambda g: {(int(s), int(r), int(t)) for s, r, t in zip(g.senders, g.receivers,
                                                                  g.edges)}
  assert typed(moved) == typed(graph)
  np.testing.assert_array_equal(action.act(perm, graph.nodes), graph.nodes)  # nodes untouched
  with pytest.raises(ValueError, match="must sum to num_edges=5"):
    groups.EdgePermutation(5, segments=(2, 2))


def test_edge_reordering_has_a_broken_variant_that_fails():
  """The automatic broken variant of an edge reordering perturbs each stored edge's features,
  so the order-blind sum of weighted messages fails it; without edge features nothing can be
  perturbed and the broken variant passes (reported vacuous)."""
  graph = make_batch("weights")
  layer = lambda g: jax.ops.segment_sum(g.edges[:, None] * g.nodes[g.senders], g.receivers,
                                        int(np.sum(g.n_node)))
  action = edge_permutation(graph)
  check_equivariant(layer, graph, action, KEY, atol=1e-5, rtol=1e-5)
  broken = breaking.breaker_for(action, graph)
  assert broken.description.startswith("per-edge embedding")
  report = check_equivariant(broken.broken(layer), graph, action, KEY, atol=1e-5, rtol=1e-5,
                             raise_on_failure=False)
  assert not report.passed and report.max_abs_error > 1e-3
  plain = make_batch()
  assert breaking.breaker_for(edge_permutation(plain), plain).description.startswith("none")
