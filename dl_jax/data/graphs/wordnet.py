"""The WordNet 3.0 noun graph (`load_wordnet`), a text-attributed stand-in for
Cora, read from Debian's wordnet-base package."""

from __future__ import annotations

import collections
import pathlib
import re

from absl import logging
import numpy as np

from dl_jax.data import fetch
from dl_jax.data.graphs.containers import (NodeDataset, _cached,
                                           _check_node_arrays, _undirected)
from dl_jax.data.graphs.splits import planetoid_split, random_split
from dl_jax.errors import ConfigError, DataError

# wordnet-base .deb (Debian bookworm, architecture all): /usr/share/wordnet.
WORDNET_DEB_VERSION = "1:3.0-37"
WORDNET_DEB_SHA256 = (
    "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752")
_WORDNET_MEMBER = "usr/share/wordnet/data.noun"

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
