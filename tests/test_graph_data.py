"""Graph datasets of chapter 6 (WordNet, karate, MUTAG, CSBM), splits and the
GraphSAGE neighbour sampler, on the real data (fetched and cached on first use)."""

import shutil

import numpy as np
import pytest

from dl_jax.data import fetch
from dl_jax.data import graphs
from dl_jax.data.graphs.mutag import _GRAKEL_GLOB
from dl_jax.errors import ConfigError, DataError
from dl_jax.graph import sampling


@pytest.fixture(scope="module")
def cora():
  return graphs.load_wordnet("cora")


@pytest.fixture(scope="module")
def full():
  return graphs.load_wordnet("full")


@pytest.fixture(scope="module")
def mutag():
  return graphs.load_mutag()


def _edge_set(senders, receivers):
  return set(zip(np.asarray(senders).tolist(), np.asarray(receivers).tolist()))


def _check_undirected_simple(d: graphs.NodeDataset):
  assert d.senders.dtype == np.int32 and d.receivers.dtype == np.int32
  edges = _edge_set(d.senders, d.receivers)
  assert len(edges) == d.num_edges, "duplicate edges"
  assert not np.any(d.senders == d.receivers), "self loops"
  assert edges == _edge_set(d.receivers, d.senders), "not symmetric"
  assert d.senders.min() >= 0 and d.receivers.max() < d.num_nodes


def _check_split(d: graphs.NodeDataset):
  masks = np.stack([d.train_mask, d.val_mask, d.test_mask])
  assert masks.dtype == bool and masks.shape == (3, d.num_nodes)
  assert masks.sum(0).max() == 1, "train/val/test overlap"


def test_wordnet_full_counts(full):
  assert full.num_nodes == 82115
  assert full.num_classes == 26
  assert full.class_names[0] == "noun.Tops" and full.class_names[-1] == (
      "noun.time")
  assert np.bincount(full.labels).min() >= 42  # noun.motive is the smallest
  assert full.features.shape == (82115, 1000)
  assert full.features.dtype == np.float32
  assert full.num_edges == 2 * 110818
  _check_undirected_simple(full)
  _check_split(full)
  # Every node has a neighbour: WordNet's nouns form one hypernym tree.
  assert np.bincount(full.receivers, minlength=full.num_nodes).min() >= 1
  assert full.node_names[0] == "n00001740:entity"
  # Hypernymy mostly stays within a supersense.
  h = graphs.edge_homophily(full.senders, full.receivers, full.labels)
  assert 0.85 < h < 0.97


def test_wordnet_cora_subgraph(cora):
  assert 2700 <= cora.num_nodes <= 3300
  assert cora.num_features == 1433 and cora.features.dtype == np.float32
  assert set(np.unique(cora.features)) == {0.0, 1.0}
  counts = np.bincount(cora.labels, minlength=cora.num_classes)
  assert cora.num_classes >= 7 and counts.min() >= 50
  assert len(set(cora.class_names)) == cora.num_classes
  assert set(cora.class_names) <= set(graphs.NOUN_SUPERSENSES)
  _check_undirected_simple(cora)
  # Citation-like: homophilous but far from pure.
  h = graphs.edge_homophily(cora.senders, cora.receivers, cora.labels)
  assert 0.7 < h < 0.92
  # Connected (built as a largest connected component).
  seen = np.zeros(cora.num_nodes, bool)
  seen[0] = True
  for _ in range(cora.num_nodes):
    grown = seen.copy()
    grown[cora.receivers[seen[cora.senders]]] = True
    if grown.sum() == seen.sum():
      break
    seen = grown
  assert seen.all()
  # The root of the construction is in it, with its gloss words.
  root = cora.node_names.index("n06090869:physics")
  words = {cora.feature_names[j] for j in np.flatnonzero(cora.features[root])}
  assert {"science", "matter", "energy"} <= words
  assert "the" not in cora.feature_names and "of" not in cora.feature_names


def test_wordnet_cora_split(cora):
  _check_split(cora)
  assert cora.train_mask.sum() == 20 * cora.num_classes
  np.testing.assert_array_equal(
      np.bincount(cora.labels[cora.train_mask]), [20] * cora.num_classes)
  assert cora.val_mask.sum() == 500 and cora.test_mask.sum() == 1000
  again = graphs.load_wordnet("cora")
  for key in ("features", "senders", "receivers", "labels", "train_mask",
              "val_mask", "test_mask"):
    np.testing.assert_array_equal(getattr(again, key), getattr(cora, key))
  other = graphs.load_wordnet("cora", split_seed=1)
  assert not np.array_equal(other.train_mask, cora.train_mask)
  np.testing.assert_array_equal(other.labels, cora.labels)


def test_graph_method(cora):
  g = cora.graph()
  assert g.nodes is cora.features
  np.testing.assert_array_equal(g.n_node, [cora.num_nodes])
  np.testing.assert_array_equal(g.n_edge, [cora.num_edges])


def test_unknown_wordnet_size_names_choices():
  with pytest.raises(ConfigError, match=r"'small'.*cora, full"):
    graphs.load_wordnet("small")


def test_karate():
  k = graphs.load_karate()
  assert k.num_nodes == 34 and k.num_edges == 2 * 78
  _check_undirected_simple(k)
  _check_split(k)
  np.testing.assert_array_equal(k.features, np.eye(34, dtype=np.float32))
  assert k.class_names == ("Mr. Hi", "Officer")
  np.testing.assert_array_equal(np.bincount(k.labels), [17, 17])
  assert k.labels[0] == 0 and k.labels[33] == 1
  np.testing.assert_array_equal(np.flatnonzero(k.train_mask), [0, 33])
  assert k.val_mask.sum() == 4 and k.test_mask.sum() == 28


def test_mutag_counts(mutag):
  assert len(mutag) == 188
  np.testing.assert_array_equal(np.bincount(mutag.labels), [63, 125])
  assert mutag.class_names == ("non-mutagenic", "mutagenic")
  assert sum(int(g.n_node[0]) for g in mutag.graphs) == 3371
  assert sum(int(g.n_edge[0]) for g in mutag.graphs) == 7442
  atom_counts = sum(g.nodes.sum(0) for g in mutag.graphs)
  np.testing.assert_array_equal(atom_counts, [2395, 345, 593, 12, 1, 23, 2])
  bond_counts = sum(g.edges.sum(0) for g in mutag.graphs)
  np.testing.assert_array_equal(bond_counts, [4708, 2008, 724, 2])
  for g in mutag.graphs:
    n, e = int(g.n_node[0]), int(g.n_edge[0])
    assert g.nodes.shape == (n, 7) and g.edges.shape == (e, 4)
    np.testing.assert_array_equal(g.nodes.sum(1), 1)
    np.testing.assert_array_equal(g.edges.sum(1), 1)
    assert g.senders.min() >= 0 and max(g.senders.max(), g.receivers.max()) < n
    assert _edge_set(g.senders, g.receivers) == _edge_set(g.receivers,
                                                          g.senders)


def test_stratified_kfold(mutag):
  folds = graphs.stratified_kfold(mutag.labels, k=10, seed=0)
  assert len(folds) == 10
  tests = np.concatenate([t for _, t in folds])
  np.testing.assert_array_equal(np.sort(tests), np.arange(188))
  for train, test in folds:
    assert np.intersect1d(train, test).size == 0
    assert train.size + test.size == 188 and test.size in (18, 19)
    positives = mutag.labels[test].sum()
    assert abs(positives - 125 / 188 * test.size) <= 1
  again = graphs.stratified_kfold(mutag.labels, k=10, seed=0)
  for (a, b), (c, d) in zip(folds, again):
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, d)
  other = graphs.stratified_kfold(mutag.labels, k=10, seed=1)
  assert not np.array_equal(other[0][1], folds[0][1])
  with pytest.raises(ConfigError, match="k=1"):
    graphs.stratified_kfold(mutag.labels, k=1)


def test_planetoid_split_refuses_small_classes():
  labels = np.array([0] * 30 + [1] * 5)
  with pytest.raises(ConfigError, match=r"Class 1 has 5 nodes"):
    graphs.planetoid_split(labels, per_class=20, num_val=0, num_test=0)
  with pytest.raises(ConfigError, match="num_val"):
    graphs.planetoid_split(labels, per_class=5, num_val=20, num_test=10)


@pytest.mark.parametrize("homophily", [0.1, 0.5, 0.9])
def test_csbm_homophily(homophily):
  d = graphs.csbm(num_nodes=2000, num_classes=4, avg_degree=6,
                  homophily=homophily, feature_dim=8, signal=2.0, seed=3)
  _check_undirected_simple(d)
  _check_split(d)
  assert d.num_edges == 2 * 6000
  np.testing.assert_array_equal(np.bincount(d.labels), [500] * 4)
  h = graphs.edge_homophily(d.senders, d.receivers, d.labels)
  assert abs(h - homophily) < 0.03
  # Class means are `signal` from the origin, noise has unit variance.
  means = np.stack([d.features[d.labels == c].mean(0) for c in range(4)])
  np.testing.assert_allclose(np.linalg.norm(means, axis=1), 2.0, atol=0.2)
  again = graphs.csbm(num_nodes=2000, num_classes=4, avg_degree=6,
                      homophily=homophily, feature_dim=8, signal=2.0, seed=3)
  np.testing.assert_array_equal(again.senders, d.senders)
  np.testing.assert_array_equal(again.features, d.features)


def test_corrupted_cache_raises_data_error(tmp_path, mutag):
  del mutag  # ensures the wheel is in the default cache
  wheel = fetch.fetch_pypi_archive(
      "grakel", graphs.GRAKEL_VERSION, graphs.GRAKEL_WHEEL_SHA256,
      fetch.data_dir(), filename_glob=_GRAKEL_GLOB)
  (tmp_path / "archives").mkdir()
  shutil.copy(wheel, tmp_path / "archives" / wheel.name)
  graphs.load_mutag(data_dir=str(tmp_path))  # builds the cache
  cache = tmp_path / "mutag.npz"
  before = (cache.stat().st_mtime_ns, cache.read_bytes())
  assert len(graphs.load_mutag(data_dir=str(tmp_path))) == 188
  assert (cache.stat().st_mtime_ns, cache.read_bytes()) == before
  data = bytearray(before[1])
  data[len(data) // 2] ^= 0xFF
  cache.write_bytes(bytes(data))
  with pytest.raises(DataError, match=str(cache)):
    graphs.load_mutag(data_dir=str(tmp_path))
  (tmp_path / "mutag.npz.sha256").unlink()
  with pytest.raises(DataError, match="mutag.npz.sha256 is missing"):
    graphs.load_mutag(data_dir=str(tmp_path))


# ----------------------------------------------------------------- sampler


def _check_sample(g, csr, seeds, edge_set):
  ids = g.nodes["node_ids"]
  real_n, real_e = int(g.n_node[0]), int(g.n_edge[0])
  np.testing.assert_array_equal(ids[:len(seeds)], seeds)
  assert g.nodes["seed_mask"].sum() == len(seeds)
  assert g.nodes["seed_mask"][:len(seeds)].all()
  np.testing.assert_array_equal(g.nodes["node_mask"],
                                np.arange(ids.size) < real_n)
  assert np.unique(ids[:real_n]).size == real_n, "a node appears twice"
  mask = g.edges["edge_mask"]
  np.testing.assert_array_equal(mask, np.arange(mask.size) < real_e)
  s, r = g.senders[:real_e], g.receivers[:real_e]
  assert s.max(initial=0) < real_n and r.max(initial=0) < real_n
  # Only real edges, neighbour -> the node that drew it, none twice.
  sampled = _edge_set(ids[s], ids[r])
  assert len(sampled) == real_e and sampled <= edge_set
  # Padding edges stay on the first padding node.
  assert (g.senders[real_e:] == real_n).all()
  assert (g.receivers[real_e:] == real_n).all()
  return s, r


def test_sampler_static_shapes_real_edges_fanouts(cora):
  csr = sampling.build_csr(cora.senders, cora.receivers, cora.num_nodes)
  edge_set = _edge_set(cora.senders, cora.receivers)
  degree = np.bincount(cora.receivers, minlength=cora.num_nodes)
  fanouts = (5, 3)
  shapes = set()
  batches = sampling.seed_batches(np.arange(cora.num_nodes), 64, seed=0,
                                  epoch=0)
  assert len(batches) == -(-cora.num_nodes // 64)
  for step, seeds in enumerate(batches[:6] + batches[-1:]):
    g = sampling.sample_subgraph(csr, seeds, fanouts, rng=(0, step),
                                 batch_size=64)
    shapes.add(tuple(np.shape(x) for x in
                     (g.senders, g.receivers, g.n_node, g.n_edge,
                      g.nodes["node_ids"], g.edges["edge_mask"])))
    s, r = _check_sample(g, csr, seeds, edge_set)
    hop = g.edges["hop"][:int(g.n_edge[0])]
    # Hop 1: each seed draws min(degree, fanout) of its neighbours.
    drawn = np.bincount(r[hop == 1], minlength=len(seeds))[:len(seeds)]
    np.testing.assert_array_equal(drawn, np.minimum(degree[seeds], 5))
    assert (r[hop == 2] >= len(seeds)).all()
    drawn2 = np.bincount(r[hop == 2], minlength=int(g.n_node[0]))
    ids = g.nodes["node_ids"]
    hop1 = np.arange(len(seeds), int(g.n_node[0]))[
        np.isin(np.arange(len(seeds), int(g.n_node[0])), s[hop == 1])]
    np.testing.assert_array_equal(drawn2[hop1],
                                  np.minimum(degree[ids[hop1]], 3))
  assert len(shapes) == 1
  assert shapes.pop()[0] == (sampling.budget(64, fanouts, csr)[1],)


def test_sampler_is_deterministic(cora):
  csr = sampling.build_csr(cora.senders, cora.receivers, cora.num_nodes)
  seeds = np.arange(0, 3000, 10)
  a = sampling.sample_subgraph(csr, seeds, (4, 4), rng=(7, 3))
  b = sampling.sample_subgraph(csr, seeds, (4, 4), rng=(7, 3))
  c = sampling.sample_subgraph(csr, seeds, (4, 4), rng=(7, 4))
  for x, y in zip(a, b):
    if isinstance(x, dict):
      for key in x:
        np.testing.assert_array_equal(x[key], y[key])
    elif x is not None:
      np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.senders, c.senders)
  d = sampling.sample_subgraph(csr, seeds, (4, 4),
                               rng=np.random.default_rng([7, 3]))
  np.testing.assert_array_equal(a.senders, d.senders)


def test_sampler_takes_all_neighbours_below_fanout():
  # A star: centre 0 with 3 leaves, and a path 4-5.
  s = np.array([1, 2, 3, 0, 0, 0, 4, 5])
  r = np.array([0, 0, 0, 1, 2, 3, 5, 4])
  csr = sampling.build_csr(s, r, 6)
  g = sampling.sample_subgraph(csr, [0, 4], (10,), rng=(0, 0))
  real_e = int(g.n_edge[0])
  got = _edge_set(g.nodes["node_ids"][g.senders[:real_e]],
                  g.nodes["node_ids"][g.receivers[:real_e]])
  assert got == {(1, 0), (2, 0), (3, 0), (5, 4)}
  assert g.senders.shape == (4,) and g.nodes["node_ids"].shape == (7,)
  g = sampling.sample_subgraph(csr, [0], (2,), rng=(0, 0))
  assert int(g.n_edge[0]) == 2 and int(g.n_node[0]) == 3


def test_sampler_budget_overflow(cora):
  csr = sampling.build_csr(cora.senders, cora.receivers, cora.num_nodes)
  seeds = np.arange(0, 3000, 10)
  edge_set = _edge_set(cora.senders, cora.receivers)
  with pytest.raises(ConfigError, match="max_nodes=301"):
    sampling.sample_subgraph(csr, seeds, (10, 10), max_nodes=301,
                             max_edges=50)
  g = sampling.sample_subgraph(csr, seeds, (10, 10), max_nodes=401,
                               max_edges=120, on_overflow="truncate")
  assert g.senders.shape == (120,) and g.nodes["node_ids"].shape == (401,)
  assert int(g.n_node[0]) <= 400 and int(g.n_edge[0]) <= 120
  _check_sample(g, csr, seeds, edge_set)
  fit = sampling.fit_budget(csr, np.arange(cora.num_nodes), 300, (10, 10),
                            num_batches=3)
  assert fit[0] <= sampling.budget(300, (10, 10), csr)[0]


def test_sampler_full_graph_batch(full):
  csr = sampling.build_csr(full.senders, full.receivers, full.num_nodes)
  seeds = sampling.seed_batches(np.flatnonzero(full.train_mask), 512, seed=0,
                                epoch=0)[0]
  max_nodes, max_edges = sampling.fit_budget(
      csr, np.flatnonzero(full.train_mask), 512, (25, 10), num_batches=4)
  g = sampling.sample_subgraph(csr, seeds, (25, 10), rng=(0, 0),
                               max_nodes=max_nodes, max_edges=max_edges,
                               on_overflow="truncate")
  assert g.senders.shape == (max_edges,)
  s, r = g.senders[:int(g.n_edge[0])], g.receivers[:int(g.n_edge[0])]
  ids = g.nodes["node_ids"]
  sample_edges = np.stack([ids[s], ids[r]], 1)
  # Real edges: each pair is in the neighbour list of its receiver.
  for a, b in sample_edges[::97]:
    assert a in csr.indices[csr.indptr[b]:csr.indptr[b + 1]]
  x = sampling.with_features(g, full.features)
  assert x.nodes.shape == (max_nodes, 1000)
  assert not x.nodes[int(g.n_node[0]):].any()


def test_sampler_rejects_bad_input(cora):
  csr = sampling.build_csr(cora.senders, cora.receivers, cora.num_nodes)
  with pytest.raises(ConfigError, match="repeated"):
    sampling.sample_subgraph(csr, [1, 1], (2,))
  with pytest.raises(ConfigError, match=str(cora.num_nodes)):
    sampling.sample_subgraph(csr, [cora.num_nodes], (2,))
  with pytest.raises(ConfigError, match="batch_size=1"):
    sampling.sample_subgraph(csr, [1, 2], (2,), batch_size=1)
  with pytest.raises(ConfigError, match="rng="):
    sampling.sample_subgraph(csr, [1, 2], (2,), rng=3)
