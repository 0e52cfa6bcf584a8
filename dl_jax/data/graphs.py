"""Real and procedural graph datasets for chapter 6, as numpy arrays.

Node classification (section 6.5, the Cora setting): one graph, labels on some
nodes, a train/validation/test split of the nodes.

- `load_wordnet("cora")` / `load_wordnet("full")`: the WordNet 3.0 noun graph,
  a text-attributed, citation-like stand-in for Cora (which no package ships).
- `load_karate()`: Zachary's karate club (networkx).
- `csbm(...)`: a contextual stochastic block model with a chosen homophily.

Graph classification (section 6.5, the molecule setting): `load_mutag()` and
`stratified_kfold`.

Every node graph is undirected, stored with both directions of each edge
(sender j -> receiver i, messages flow from sender to receiver as in eq. 6.3),
without self loops or duplicate edges. Real data is fetched from its package on
first use, converted and cached as `<data_dir>/<name>.npz` with a `.sha256`
sidecar (`dl_jax.data.cache`); a cached file is verified on every load
and never modified.
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import re

from absl import logging
import jraph
import numpy as np

from dl_jax.data import cache, fetch
from dl_jax.errors import ConfigError, DataError

# wordnet-base .deb (Debian bookworm, architecture all): /usr/share/wordnet.
WORDNET_DEB_VERSION = "1:3.0-37"
WORDNET_DEB_SHA256 = (
    "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752")
_WORDNET_MEMBER = "usr/share/wordnet/data.noun"
# grakel 0.1.11 wheel (PyPI), CPython 3.11 manylinux x86_64; the MUTAG files
# are the same in every wheel of this version.
GRAKEL_VERSION = "0.1.11"
GRAKEL_WHEEL_SHA256 = (
    "f05f03c1ca23919bbb1e9d9132de4e1791e004cdd284a7e98d2897ac8495f0a7")
_GRAKEL_GLOB = f"grakel-{GRAKEL_VERSION}-cp311-cp311-manylinux*_x86_64.whl"
_GRAKEL_PIP_ARGS = ("--platform", "manylinux_2_28_x86_64", "--python-version",
                    "3.11", "--implementation", "cp", "--abi", "cp311")
_MUTAG_DIR = "grakel/tests/data/MUTAG"

# The 26 noun lexicographer files (supersenses), numbers 3..28 in data.noun.
NOUN_SUPERSENSES = (
    "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive",
    "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time")
_FIRST_NOUN_LEXFILE = 3
# Semantic noun-to-noun pointers kept as edges: hypernym/hyponym (also of
# instances), member/substance/part holonym and meronym, topic domain and its
# members. Left out: lexical pointers (antonym `!`, derivation `+`), region and
# usage domains (`;r -r ;u -u`: labels of place and register, not of topic) and
# every pointer to a verb, adjective or adverb.
WORDNET_POINTERS = ("@", "@i", "~", "~i", "#m", "#s", "#p", "%m", "%s", "%p",
                    ";c", "-c")
WORDNET_SIZES = ("cora", "full")
# Vocabulary size: Cora's 1433 for the subgraph; 1000 for the full graph
# (82,115 x 1000 float32 is 330 MB).
WORDNET_VOCAB_SIZE = {"cora": 1433, "full": 1000}
# The "cora" subgraph: breadth-first search from the synset physics
# (n06090869, noun.cognition) over the edges above, neighbours visited in
# increasing synset offset, nodes with more than _CORA_HUB_DEGREE neighbours
# included but not expanded, stopped when _CORA_BFS_NODES nodes are reached.
# Then, until nothing changes: drop the classes with fewer than
# _CORA_MIN_CLASS_SIZE nodes and keep the largest connected component.
_CORA_ROOT_OFFSET = 6090869
_CORA_ROOT_LEMMA = "physics"
_CORA_BFS_NODES = 3300
_CORA_HUB_DEGREE = 100
_CORA_MIN_CLASS_SIZE = 50
# Common English function words (NLTK's list, minus contractions).
STOPWORDS = frozenset("""
a about above after again against ain all am an and any are aren as at be
because been before being below between both but by can couldn could d did
didn do does doesn doing don down during each few for from further had hadn has
hasn have haven having he her here hers herself him himself his how i if in
into is isn it its itself just ll m ma me mightn more most mustn my myself
needn no nor not now o of off on once only or other our ours ourselves out over
own re s same shan she should shouldn so some such t than that the their theirs
them themselves then there these they this those through to too under until up
ve very was wasn we were weren what when where which while who whom why will
with won wouldn y you your yours yourself yourselves
""".split())
_TOKEN = re.compile(r"[a-z]+")

MUTAG_ATOMS = ("C", "N", "O", "F", "I", "Cl", "Br")
MUTAG_BONDS = ("aromatic", "single", "double", "triple")
MUTAG_CLASSES = ("non-mutagenic", "mutagenic")
KARATE_CLUBS = ("Mr. Hi", "Officer")


@dataclasses.dataclass(frozen=True, eq=False)
class NodeDataset:
  """One graph for node classification (section 6.5, the Cora task).

  Attributes:
    name: dataset name.
    features: float32 [N, F] node features.
    senders, receivers: int32 [E]; edge k is senders[k] -> receivers[k]; both
      directions of every undirected edge are present.
    labels: int32 [N] in [0, num_classes).
    train_mask, val_mask, test_mask: bool [N], disjoint.
    class_names: name of each class.
    feature_names: name of each feature column, or None.
    node_names: name of each node, or None.
  """
  name: str
  features: np.ndarray
  senders: np.ndarray
  receivers: np.ndarray
  labels: np.ndarray
  train_mask: np.ndarray
  val_mask: np.ndarray
  test_mask: np.ndarray
  class_names: tuple[str, ...]
  feature_names: tuple[str, ...] | None = None
  node_names: tuple[str, ...] | None = None

  @property
  def num_nodes(self) -> int:
    return int(self.labels.shape[0])

  @property
  def num_edges(self) -> int:
    """Directed edge rows (twice the number of undirected edges)."""
    return int(self.senders.shape[0])

  @property
  def num_features(self) -> int:
    return int(self.features.shape[1])

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def graph(self) -> jraph.GraphsTuple:
    """The whole graph as a single-graph GraphsTuple of numpy arrays."""
    return jraph.GraphsTuple(
        nodes=self.features, edges=None, senders=self.senders,
        receivers=self.receivers, globals=None,
        n_node=np.array([self.num_nodes], np.int32),
        n_edge=np.array([self.num_edges], np.int32))


@dataclasses.dataclass(frozen=True, eq=False)
class GraphDataset:
  """Many small graphs with one label each (graph classification).

  Attributes:
    name: dataset name.
    graphs: one GraphsTuple per graph (n_node, n_edge of shape [1]).
    labels: int32 [G].
    class_names: name of each class.
    node_feature_names, edge_feature_names: names of the one-hot columns.
  """
  name: str
  graphs: list[jraph.GraphsTuple]
  labels: np.ndarray
  class_names: tuple[str, ...]
  node_feature_names: tuple[str, ...] | None = None
  edge_feature_names: tuple[str, ...] | None = None

  def __len__(self) -> int:
    return len(self.graphs)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def edge_homophily(senders, receivers, labels) -> float:
  """Fraction of edges whose two ends have the same label."""
  senders, receivers = np.asarray(senders), np.asarray(receivers)
  if senders.size == 0:
    return float("nan")
  labels = np.asarray(labels)
  return float(np.mean(labels[senders] == labels[receivers]))


# ----------------------------------------------------------------- splits


def _check_labels(labels) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ConfigError(f"labels must be a 1-D integer array, got shape "
                      f"{labels.shape} dtype {labels.dtype}.")
  if labels.size and labels.min() < 0:
    raise ConfigError(f"labels must be >= 0, got {labels.min()}.")
  return labels


def planetoid_split(labels, per_class: int = 20, num_val: int = 500,
                    num_test: int = 1000, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The Planetoid split (Yang et al. 2016) used for Cora in section 6.5.

  `per_class` random nodes of each class are labelled for training; of the
  other nodes, in one random order, the first `num_val` validate and the next
  `num_test` test. Deterministic in `seed`.

  Returns:
    train_mask, val_mask, test_mask: bool [N], disjoint.

  Raises:
    ConfigError: a class has fewer than `per_class` nodes, or too few nodes
      remain for `num_val + num_test`.
  """
  labels = _check_labels(labels)
  if per_class < 1 or num_val < 0 or num_test < 0:
    raise ConfigError(f"planetoid_split needs per_class >= 1, num_val >= 0 and"
                      f" num_test >= 0; got {per_class}, {num_val}, "
                      f"{num_test}.")
  rng = np.random.default_rng(seed)
  n = labels.shape[0]
  train = np.zeros(n, bool)
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    if members.size < per_class:
      raise ConfigError(
          f"Class {c} has {members.size} nodes, fewer than per_class="
          f"{per_class}; accepted: per_class <= the smallest class size.")
    train[rng.permutation(members)[:per_class]] = True
  rest = rng.permutation(np.flatnonzero(~train))
  if rest.size < num_val + num_test:
    raise ConfigError(
        f"num_val + num_test = {num_val + num_test} but only {rest.size} nodes"
        f" are left after taking {per_class} per class; accepted: "
        f"num_val + num_test <= {rest.size}.")
  val, test = np.zeros(n, bool), np.zeros(n, bool)
  val[rest[:num_val]] = True
  test[rest[num_val:num_val + num_test]] = True
  return train, val, test


def random_split(labels, train_fraction: float = 0.6,
                 val_fraction: float = 0.2, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A stratified random split: in each class, round(fraction * size) nodes
  train, as many validate, and the rest test. Deterministic in `seed`."""
  labels = _check_labels(labels)
  if not (0 < train_fraction and 0 <= val_fraction and
          train_fraction + val_fraction < 1):
    raise ConfigError(
        f"train_fraction={train_fraction}, val_fraction={val_fraction}; "
        "accepted: train_fraction > 0, val_fraction >= 0 and their sum < 1.")
  rng = np.random.default_rng(seed)
  n = labels.shape[0]
  masks = np.zeros((3, n), bool)
  for c in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == c))
    a = int(round(train_fraction * members.size))
    b = a + int(round(val_fraction * members.size))
    masks[0, members[:a]] = True
    masks[1, members[a:b]] = True
    masks[2, members[b:]] = True
  return masks[0], masks[1], masks[2]


def stratified_kfold(labels, k: int = 10, seed: int = 0
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
  """Stratified k-fold cross-validation folds.

  The examples of each class are shuffled (deterministically from `seed`),
  the classes are laid end to end and example r of that order goes to test
  fold r mod k, so every fold holds each class in (nearly) its overall ratio
  and every example is in exactly one test fold.

  Returns:
    k pairs (train_idx, test_idx) of sorted int64 index arrays.
  """
  labels = _check_labels(labels)
  if not 2 <= k <= labels.shape[0]:
    raise ConfigError(f"k={k} folds for {labels.shape[0]} examples; accepted: "
                      f"2 <= k <= {labels.shape[0]}.")
  rng = np.random.default_rng(seed)
  order = np.concatenate([rng.permutation(np.flatnonzero(labels == c))
                          for c in np.unique(labels)])
  fold = np.empty(labels.shape[0], np.int64)
  fold[order] = np.arange(order.size) % k
  return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f))
          for f in range(k)]


# ----------------------------------------------------------------- helpers


def _undirected(a: np.ndarray, b: np.ndarray, num_nodes: int
                ) -> tuple[np.ndarray, np.ndarray]:
  """Both directions of each distinct undirected edge, no self loops, sorted
  by (receiver, sender)."""
  a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
  keep = a != b
  lo, hi = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
  key = np.unique(lo * num_nodes + hi)
  lo, hi = key // num_nodes, key % num_nodes
  senders, receivers = np.concatenate([lo, hi]), np.concatenate([hi, lo])
  order = np.lexsort((senders, receivers))
  return senders[order].astype(np.int32), receivers[order].astype(np.int32)


def _cache_path(root: pathlib.Path, name: str) -> pathlib.Path:
  return root / f"{name}.npz"


def _cached(root: pathlib.Path, name: str, build, check) -> dict[str, np.ndarray]:
  """The cached arrays `name`, built by `build(root)` and cached on first use."""
  return cache.cached(_cache_path(root, name), lambda: build(root), check)


def _check_node_arrays(arrays: dict[str, np.ndarray]) -> str | None:
  """Returns what is wrong with a cached node-classification graph, or None."""
  spec = {"feature_bits": np.uint8, "num_features": np.int64,
          "senders": np.int32, "receivers": np.int32, "labels": np.int32,
          "class_names": np.str_, "feature_names": np.str_,
          "node_names": np.str_}
  if set(arrays) != set(spec):
    return f"it holds {sorted(arrays)}, expected {sorted(spec)}"
  for key, dtype in spec.items():
    if not np.issubdtype(arrays[key].dtype, dtype):
      return f"{key} has dtype {arrays[key].dtype}, expected {np.dtype(dtype)}"
  if arrays["num_features"].shape != (1,):
    return f"num_features has shape {arrays['num_features'].shape}, expected (1,)"
  n, f = arrays["labels"].shape[0], int(arrays["num_features"][0])
  if arrays["feature_bits"].shape != (n, (f + 7) // 8):
    return (f"feature_bits has shape {arrays['feature_bits'].shape}, expected "
            f"{(n, (f + 7) // 8)}")
  if arrays["feature_names"].shape != (f,) or arrays["node_names"].shape != (n,):
    return "feature_names or node_names do not match the features"
  e = arrays["senders"].shape
  if arrays["receivers"].shape != e or (e[0] and (
      min(arrays["senders"].min(), arrays["receivers"].min()) < 0 or
      max(arrays["senders"].max(), arrays["receivers"].max()) >= n)):
    return f"the edges do not index {n} nodes"
  c = arrays["class_names"].shape[0]
  if n and (arrays["labels"].min() < 0 or arrays["labels"].max() >= c):
    return f"labels range outside [0, {c})"
  return None


# ----------------------------------------------------------------- WordNet


def _parse_data_noun(text: str):
  """Parses WordNet's data.noun (wndb(5WN) format).

  Returns:
    offsets int64 [N], lexfile int64 [N] (3..28), lemmas list[str],
    glosses list[str], and pointer arrays (source index, target index) for
    the pointer types in WORDNET_POINTERS.
  """
  offsets, lexfiles, lemmas, glosses, pointers = [], [], [], [], []
  keep = frozenset(WORDNET_POINTERS)
  for line_no, line in enumerate(text.splitlines(), 1):
    if not line or line.startswith("  "):  # licence header
      continue
    head, sep, gloss = line.partition(" | ")
    fields = head.split()
    try:
      if not sep or fields[2] != "n":
        raise ValueError("not a noun synset line")
      w_cnt = int(fields[3], 16)
      k = 4 + 2 * w_cnt
      p_cnt = int(fields[k])
      ptrs = fields[k + 1:k + 1 + 4 * p_cnt]
      if len(ptrs) != 4 * p_cnt:
        raise ValueError("truncated pointer list")
      offsets.append(int(fields[0]))
      lexfiles.append(int(fields[1]))
      lemmas.append(fields[4])
    except (IndexError, ValueError) as e:
      raise DataError(f"{_WORDNET_MEMBER} line {line_no} is not a data.noun "
                      f"synset line ({e}): {line[:80]!r}") from e
    glosses.append(gloss.strip())
    pointers.append([(int(ptrs[j + 1])) for j in range(0, len(ptrs), 4)
                     if ptrs[j] in keep and ptrs[j + 2] == "n"])
  offsets = np.array(offsets, np.int64)
  index = {int(o): i for i, o in enumerate(offsets)}
  src, dst = [], []
  for i, targets in enumerate(pointers):
    for t in targets:
      if t not in index:
        raise DataError(f"{_WORDNET_MEMBER}: synset {offsets[i]:08d} points "
                        f"to {t:08d}, which is not a noun synset.")
      src.append(i)
      dst.append(index[t])
  return (offsets, np.array(lexfiles, np.int64), lemmas, glosses,
          np.array(src, np.int64), np.array(dst, np.int64))


def _tokens(gloss: str) -> set[str]:
  return {w for w in _TOKEN.findall(gloss.lower())
          if len(w) > 1 and w not in STOPWORDS}


def _bag_of_words(glosses: list[str], vocab_size: int
                  ) -> tuple[np.ndarray, list[str]]:
  """Binary bag of words over the `vocab_size` words in most glosses.

  Tokens are maximal runs of letters a-z of the lowercased gloss (definition
  and examples), at least two letters long and not in STOPWORDS. Words are
  ranked by document frequency, ties alphabetically.
  """
  docs = [_tokens(g) for g in glosses]
  df = collections.Counter(w for d in docs for w in d)
  vocab = sorted(df, key=lambda w: (-df[w], w))[:vocab_size]
  column = {w: j for j, w in enumerate(vocab)}
  rows, cols = [], []
  for i, d in enumerate(docs):
    js = [column[w] for w in d if w in column]
    rows.extend([i] * len(js))
    cols.extend(js)
  bits = np.zeros((len(docs), len(vocab)), np.uint8)
  bits[np.array(rows, np.int64), np.array(cols, np.int64)] = 1
  return bits, vocab


def _neighbours(senders: np.ndarray, receivers: np.ndarray, n: int):
  order = np.lexsort((senders, receivers))
  indptr = np.zeros(n + 1, np.int64)
  np.cumsum(np.bincount(receivers, minlength=n), out=indptr[1:])
  return indptr, senders[order]


def _largest_component(nodes: np.ndarray, senders: np.ndarray,
                       receivers: np.ndarray, n: int) -> np.ndarray:
  """Nodes (sorted) of the largest connected component induced by `nodes`."""
  inside = np.zeros(n, bool)
  inside[nodes] = True
  keep = inside[senders] & inside[receivers]
  indptr, nbrs = _neighbours(senders[keep], receivers[keep], n)
  comp = np.full(n, -1, np.int64)
  best, best_size = -1, 0
  for start in np.sort(nodes):
    if comp[start] >= 0:
      continue
    comp[start] = start
    stack, size = [start], 0
    while stack:
      u = stack.pop()
      size += 1
      for v in nbrs[indptr[u]:indptr[u + 1]]:
        if comp[v] < 0:
          comp[v] = start
          stack.append(v)
    if size > best_size:
      best, best_size = start, size
  return np.flatnonzero(comp == best)


def _cora_nodes(offsets, lexfiles, lemmas, senders, receivers) -> np.ndarray:
  """The node set of the "cora" subgraph (see _CORA_* above), sorted."""
  n = offsets.shape[0]
  root = int(np.searchsorted(offsets, _CORA_ROOT_OFFSET))
  if root >= n or offsets[root] != _CORA_ROOT_OFFSET or (
      lemmas[root] != _CORA_ROOT_LEMMA):
    raise DataError(f"{_WORDNET_MEMBER} has no synset {_CORA_ROOT_OFFSET:08d}"
                    f" ({_CORA_ROOT_LEMMA}).")
  indptr, nbrs = _neighbours(senders, receivers, n)
  seen = np.zeros(n, bool)
  seen[root] = True
  order, queue = [root], collections.deque([root])
  while queue and len(order) < _CORA_BFS_NODES:
    u = queue.popleft()
    if u != root and indptr[u + 1] - indptr[u] > _CORA_HUB_DEGREE:
      continue
    for v in nbrs[indptr[u]:indptr[u + 1]]:  # sorted by index = offset
      if not seen[v]:
        seen[v] = True
        order.append(int(v))
        queue.append(v)
        if len(order) == _CORA_BFS_NODES:
          break
  nodes = np.sort(np.array(order, np.int64))
  while True:
    counts = np.bincount(lexfiles[nodes], minlength=lexfiles.max() + 1)
    kept = nodes[counts[lexfiles[nodes]] >= _CORA_MIN_CLASS_SIZE]
    kept = _largest_component(kept, senders, receivers, n)
    if kept.size == nodes.size:
      return nodes
    nodes = kept


def _build_wordnet(root: pathlib.Path, size: str) -> dict[str, np.ndarray]:
  logging.info("Fetching WordNet: Debian wordnet-base=%s (downloaded, not "
               "installed)", WORDNET_DEB_VERSION)
  archive = fetch.fetch_debian_archive(
      "wordnet-base", WORDNET_DEB_VERSION, WORDNET_DEB_SHA256, root)
  text = fetch.read_member(archive, _WORDNET_MEMBER).decode("latin-1")
  offsets, lexfiles, lemmas, glosses, src, dst = _parse_data_noun(text)
  n = offsets.shape[0]
  bad = (lexfiles < _FIRST_NOUN_LEXFILE) | (
      lexfiles >= _FIRST_NOUN_LEXFILE + len(NOUN_SUPERSENSES))
  if bad.any():
    raise DataError(f"{archive}:{_WORDNET_MEMBER}: synset "
                    f"{offsets[bad][0]:08d} has lexicographer file "
                    f"{lexfiles[bad][0]}, expected 3..28 for nouns.")
  senders, receivers = _undirected(src, dst, n)
  if size == "full":
    nodes = np.arange(n)
  else:
    nodes = _cora_nodes(offsets, lexfiles, lemmas, senders, receivers)
  # Relabel nodes and classes to the subgraph.
  local = np.full(n, -1, np.int64)
  local[nodes] = np.arange(nodes.size)
  keep = (local[senders] >= 0) & (local[receivers] >= 0)
  senders = local[senders[keep]].astype(np.int32)
  receivers = local[receivers[keep]].astype(np.int32)
  classes = np.unique(lexfiles[nodes])
  labels = np.searchsorted(classes, lexfiles[nodes]).astype(np.int32)
  bits, vocab = _bag_of_words([glosses[i] for i in nodes],
                              WORDNET_VOCAB_SIZE[size])
  return {
      "feature_bits": np.packbits(bits, axis=1),
      "num_features": np.array([len(vocab)], np.int64),
      "senders": senders,
      "receivers": receivers,
      "labels": labels,
      "class_names": np.array(
          [NOUN_SUPERSENSES[c - _FIRST_NOUN_LEXFILE] for c in classes]),
      "feature_names": np.array(vocab),
      "node_names": np.array([f"n{offsets[i]:08d}:{lemmas[i]}"
                              for i in nodes]),
  }


def load_wordnet(size: str = "cora", split_seed: int = 0,
                 data_dir: str | None = None) -> NodeDataset:
  """The WordNet 3.0 noun graph: a text-attributed, citation-like graph.

  Nodes are noun synsets; edges are the semantic pointers WORDNET_POINTERS
  between nouns (hypernymy, meronymy, topic domain), undirected; features are
  the binary bag of words of the gloss over a vocabulary of the most frequent
  words (`_bag_of_words`); the label is the supersense (lexicographer file,
  NOUN_SUPERSENSES). It plays the role of Cora in section 6.5: a node's
  class is to be predicted from its text and its neighbours'.

  Args:
    size: "full": all 82,115 noun synsets (26 classes, 1000 words), split
      60/20/20 per class (`random_split`). "cora": about 3,000 synsets around
      physics (construction at `_CORA_*`; 15 classes of at least 50 nodes,
      1433 words), with the Planetoid split (`planetoid_split`: 20 per class,
      500 validation, 1000 test).
    split_seed: seed of the split.
    data_dir: cache directory; default from `fetch.data_dir`.
  """
  if size not in WORDNET_SIZES:
    raise ConfigError(f"Unknown WordNet size {size!r}; accepted: "
                      f"{', '.join(WORDNET_SIZES)}.")
  root = fetch.data_dir(data_dir)
  arrays = _cached(root, f"wordnet_noun_{size}",
                   lambda r: _build_wordnet(r, size), _check_node_arrays)
  num_features = int(arrays["num_features"][0])
  features = np.unpackbits(arrays["feature_bits"], axis=1,
                           count=num_features).astype(np.float32)
  labels = arrays["labels"]
  if size == "cora":
    masks = planetoid_split(labels, seed=split_seed)
  else:
    masks = random_split(labels, seed=split_seed)
  return NodeDataset(
      name=f"wordnet_{size}", features=features, senders=arrays["senders"],
      receivers=arrays["receivers"], labels=labels, train_mask=masks[0],
      val_mask=masks[1], test_mask=masks[2],
      class_names=tuple(str(c) for c in arrays["class_names"]),
      feature_names=tuple(str(w) for w in arrays["feature_names"]),
      node_names=tuple(str(s) for s in arrays["node_names"]))


# ----------------------------------------------------------------- karate


def load_karate() -> NodeDataset:
  """Zachary's karate club (34 members, 78 friendships), from networkx.

  Features are one-hot node identities (the featureless setup of Kipf &
  Welling 2017); the label is the club each member joined after the split
  ("Mr. Hi" = 0, "Officer" = 1). Split: one labelled node per class, the two
  leaders (node 0, Mr. Hi; node 33, the officer); validation: the two
  best-connected other members of each club (nodes 1, 2, 31, 32); test: the
  remaining 28.
  """
  import networkx as nx  # pylint: disable=g-import-not-at-top
  g = nx.karate_club_graph()
  n = g.number_of_nodes()
  labels = np.array([KARATE_CLUBS.index(g.nodes[i]["club"]) for i in range(n)],
                    np.int32)
  edges = np.array(sorted(g.edges()), np.int64)
  senders, receivers = _undirected(edges[:, 0], edges[:, 1], n)
  degree = np.bincount(receivers, minlength=n)
  train = np.zeros(n, bool)
  train[[0, n - 1]] = True
  val = np.zeros(n, bool)
  for c in range(len(KARATE_CLUBS)):
    others = np.flatnonzero((labels == c) & ~train)
    val[others[np.lexsort((others, -degree[others]))[:2]]] = True
  return NodeDataset(
      name="karate", features=np.eye(n, dtype=np.float32), senders=senders,
      receivers=receivers, labels=labels, train_mask=train, val_mask=val,
      test_mask=~(train | val), class_names=KARATE_CLUBS,
      feature_names=None, node_names=tuple(str(i) for i in range(n)))


# ----------------------------------------------------------------- MUTAG


def _parse_ints(data: bytes, member: str, columns: int) -> np.ndarray:
  try:
    values = np.array(data.decode().replace(",", " ").split(), np.int64)
  except ValueError as e:
    raise DataError(f"{member} holds something other than integers: {e}"
                    ) from e
  if values.size % columns:
    raise DataError(f"{member} has {values.size} numbers, not a multiple of "
                    f"{columns} columns.")
  return values.reshape(-1, columns) if columns > 1 else values


def _build_mutag(root: pathlib.Path) -> dict[str, np.ndarray]:
  logging.info("Fetching MUTAG: grakel==%s wheel from PyPI (read, not "
               "installed)", GRAKEL_VERSION)
  archive = fetch.fetch_pypi_archive(
      "grakel", GRAKEL_VERSION, GRAKEL_WHEEL_SHA256, root,
      filename_glob=_GRAKEL_GLOB, extra_args=_GRAKEL_PIP_ARGS)
  names = {k: f"{_MUTAG_DIR}/MUTAG_{k}.txt" for k in
           ("A", "graph_indicator", "graph_labels", "node_labels",
            "edge_labels")}
  raw = fetch.read_members(archive, names.values())
  a = _parse_ints(raw[names["A"]], names["A"], 2) - 1  # 1-based node ids
  graph_of = _parse_ints(raw[names["graph_indicator"]],
                         names["graph_indicator"], 1) - 1
  graph_labels = _parse_ints(raw[names["graph_labels"]], names["graph_labels"],
                             1)
  if not np.isin(graph_labels, (-1, 1)).all():
    raise DataError(f"{archive}:{names['graph_labels']} holds "
                    f"{np.unique(graph_labels)}, expected -1 and 1.")
  return {
      "senders": a[:, 0].astype(np.int32),
      "receivers": a[:, 1].astype(np.int32),
      "node_graph": graph_of.astype(np.int32),
      "node_labels": _parse_ints(raw[names["node_labels"]],
                                 names["node_labels"], 1).astype(np.int32),
      "edge_labels": _parse_ints(raw[names["edge_labels"]],
                                 names["edge_labels"], 1).astype(np.int32),
      # TU labels: 1 = mutagenic, -1 = not.
      "graph_labels": (graph_labels == 1).astype(np.int32),
  }


def _check_mutag(arrays: dict[str, np.ndarray]) -> str | None:
  """Returns what is wrong with MUTAG's arrays, or None."""
  keys = ("senders", "receivers", "node_graph", "node_labels", "edge_labels",
          "graph_labels")
  if set(arrays) != set(keys):
    return f"it holds {sorted(arrays)}, expected {sorted(keys)}"
  if any(arrays[k].dtype != np.int32 or arrays[k].ndim != 1 for k in keys):
    return "its arrays are not all int32 vectors"
  n, e = arrays["node_graph"].size, arrays["senders"].size
  if (arrays["node_labels"].size != n or arrays["receivers"].size != e or
      arrays["edge_labels"].size != e):
    return "node or edge arrays differ in length"
  g = arrays["node_graph"]
  if g.size and (g.min() != 0 or np.any(np.diff(g) < 0) or
                 g.max() + 1 != arrays["graph_labels"].size):
    return "graph_indicator is not sorted from graph 1 to the last graph"
  ends = np.concatenate([arrays["senders"], arrays["receivers"]])
  if ends.size and (ends.min() < 0 or ends.max() >= n):
    return f"an edge names a node outside [1, {n}]"
  if e and np.any(g[arrays["senders"]] != g[arrays["receivers"]]):
    return "an edge joins two different graphs"
  for key, names in (("node_labels", MUTAG_ATOMS),
                     ("edge_labels", MUTAG_BONDS),
                     ("graph_labels", MUTAG_CLASSES)):
    v = arrays[key]
    if v.size and (v.min() < 0 or v.max() >= len(names)):
      return f"{key} range outside [0, {len(names)})"
  return None


def load_mutag(data_dir: str | None = None) -> GraphDataset:
  """MUTAG (Debnath et al. 1991): 188 nitro compounds, mutagenic or not.

  Nodes are atoms with one-hot features over MUTAG_ATOMS (7); edges are
  bonds, both directions present as in the TU files, with one-hot features
  over MUTAG_BONDS (4); the label is 1 for mutagenic (125 graphs), 0 for
  non-mutagenic (63). Graph classification, section 6.5.

  Args:
    data_dir: cache directory; default from `fetch.data_dir`.
  """
  root = fetch.data_dir(data_dir)
  arrays = _cached(root, "mutag", _build_mutag, _check_mutag)
  node_graph, labels = arrays["node_graph"], arrays["graph_labels"]
  num_graphs = labels.size
  node_start = np.searchsorted(node_graph, np.arange(num_graphs + 1))
  edge_graph = node_graph[arrays["senders"]]
  order = np.argsort(edge_graph, kind="stable")
  edge_start = np.searchsorted(edge_graph[order], np.arange(num_graphs + 1))
  atoms = np.eye(len(MUTAG_ATOMS), dtype=np.float32)[arrays["node_labels"]]
  bonds = np.eye(len(MUTAG_BONDS), dtype=np.float32)[arrays["edge_labels"]]
  graphs = []
  for i in range(num_graphs):
    n0, n1 = node_start[i], node_start[i + 1]
    rows = order[edge_start[i]:edge_start[i + 1]]
    graphs.append(jraph.GraphsTuple(
        nodes=atoms[n0:n1], edges=bonds[rows],
        senders=(arrays["senders"][rows] - n0).astype(np.int32),
        receivers=(arrays["receivers"][rows] - n0).astype(np.int32),
        globals=None, n_node=np.array([n1 - n0], np.int32),
        n_edge=np.array([rows.size], np.int32)))
  return GraphDataset(name="mutag", graphs=graphs, labels=labels,
                      class_names=MUTAG_CLASSES,
                      node_feature_names=MUTAG_ATOMS,
                      edge_feature_names=MUTAG_BONDS)


# ----------------------------------------------------------------- CSBM


def csbm(num_nodes: int = 1000, num_classes: int = 2, avg_degree: float = 5.0,
         homophily: float = 0.8, feature_dim: int = 16, signal: float = 1.0,
         seed: int = 0) -> NodeDataset:
  """A contextual stochastic block model (Deshpande et al. 2018).

  Labels: node i has class i mod num_classes, in a random order (balanced).
  Features: x_i = signal * m_{y_i} + eps_i with eps_i ~ N(0, I) and class
  means m_c drawn uniformly on the unit sphere of R^feature_dim, so `signal`
  is the distance of each mean from the origin in units of the noise
  standard deviation (0: the features say nothing about the class).
  Edges: round(num_nodes * avg_degree / 2) distinct undirected edges, each
  from a uniform random node to a uniform random node of the same class
  with probability `homophily`, else of a uniform random other class. The
  edge homophily is therefore `homophily` up to sampling noise; for balanced
  classes this is the block model with p_in / (p_in + (C - 1) p_out) =
  homophily and mean degree avg_degree. Split: `random_split` (60/20/20).

  Args:
    num_nodes: N >= 2 * num_classes.
    num_classes: C >= 2.
    avg_degree: mean degree (each undirected edge counts for both ends), in
      (0, N / 4].
    homophily: in [0, 1].
    feature_dim: F >= 1.
    signal: >= 0.
    seed: everything is a function of the seed.
  """
  if num_classes < 2 or num_nodes < 2 * num_classes:
    raise ConfigError(f"csbm needs num_classes >= 2 and num_nodes >= 2 * "
                      f"num_classes; got {num_classes} and {num_nodes}.")
  if not 0 < avg_degree <= num_nodes / 4:
    raise ConfigError(f"avg_degree={avg_degree}; accepted: 0 < avg_degree <= "
                      f"num_nodes / 4 = {num_nodes / 4}.")
  if not 0 <= homophily <= 1:
    raise ConfigError(f"homophily={homophily}; accepted: 0 <= homophily <= 1.")
  if feature_dim < 1 or signal < 0:
    raise ConfigError(f"feature_dim={feature_dim}, signal={signal}; accepted: "
                      "feature_dim >= 1 and signal >= 0.")
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(num_nodes) % num_classes).astype(np.int32)
  means = rng.normal(size=(num_classes, feature_dim))
  means /= np.linalg.norm(means, axis=1, keepdims=True)
  features = (signal * means[labels] +
              rng.normal(size=(num_nodes, feature_dim))).astype(np.float32)
  by_class = np.argsort(labels, kind="stable")
  start = np.searchsorted(labels[by_class], np.arange(num_classes))
  count = np.bincount(labels, minlength=num_classes)
  target = int(round(num_nodes * avg_degree / 2))
  keys = np.zeros(0, np.int64)
  while keys.size < target:
    m = 2 * (target - keys.size) + 64
    src = rng.integers(num_nodes, size=m)
    same = rng.random(m) < homophily
    cls = np.where(same, labels[src],
                   (labels[src] + rng.integers(1, num_classes, size=m))
                   % num_classes)
    dst = by_class[start[cls] + (rng.random(m) * count[cls]).astype(np.int64)]
    ok = src != dst
    new = (np.minimum(src, dst) * num_nodes + np.maximum(src, dst))[ok]
    both = np.concatenate([keys, new])
    _, first = np.unique(both, return_index=True)
    keys = both[np.sort(first)][:target]  # first occurrences, in draw order
  senders, receivers = _undirected(keys // num_nodes, keys % num_nodes,
                                   num_nodes)
  train, val, test = random_split(labels, seed=seed)
  return NodeDataset(
      name="csbm", features=features, senders=senders, receivers=receivers,
      labels=labels, train_mask=train, val_mask=val, test_mask=test,
      class_names=tuple(f"class {c}" for c in range(num_classes)))
