"""Evaluating word embeddings (section 3.4): analogies, similarity, plots.

`analogy_accuracy` and `similarity_spearman` give the numbers gensim's
`KeyedVectors.evaluate_word_analogies` and `evaluate_word_pairs` give on the
same vectors (both case-insensitive), so models trained here and with gensim
are compared on equal terms. Vectors are numpy arrays [V, D] whose row i is
the embedding of words[i], words sorted by decreasing frequency.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Mapping, Sequence

from absl import logging
import numpy as np

from dl_jax.data.text import SEMANTIC_SECTIONS
from dl_jax.errors import ConfigError, DataError

# Word pairs drawn as arrows by `plot_projection`, as in figure 3.10.
PROJECTION_GROUPS = {
    "male - female": [("man", "woman"), ("king", "queen"),
                      ("father", "mother"), ("son", "daughter"),
                      ("brother", "sister"), ("uncle", "aunt"),
                      ("husband", "wife"), ("he", "she")],
    "country - capital": [("france", "paris"), ("germany", "berlin"),
                          ("italy", "rome"), ("spain", "madrid"),
                          ("russia", "moscow"), ("japan", "tokyo"),
                          ("china", "beijing"), ("england", "london"),
                          ("egypt", "cairo"), ("greece", "athens")],
    "verb tense": [("walking", "walked"), ("going", "went"),
                   ("taking", "took"), ("saying", "said"),
                   ("giving", "gave"), ("running", "ran")],
}

_BATCH = 512


def _check_vectors(vectors, words) -> np.ndarray:
  vectors = np.asarray(vectors)
  if vectors.dtype not in (np.float32, np.float64):
    vectors = vectors.astype(np.float32)
  if vectors.ndim != 2 or vectors.shape[0] != len(words):
    raise DataError(f"vectors have shape {vectors.shape} for {len(words)} "
                    "words; expected [len(words), dim].")
  if not np.all(np.isfinite(vectors)):
    raise DataError("vectors contain NaN or infinite values.")
  return vectors


def unit_rows(vectors) -> np.ndarray:
  """Rows scaled to unit L2 norm (zero rows stay zero)."""
  vectors = np.asarray(vectors)
  norms = np.linalg.norm(vectors, axis=1, keepdims=True)
  return vectors / np.where(norms > 0, norms, 1).astype(vectors.dtype)


def _case_insensitive_index(words: Sequence[str]) -> tuple[dict, np.ndarray]:
  """lowercase word -> its first (most frequent) id; and id -> that id."""
  index = {}
  canonical = np.empty(len(words), np.int64)
  for i, w in enumerate(words):
    canonical[i] = index.setdefault(w.lower(), i)
  return index, canonical


def _tally(correct: np.ndarray, covered: np.ndarray) -> dict:
  n_correct, n_covered = int(correct.sum()), int(covered.sum())
  return {"correct": n_correct, "covered": n_covered,
          "total": int(covered.size),
          "accuracy": n_correct / n_covered if n_covered else 0.0,
          "coverage": n_covered / covered.size if covered.size else 0.0}


def analogy_accuracy(vectors, words: Sequence[str],
                     questions: Sequence[tuple[str, str, str, str, str]],
                     restrict_vocab: int | None = 30000) -> dict:
  """Accuracy on analogy questions "a is to b as c is to d", eq. 3.14.

  The answer to (a, b, c) is the word w of the restricted vocabulary (the
  first `restrict_vocab` words) other than a, b, c that maximises
  cos(e_w, e_b - e_a + e_c) on unit-normalised embeddings (the distance L of
  eq. 3.14 is the cosine distance), as gensim's `most_similar` computes it.
  Words match case-insensitively (the most frequent casing is used); a
  question with any of its four words outside the restricted vocabulary is
  not covered and does not count.

  Args:
    vectors: float[V, D].
    words: the V words, most frequent first.
    questions: (section, a, b, c, d) tuples, see `data.text.load_analogies`.
    restrict_vocab: size of the candidate vocabulary (None: all words).

  Returns:
    Dict with accuracy (correct / covered), correct, covered, total, coverage
    (covered / total); sections: {section: the same five numbers} in question
    order; semantic and syntactic: the same over the semantic sections
    (SEMANTIC_SECTIONS) and the others; predicted: int64[total], the id of the
    answer given to each question (-1 where not covered).
  """
  vectors = _check_vectors(vectors, words)
  if restrict_vocab is not None and (
      not isinstance(restrict_vocab, (int, np.integer)) or restrict_vocab < 1):
    raise ConfigError(f"restrict_vocab={restrict_vocab!r}; use a positive "
                      "integer or None.")
  limit = len(words) if restrict_vocab is None else min(restrict_vocab,
                                                        len(words))
  index, canonical = _case_insensitive_index(list(words)[:limit])
  for q in questions:
    if len(q) != 5:
      raise DataError(f"Analogy question {q!r} is not (section, a, b, c, d).")
  quads = np.array([[index.get(w.lower(), -1) for w in q[1:]]
                    for q in questions], np.int64).reshape(-1, 4)
  covered = np.all(quads >= 0, axis=1)
  unit = unit_rows(vectors[:limit])
  predicted = np.full(len(questions), -1, np.int64)
  rows = np.flatnonzero(covered)
  for start in range(0, rows.size, _BATCH):
    batch = quads[rows[start:start + _BATCH]]
    a, b, c = batch[:, 0], batch[:, 1], batch[:, 2]
    target = unit_rows(unit[b] - unit[a] + unit[c])
    scores = target @ unit.T
    excluded = ((canonical[None, :] == a[:, None]) |
                (canonical[None, :] == b[:, None]) |
                (canonical[None, :] == c[:, None]))
    scores[excluded] = -np.inf
    predicted[rows[start:start + _BATCH]] = np.argmax(scores, axis=1)
  correct = covered & (predicted >= 0) & (
      canonical[np.maximum(predicted, 0)] == quads[:, 3])
  sections = np.array([q[0] for q in questions], dtype=object)
  result = _tally(correct, covered)
  result["sections"] = {}
  for name in dict.fromkeys(sections.tolist()):
    mask = sections == name
    result["sections"][name] = _tally(correct[mask], covered[mask])
  semantic = np.isin(sections, SEMANTIC_SECTIONS)
  result["semantic"] = _tally(correct[semantic], covered[semantic])
  result["syntactic"] = _tally(correct[~semantic], covered[~semantic])
  result["predicted"] = predicted
  return result


def nearest_neighbours(vectors, words: Sequence[str], query,
                       k: int = 10) -> list[tuple[str, float]]:
  """The k words with the highest cosine similarity to `query`.

  Args:
    vectors: float[V, D].
    words: the V words.
    query: a word (matched case-insensitively; itself excluded from the
      answer) or a vector float[D].
    k: how many neighbours.

  Returns:
    [(word, cosine similarity)], most similar first.
  """
  vectors = _check_vectors(vectors, words)
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ConfigError(f"k={k!r}; use a positive integer.")
  unit = unit_rows(vectors)
  exclude = []
  if isinstance(query, str):
    index, canonical = _case_insensitive_index(words)
    if query.lower() not in index:
      raise DataError(f"{query!r} is not in the vocabulary of {len(words)} "
                      "words.")
    query_id = index[query.lower()]
    exclude = np.flatnonzero(canonical == query_id)
    target = unit[query_id]
  else:
    target = np.asarray(query, unit.dtype)
    if target.shape != (vectors.shape[1],):
      raise DataError(f"query vector has shape {target.shape}; expected "
                      f"({vectors.shape[1]},).")
    norm = np.linalg.norm(target)
    target = target / norm if norm > 0 else target
  scores = unit @ target
  scores[exclude] = -np.inf
  k = min(k, int(np.isfinite(scores).sum()))
  top = np.argpartition(-scores, k - 1)[:k] if k else np.zeros(0, np.int64)
  top = top[np.lexsort((top, -scores[top]))]
  return [(words[i], float(scores[i])) for i in top]


def similarity_spearman(vectors, words: Sequence[str],
                        pairs: Sequence[tuple[str, str, float]],
                        restrict_vocab: int | None = None
                        ) -> tuple[float, float]:
  """Spearman correlation of cosine similarities with human judgements.

  As gensim's `evaluate_word_pairs` (case-insensitive, unknown pairs
  skipped): pairs with a word outside the (restricted) vocabulary do not
  count.

  Args:
    vectors: float[V, D].
    words: the V words.
    pairs: (word1, word2, human score), see `data.text.load_word_similarity`.
    restrict_vocab: only the first this many words count (None: all).

  Returns:
    (Spearman's rho over the covered pairs, covered / total pairs); rho is
    NaN when fewer than two pairs are covered.
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top
  vectors = _check_vectors(vectors, words)
  limit = len(words) if restrict_vocab is None else min(restrict_vocab,
                                                        len(words))
  index, _ = _case_insensitive_index(list(words)[:limit])
  unit = unit_rows(vectors[:limit])
  model, gold = [], []
  for pair in pairs:
    if len(pair) != 3:
      raise DataError(f"Word pair {pair!r} is not (word1, word2, score).")
    a, b = index.get(pair[0].lower()), index.get(pair[1].lower())
    if a is not None and b is not None:
      model.append(float(unit[a] @ unit[b]))
      gold.append(float(pair[2]))
  coverage = len(gold) / len(pairs) if pairs else 0.0
  if len(gold) < 2:
    return math.nan, coverage
  return float(stats.spearmanr(gold, model).statistic), coverage


def save_word2vec_text(path: str | os.PathLike, words: Sequence[str],
                       vectors) -> pathlib.Path:
  """Writes vectors in word2vec's text format ("V D" then "word x1 ... xD").

  The file loads with `gensim.models.KeyedVectors.load_word2vec_format(path,
  binary=False)`; values are written with 9 significant digits, exact for
  float32.
  """
  vectors = _check_vectors(vectors, words)
  for w in words:
    if not w or any(ch.isspace() for ch in w):
      raise DataError(f"Word {w!r} is empty or contains whitespace; the "
                      "word2vec text format cannot hold it.")
  path = pathlib.Path(path)
  with open(path, "w", encoding="utf-8") as f:
    f.write(f"{vectors.shape[0]} {vectors.shape[1]}\n")
    for w, row in zip(words, vectors):
      f.write(w + " " + " ".join(f"{x:.9g}" for x in row.tolist()) + "\n")
  return path


def load_word2vec_text(path: str | os.PathLike
                       ) -> tuple[list[str], np.ndarray]:
  """Reads the word2vec text format; returns (words, float32[V, D])."""
  path = pathlib.Path(path)
  try:
    with open(path, encoding="utf-8") as f:
      header = f.readline().split()
      if (len(header) != 2 or not all(h.isdigit() for h in header)):
        raise DataError(f"{path} line 1: {' '.join(header)!r} is not a "
                        "word2vec header 'num_words dim'.")
      count, dim = int(header[0]), int(header[1])
      words, vectors = [], np.empty((count, dim), np.float32)
      for number, line in enumerate(f, 2):
        if not line.strip():
          continue
        fields = line.rstrip("\n").rstrip(" ").split(" ")
        if len(words) == count or len(fields) != dim + 1:
          raise DataError(
              f"{path} line {number}: {len(fields)} fields where 'word' and "
              f"{dim} numbers are expected" +
              (f" (the header announces only {count} words)"
               if len(words) == count else "") + ".")
        try:
          vectors[len(words)] = [float(x) for x in fields[1:]]
        except ValueError as e:
          raise DataError(f"{path} line {number}: {e}.") from e
        words.append(fields[0])
  except UnicodeDecodeError as e:
    raise DataError(f"{path} is not UTF-8 text ({e}); binary word2vec files "
                    "are not supported.") from e
  except OSError as e:
    raise DataError(f"{path} cannot be read: {e.strerror or e}.") from e
  if len(words) != count:
    raise DataError(f"{path} has {len(words)} vectors; its header announces "
                    f"{count}.")
  if len(set(words)) != len(words):
    raise DataError(f"{path} lists some word twice.")
  return words, vectors


def pca_2d(points: np.ndarray) -> np.ndarray:
  """Projects rows onto their first two principal components."""
  centered = points - points.mean(axis=0, keepdims=True)
  _, _, vt = np.linalg.svd(centered, full_matrices=False)
  components = vt[:2]
  if components.shape[0] < 2:
    components = np.vstack([components, np.zeros_like(components)])[:2]
  return centered @ components.T


def plot_projection(vectors, words: Sequence[str],
                    groups: Mapping[str, Sequence[tuple[str, str]]] | None,
                    path: str | os.PathLike) -> pathlib.Path:
  """Draws word pairs as arrows in a 2-D PCA projection (figure 3.10).

  One panel per group (e.g. male - female, country - capital); each panel is
  the PCA of the unit-normalised embeddings of its words, and every pair
  (x, y) is an arrow from x to y. If the embedding has the regularities of
  section 3.4 the arrows of a panel are roughly parallel and equally long.

  Args:
    vectors: float[V, D].
    words: the V words.
    groups: {title: [(from_word, to_word), ...]}; default PROJECTION_GROUPS.
      Pairs with a word outside the vocabulary are left out.
    path: the PNG to write.

  Returns:
    The path written.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  vectors = _check_vectors(vectors, words)
  groups = PROJECTION_GROUPS if groups is None else groups
  index, _ = _case_insensitive_index(words)
  panels = {}
  for title, pairs in groups.items():
    kept = [(x, y) for x, y in pairs
            if x.lower() in index and y.lower() in index]
    missing = [p for p in pairs if p not in kept]
    if missing:
      logging.info("plot_projection %s: not in the vocabulary: %s", title,
                   missing)
    if kept:
      panels[title] = kept
  if not panels:
    raise DataError("None of the word pairs to plot is in the vocabulary.")
  unit = unit_rows(vectors)
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5),
                           squeeze=False)
  for ax, (title, pairs) in zip(axes[0], panels.items()):
    names = list(dict.fromkeys(w.lower() for pair in pairs for w in pair))
    coords = dict(zip(names, pca_2d(
        unit[[index[w] for w in names]].astype(np.float64))))
    for x, y in pairs:
      (x0, y0), (x1, y1) = coords[x.lower()], coords[y.lower()]
      ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                  arrowprops={"arrowstyle": "->", "color": "tab:blue",
                              "lw": 1})
    points = np.array(list(coords.values()))
    ax.scatter(points[:, 0], points[:, 1], s=12, color="tab:red")
    for name, (px, py) in coords.items():
      ax.annotate(name, (px, py), textcoords="offset points", xytext=(3, 3),
                  fontsize=9)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.tight_layout()
  path = pathlib.Path(path)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


NEIGHBOUR_WORDS = ("king", "war", "whale", "president", "money", "france", "sea", "good")


def evaluate_embeddings(vectors: np.ndarray, words, data_dir=None, run_dir=None) -> dict:
  """Analogies (eq. 3.14, restrict 30k), WordSim-353 / SimLex-999, neighbours, projection."""
  from dl_jax.data import text  # pylint: disable=g-import-not-at-top
  analogy = analogy_accuracy(vectors, words, text.load_analogies(data_dir), 30000)
  analogy.pop("predicted", None)
  out = {"analogy": analogy}
  for name in text.SIMILARITY_SETS:
    rho, coverage = similarity_spearman(vectors, words,
                                                 text.load_word_similarity(name, data_dir))
    out[name] = {"spearman": None if math.isnan(rho) else rho, "coverage": coverage}
  vocab = set(words)
  out["neighbours"] = {w: [[n, float(c)] for n, c in nearest_neighbours(vectors, words, w, 8)]
                       for w in NEIGHBOUR_WORDS if w in vocab}
  if run_dir is not None:
    try:
      plot_projection(vectors, words, None, run_dir / "projection.png")
    except DataError as e:  # a small corpus: the results stand without the figure
      logging.warning("no projection.png: %s", e)
  return out
