"""Evaluating an embedding (section 5.5.2) on the host: retrieval, N-way K-shot classification and
verification by a distance threshold (eq. 5.30-5.31).

Embeddings are arrays [N, D] (raw pixels flattened work too: the pixel-space baseline), labels [N]
of any integer or string type. Retrieval and few-shot distances are Euclidean, computed in
float64; the verification functions take squared distances (eq. 5.32) as given. Everything random
is a pure function of `seed`.
"""

from collections.abc import Sequence

import numpy as np

_CHUNK = 1024  # query rows per block of distances
_EPISODE_CHUNK = 64  # episodes per vectorized block


def _as_embedding(emb, labels) -> tuple[np.ndarray, np.ndarray]:
  emb = np.asarray(emb, dtype=np.float64)
  labels = np.asarray(labels)
  if emb.ndim != 2 or labels.shape != (emb.shape[0],):
    raise ValueError(f"expected embeddings [N, D] and labels [N]; got {emb.shape} and "
                     f"{labels.shape}")
  return emb, labels


def _sq_distances(queries: np.ndarray, items: np.ndarray, items_sq: np.ndarray) -> np.ndarray:
  """||q - x||^2 for every query row and item row, clipped at 0."""
  sq = np.sum(queries * queries, axis=1)[:, None] + items_sq[None, :] - 2.0 * queries @ items.T
  return np.maximum(sq, 0.0)


def _neighbours(emb: np.ndarray, k: int) -> np.ndarray:
  """[N, k] indices of each row's k nearest other rows, nearest first (ties: lower index)."""
  n = emb.shape[0]
  if not 1 <= k <= n - 1:
    raise ValueError(f"k={k} must be between 1 and N - 1 = {n - 1}")
  items_sq = np.sum(emb * emb, axis=1)
  out = np.empty((n, k), dtype=np.int64)
  for start in range(0, n, _CHUNK):
    rows = np.arange(start, min(start + _CHUNK, n))
    sq = _sq_distances(emb[rows], emb, items_sq)
    sq[np.arange(len(rows)), rows] = np.inf  # leave one out
    part = np.argpartition(sq, k - 1, axis=1)[:, :k]
    # A tie at the k-th distance: argpartition picks arbitrarily, a stable sort by index.
    kth = np.take_along_axis(sq, part, axis=1).max(axis=1)
    tied = np.flatnonzero(np.sum(sq <= kth[:, None], axis=1) > k)
    part[tied] = np.argsort(sq[tied], axis=1, kind="stable")[:, :k]
    # Order the k by (distance, index): stable sort of the index-sorted candidates.
    part = np.sort(part, axis=1)
    order = np.argsort(np.take_along_axis(sq, part, axis=1), axis=1, kind="stable")
    out[rows] = np.take_along_axis(part, order, axis=1)
  return out


def knn_accuracy(emb, labels, k: int = 1) -> float:
  """Leave-one-out k-nearest-neighbour accuracy within one set: each item is classified by the
  majority label of its k nearest other items, a tie going to the class met first (nearest)."""
  emb, labels = _as_embedding(emb, labels)
  classes, y = np.unique(labels, return_inverse=True)
  neighbour_y = y[_neighbours(emb, k)]  # [N, k], nearest first
  n, c = neighbour_y.shape[0], len(classes)
  rows = np.repeat(np.arange(n), k)
  votes = np.zeros((n, c), dtype=np.int64)
  np.add.at(votes, (rows, neighbour_y.ravel()), 1)
  first = np.full((n, c), k, dtype=np.int64)
  np.minimum.at(first, (rows, neighbour_y.ravel()), np.tile(np.arange(k), n))
  predicted = np.argmax(votes * (k + 1) + (k - first), axis=1)
  return float(np.mean(predicted == y))


def recall_at_k(emb, labels, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
  """Retrieval Recall@k (as in Song et al. 2016): the fraction of items (each a query) with at
  least one same-class item among their k nearest other items. An item alone in its class is a
  query that always misses."""
  emb, labels = _as_embedding(emb, labels)
  ks = [int(k) for k in ks]
  neighbours = _neighbours(emb, max(ks))
  hit = labels[neighbours] == labels[:, None]  # [N, max k]
  first_hit = np.where(hit.any(axis=1), np.argmax(hit, axis=1), len(labels))
  return {k: float(np.mean(first_hit < k)) for k in ks}


def _class_table(labels: np.ndarray, min_count: int) -> tuple[np.ndarray, np.ndarray]:
  """[C, max count] item indices of each class with >= min_count items (padded), and the counts."""
  _, y, counts = np.unique(labels, return_inverse=True, return_counts=True)
  order = np.argsort(y, kind="stable")
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  eligible = np.flatnonzero(counts >= min_count)
  width = int(counts[eligible].max()) if len(eligible) else 0
  table = np.zeros((len(eligible), width), dtype=np.int64)
  for row, c in enumerate(eligible):
    table[row, :counts[c]] = order[starts[c]:starts[c] + counts[c]]
  return table, counts[eligible]


def few_shot_accuracy(emb, labels, n_way: int, k_shot: int, n_query: int, episodes: int,
                      seed: int, method: str = "nearest") -> tuple[float, float]:
  """N-way K-shot classification (section 5.5.2, one-shot learning) by distances in `emb`.

  Each episode draws n_way of the classes with at least k_shot + n_query items, then k_shot
  support and n_query query items of each, disjoint. A query is given the class of its nearest
  support item (method "nearest") or of the nearest class mean of the support items ("prototype",
  Snell et al. 2017); for k_shot = 1 both are the same. Returns the mean accuracy over episodes
  and the half-width of its 95 % confidence interval, 1.96 std / sqrt(episodes).
  """
  if method not in ("nearest", "prototype"):
    raise ValueError(f"unknown few-shot method {method!r}; accepted: nearest, prototype")
  if min(n_way, k_shot, n_query, episodes) < 1:
    raise ValueError(f"n_way={n_way}, k_shot={k_shot}, n_query={n_query}, episodes={episodes} "
                     "must all be >= 1")
  emb, labels = _as_embedding(emb, labels)
  per_class = k_shot + n_query
  table, counts = _class_table(labels, per_class)
  if len(counts) < n_way:
    raise ValueError(f"{n_way}-way episodes need {n_way} classes with >= {per_class} items; "
                     f"the labels have {len(counts)}")
  rng = np.random.default_rng(seed)
  accuracies = []
  for start in range(0, episodes, _EPISODE_CHUNK):
    e = min(_EPISODE_CHUNK, episodes - start)
    ways = np.argsort(rng.random((e, len(counts))), axis=1)[:, :n_way]  # [e, n_way] class rows
    keys = rng.random((e, n_way, table.shape[1]))
    keys[np.arange(table.shape[1]) >= counts[ways][..., None]] = np.inf  # padding never drawn
    picked = np.argpartition(keys, per_class - 1, axis=-1)[..., :per_class]
    picked = np.take_along_axis(
        picked, np.argsort(np.take_along_axis(keys, picked, axis=-1), axis=-1), axis=-1)
    items = table[ways[..., None], picked]  # [e, n_way, k_shot + n_query], a random order
    support = emb[items[..., :k_shot]]  # [e, n_way, k_shot, D]
    query = emb[items[..., k_shot:]].reshape(e, n_way * n_query, -1)
    if method == "prototype":
      support = support.mean(axis=2)  # [e, n_way, D]
      support_way = np.arange(n_way)
    else:
      support = support.reshape(e, n_way * k_shot, -1)
      support_way = np.repeat(np.arange(n_way), k_shot)
    sq = (np.sum(query * query, axis=-1)[..., None] + np.sum(support * support, axis=-1)[:, None]
          - 2.0 * query @ support.transpose(0, 2, 1))
    predicted = support_way[np.argmin(sq, axis=-1)]  # [e, n_way * n_query]
    truth = np.repeat(np.arange(n_way), n_query)
    accuracies.append(np.mean(predicted == truth, axis=1))
  accuracies = np.concatenate(accuracies)
  half_width = 1.96 * accuracies.std(ddof=1) / np.sqrt(episodes) if episodes > 1 else 0.0
  return float(accuracies.mean()), float(half_width)


def verification_pairs(labels, n_pairs: int,
                       seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(i, j, same): n_pairs index pairs, i != j, n_pairs // 2 of them same-class (i uniform over
  the items with a classmate, j uniform over its classmates) and the rest different-class (i
  uniform, j uniform over the other classes' items), shuffled; drawn with replacement."""
  labels = np.asarray(labels)
  _, y, counts = np.unique(labels, return_inverse=True, return_counts=True)
  n_same = n_pairs // 2
  n_diff = n_pairs - n_same
  if n_same and counts.max() < 2:
    raise ValueError("same-class pairs need a class with two items")
  if n_diff and len(counts) < 2:
    raise ValueError("different-class pairs need two classes")
  rng = np.random.default_rng(seed)
  order = np.argsort(y, kind="stable")  # the items of each class, contiguous
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank = np.empty_like(order)
  rank[order] = np.arange(len(order)) - starts[y[order]]  # position of each item in its class
  with_mate = np.flatnonzero(counts[y] >= 2)
  i_same = with_mate[rng.integers(0, len(with_mate), n_same)] if n_same else with_mate[:0]
  other = rng.integers(0, counts[y[i_same]] - 1)  # among the count - 1 classmates
  other = np.where(other >= rank[i_same], other + 1, other)
  j_same = order[starts[y[i_same]] + other]
  i_diff = rng.integers(0, len(labels), n_diff)
  j_diff = rng.integers(0, len(labels), n_diff)
  while np.any(clash := y[j_diff] == y[i_diff]):
    j_diff[clash] = rng.integers(0, len(labels), int(clash.sum()))
  i = np.concatenate([i_same, i_diff])
  j = np.concatenate([j_same, j_diff])
  same = np.concatenate([np.ones(n_same, bool), np.zeros(n_diff, bool)])
  shuffle = rng.permutation(n_pairs)
  return i[shuffle], j[shuffle], same[shuffle]


def _distances(sq_dist) -> np.ndarray:
  """Distances as a flat float array, float32 kept (a tau is then exact in their precision)."""
  d = np.asarray(sq_dist).ravel()
  return d.astype(np.result_type(d.dtype, np.float32) if d.dtype.kind == "f" else np.float64)


def verification_accuracy(sq_dist, same, tau: float) -> float:
  """Accuracy of deciding "same class" when d < tau (eq. 5.30) and "different" otherwise (5.31)."""
  d = _distances(sq_dist)
  return float(np.mean((d < d.dtype.type(tau)) == np.asarray(same, dtype=bool).ravel()))


def best_threshold(sq_dist, same) -> float:
  """The tau of eq. 5.30-5.31 with the highest `verification_accuracy` on these pairs.

  Every distinct cut of the sorted distances is tried; tau is the midpoint of the best gap (the
  smallest such tau on a tie), the smallest distance if calling no pair "same" is best, and just
  above the largest if calling every pair "same" is; all in the distances' precision.
  """
  d = _distances(sq_dist)
  same = np.asarray(same, dtype=bool).ravel()
  if d.shape != same.shape or not len(d):
    raise ValueError(f"expected as many distances as labels (> 0); got {d.shape}, {same.shape}")
  order = np.argsort(d, kind="stable")
  d, same = d[order], same[order]
  # Cut after position m (tau in (d[m-1], d[m]]): the first m are called "same".
  correct_same = np.concatenate([[0], np.cumsum(same)])
  correct_diff = np.concatenate([[0], np.cumsum(~same)])
  correct = correct_same + (correct_diff[-1] - correct_diff)  # [n + 1], one per m
  cuttable = np.concatenate([[True], d[1:] > d[:-1], [True]])  # no cut inside a run of ties
  m = int(np.argmax(np.where(cuttable, correct, -1)))
  if m == 0:
    return float(d[0])
  if m == len(d):
    return float(np.nextafter(d[-1], np.inf))
  lo, hi = d[m - 1], d[m]
  mid = lo + (hi - lo) / 2
  return float(mid if lo < mid else hi)
