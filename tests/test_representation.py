"""Representation learning (section 5.5): triplet mining against brute-force enumeration, the
contrastive loss, retrieval and few-shot evaluation on embeddings with known answers, and PCA and
the linear probe against scikit-learn."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from dl_jax.representation import linear, mining, retrieval

B = 12
LABEL_PATTERNS = {
    "random": np.random.default_rng(0).integers(0, 3, B),
    "singleton": np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3]),  # class 3 has one member
    "one_class": np.zeros(B, dtype=int),
    "all_distinct": np.arange(B),
    "two_classes": np.array([0, 1] * (B // 2)),
}


def _embedding(kind: str, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  if kind == "grid":  # integer points: many exact ties d_an == d_ap and d_ap - d_an + 1 == 0
    return rng.integers(0, 2, (B, 3)).astype(np.float32)
  return rng.normal(size=(B, 4)).astype(np.float32)


def _brute_categories(sq: np.ndarray, labels: np.ndarray, margin: float) -> dict[str, np.ndarray]:
  """Eq. 5.38-5.40 over every (a, p, n), written out literally."""
  masks = {name: np.zeros((B, B, B), bool) for name in ("valid", "easy", "hard", "semihard")}
  for a, p, n in itertools.product(range(B), repeat=3):
    if a == p or labels[a] != labels[p] or labels[n] == labels[a]:
      continue
    d_ap, d_an = sq[a, p], sq[a, n]
    masks["valid"][a, p, n] = True
    masks["easy"][a, p, n] = d_ap - d_an + margin <= 0
    masks["hard"][a, p, n] = d_an < d_ap
    masks["semihard"][a, p, n] = d_ap < d_an < d_ap + margin
  return masks


def _brute_triplet_loss(sq, labels, margin, strategy) -> tuple[float, int]:
  if strategy == "batch_hard":
    losses = []
    for a in range(B):
      pos = [sq[a, p] for p in range(B) if p != a and labels[p] == labels[a]]
      neg = [sq[a, n] for n in range(B) if labels[n] != labels[a]]
      if pos and neg:
        losses.append(max(max(pos) - min(neg) + margin, 0.0))
    return (float(np.mean(losses)) if losses else 0.0), len(losses)
  cats = _brute_categories(sq, labels, margin)
  mask = cats["valid" if strategy == "all" else strategy]
  losses = [max(sq[a, p] - sq[a, n] + margin, 0.0) for a, p, n in zip(*np.nonzero(mask))]
  return (float(np.mean(losses)) if losses else 0.0), len(losses)


def test_pairwise_sq_distances_exact():
  emb = _embedding("normal")
  sq = np.asarray(mining.pairwise_sq_distances(jnp.asarray(emb)))
  brute = np.array([[np.sum((emb[i].astype(np.float64) - emb[j]) ** 2) for j in range(B)]
                    for i in range(B)])
  np.testing.assert_allclose(sq, brute, rtol=1e-6)
  assert np.all(sq >= 0) and np.all(np.diag(sq) == 0)
  # A duplicated row is at distance exactly 0, as the diagonal.
  dup = np.asarray(mining.pairwise_sq_distances(jnp.asarray(emb[[0, 0, 1]])))
  assert dup[0, 1] == 0 and dup[1, 0] == 0


@pytest.mark.parametrize("pattern", LABEL_PATTERNS)
@pytest.mark.parametrize("kind", ["normal", "grid"])
def test_categories_match_brute_force(pattern, kind):
  labels = LABEL_PATTERNS[pattern]
  margin = 1.0 if kind == "grid" else 2.0
  emb = _embedding(kind)
  sq = mining.pairwise_sq_distances(jnp.asarray(emb))
  cats = {k: np.asarray(v) for k, v in mining.triplet_categories(sq, jnp.asarray(labels),
                                                                 margin).items()}
  brute = _brute_categories(np.asarray(sq, np.float64), labels, margin)
  for name in brute:
    np.testing.assert_array_equal(cats[name], brute[name], err_msg=name)
  np.testing.assert_array_equal(np.asarray(mining.valid_triplets(jnp.asarray(labels))),
                                brute["valid"])
  if pattern in ("one_class", "all_distinct"):
    assert not brute["valid"].any()
  # The kinds are disjoint; with the ties d_an == d_ap they cover the valid triplets, and the
  # triplets with positive loss are exactly hard, semi-hard and ties.
  easy, hard, semi, valid = cats["easy"], cats["hard"], cats["semihard"], cats["valid"]
  assert not (easy & hard).any() and not (easy & semi).any() and not (hard & semi).any()
  sq = np.asarray(sq)
  ties = valid & (sq[:, :, None] == sq[:, None, :])
  np.testing.assert_array_equal(easy | hard | semi | ties, valid)
  positive_loss = valid & (sq[:, :, None] - sq[:, None, :] + margin > 0)
  np.testing.assert_array_equal(positive_loss, hard | semi | ties)


def test_category_batches_are_not_vacuous():
  """Random embeddings give every kind; grid embeddings give ties, which a non-strict lower
  bound in eq. 5.40 would wrongly call semi-hard."""
  labels = LABEL_PATTERNS["random"]
  sq = np.asarray(mining.pairwise_sq_distances(jnp.asarray(_embedding("normal"))), np.float64)
  cats = _brute_categories(sq, labels, 2.0)
  assert all(cats[k].any() for k in ("easy", "hard", "semihard"))
  sq = np.asarray(mining.pairwise_sq_distances(jnp.asarray(_embedding("grid"))), np.float64)
  cats = _brute_categories(sq, labels, 1.0)
  d_ap, d_an = sq[:, :, None], sq[:, None, :]
  wrong_semihard = cats["valid"] & (d_ap <= d_an) & (d_an < d_ap + 1.0)
  assert (wrong_semihard != cats["semihard"]).any()


@pytest.mark.parametrize("strategy", mining.STRATEGIES)
@pytest.mark.parametrize("pattern", LABEL_PATTERNS)
def test_triplet_loss_matches_brute_force(strategy, pattern):
  labels = LABEL_PATTERNS[pattern]
  emb = jnp.asarray(_embedding("normal", seed=1))
  margin = 2.0
  loss, stats = mining.triplet_loss(emb, jnp.asarray(labels), margin, strategy)
  sq = np.asarray(mining.pairwise_sq_distances(emb), np.float64)
  want, count = _brute_triplet_loss(sq, labels, margin, strategy)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5, atol=1e-6)
  assert int(stats["selected"]) == count
  cats = _brute_categories(sq, labels, margin)
  n_valid = max(cats["valid"].sum(), 1)
  for name in ("easy", "semihard", "hard"):
    np.testing.assert_allclose(float(stats[f"{name}_share"]), cats[name].sum() / n_valid)
  active = cats["valid"] & (sq[:, :, None] - sq[:, None, :] + margin > 0)
  np.testing.assert_allclose(float(stats["active_share"]), active.sum() / n_valid)
  off = ~np.eye(B, dtype=bool)
  np.testing.assert_allclose(float(stats["mean_distance"]), np.sqrt(sq[off]).mean(), rtol=1e-5)
  np.testing.assert_allclose(float(stats["collapse_ratio"]),
                             np.sqrt(sq[off]).mean() / np.sqrt(margin), rtol=1e-5)
  jitted = jax.jit(mining.triplet_loss, static_argnames="strategy")
  np.testing.assert_allclose(float(jitted(emb, jnp.asarray(labels), margin, strategy=strategy)[0]),
                             float(loss), rtol=1e-6)


@pytest.mark.parametrize("strategy", mining.STRATEGIES)
def test_triplet_loss_with_euclidean_distances_matches_brute_force(strategy):
  """distance="euclidean" (Hermans et al. 2017) is eq. 5.37 on ||f_i - f_j||: the brute force
  on the square roots; the squared version differs (the option is not ignored)."""
  labels = LABEL_PATTERNS["random"]
  emb = jnp.asarray(_embedding("normal", seed=2))
  loss, stats = mining.triplet_loss(emb, jnp.asarray(labels), 0.5, strategy, distance="euclidean")
  d = np.sqrt(np.asarray(mining.pairwise_sq_distances(emb), np.float64))
  want, count = _brute_triplet_loss(d, labels, 0.5, strategy)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5, atol=1e-6)
  assert int(stats["selected"]) == count
  off = ~np.eye(B, dtype=bool)
  np.testing.assert_allclose(float(stats["collapse_ratio"]), d[off].mean() / 0.5, rtol=1e-5)
  if strategy != "easy":
    squared = mining.triplet_loss(emb, jnp.asarray(labels), 0.5, strategy)[0]
    assert abs(float(squared) - want) > 1e-3
  with pytest.raises(ValueError, match="unknown distance 'cosine'; accepted: squared, euclidean"):
    mining.triplet_loss(emb, jnp.asarray(labels), 0.5, strategy, distance="cosine")


def test_easy_triplets_give_exactly_zero_gradient():
  """Easy triplets have zero loss (eq. 5.38) and so no gradient, also on the boundary
  d_ap - d_an + alpha == 0, which the integer grid hits for alpha = 2; the other strategies do
  move f."""
  labels = jnp.asarray(LABEL_PATTERNS["random"])
  emb = jnp.asarray(_embedding("grid"))
  sq = np.asarray(mining.pairwise_sq_distances(emb))
  valid = np.asarray(mining.valid_triplets(labels))
  assert (valid & (sq[:, :, None] - sq[:, None, :] + 2.0 == 0)).any()
  grad = jax.grad(lambda e: mining.triplet_loss(e, labels, 2.0, "easy")[0])(emb)
  assert int(mining.triplet_loss(emb, labels, 2.0, "easy")[1]["selected"]) > 0
  assert np.all(np.asarray(grad) == 0)
  for strategy in ("all", "semihard", "hard", "batch_hard"):
    grad = jax.grad(lambda e, s=strategy: mining.triplet_loss(e, labels, 2.0, s)[0])(emb)
    assert np.abs(np.asarray(grad)).max() > 0, strategy


def test_collapsed_embedding():
  """f(x) = 0 for every x: the gradients are finite, in fact exactly 0 (d ||f_i - f_j||^2 = 0 at
  f_i = f_j: the collapse is a stationary point), and the collapse ratio is 0. Every valid
  triplet is a tie d_an == d_ap with loss alpha: "all" and "batch_hard" report alpha, while hard
  and semi-hard mining select nothing and see no loss at all."""
  labels = jnp.asarray(LABEL_PATTERNS["random"])
  zeros = jnp.zeros((B, 4))
  for strategy in mining.STRATEGIES:
    loss, stats = mining.triplet_loss(zeros, labels, 0.5, strategy)
    grad = jax.grad(lambda e, s=strategy: mining.triplet_loss(e, labels, 0.5, s)[0])(zeros)
    assert np.all(np.asarray(grad) == 0), strategy
    assert float(stats["collapse_ratio"]) == 0 and float(stats["mean_distance"]) == 0
    want = 0.5 if strategy in ("all", "batch_hard") else 0.0
    assert float(loss) == want and (int(stats["selected"]) > 0) == (want > 0), strategy
  stats = mining.triplet_loss(zeros, labels, 0.5, "all")[1]
  assert float(stats["active_share"]) == 1 and float(stats["hard_share"]) == 0
  loss, stats = mining.contrastive_loss(zeros, labels, 1.0)
  grad = jax.grad(lambda e: mining.contrastive_loss(e, labels, 1.0)[0])(zeros)
  assert np.all(np.asarray(grad) == 0) and float(stats["collapse_ratio"]) == 0
  np.testing.assert_allclose(float(loss), 0.5)  # (0 + margin^2) / 2
  # Two points coincide, the rest not: still finite.
  emb = jnp.asarray(_embedding("normal")).at[1].set(jnp.asarray(_embedding("normal"))[0])
  for fn in (lambda e: mining.triplet_loss(e, labels, 0.5, "batch_hard")[1]["mean_distance"],
             lambda e: mining.contrastive_loss(e, labels, 1.0)[0]):
    assert np.all(np.isfinite(np.asarray(jax.grad(fn)(emb))))


def test_unknown_strategy():
  with pytest.raises(ValueError, match="'hardest'.*all, easy, semihard, hard, batch_hard"):
    mining.triplet_loss(jnp.zeros((B, 2)), jnp.zeros(B, int), 1.0, "hardest")


@pytest.mark.parametrize("pattern", LABEL_PATTERNS)
def test_contrastive_loss_matches_brute_force(pattern):
  labels = LABEL_PATTERNS[pattern]
  emb = jnp.asarray(_embedding("normal", seed=2))
  margin = 3.0
  loss, stats = mining.contrastive_loss(emb, jnp.asarray(labels), margin)
  e = np.asarray(emb, np.float64)
  pos, neg, all_d = [], [], []
  for i, j in itertools.combinations(range(B), 2):
    d = np.linalg.norm(e[i] - e[j])
    all_d.append(d)
    if labels[i] == labels[j]:
      pos.append((d ** 2, d))
    else:
      neg.append((max(margin - d, 0.0) ** 2, d))

  def mean(pairs, k):
    return float(np.mean([pair[k] for pair in pairs])) if pairs else 0.0

  np.testing.assert_allclose(float(loss), (mean(pos, 0) + mean(neg, 0)) / 2, rtol=1e-5)
  np.testing.assert_allclose(float(stats["pos_distance"]), mean(pos, 1), rtol=1e-5)
  np.testing.assert_allclose(float(stats["neg_distance"]), mean(neg, 1), rtol=1e-5)
  np.testing.assert_allclose(float(stats["mean_distance"]), np.mean(all_d), rtol=1e-5)
  np.testing.assert_allclose(float(stats["collapse_ratio"]), np.mean(all_d) / margin, rtol=1e-5)
  np.testing.assert_allclose(float(stats["active_share"]),
                             np.mean([x[1] < margin for x in neg]) if neg else 0.0, rtol=1e-6)


# ---- retrieval ----------------------------------------------------------------------------------

def _clusters(n_classes=10, per_class=30, dim=16, spread=1.0, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(n_classes), per_class)
  centres = rng.normal(size=(n_classes, dim)) * 100
  return (centres[labels] + spread * rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def _brute_neighbours(emb, i, k):
  d = [(np.sum((emb[i] - emb[j]) ** 2), j) for j in range(len(emb)) if j != i]
  return [j for _, j in sorted(d)[:k]]  # by distance, then index


def test_knn_and_recall_match_brute_force():
  """Integer points give distance ties and even k vote ties: both broken as documented."""
  rng = np.random.default_rng(3)
  emb = rng.integers(0, 3, (60, 2)).astype(np.float64)
  labels = rng.integers(0, 3, 60)
  for k in range(1, 7):
    correct = 0
    for i in range(len(emb)):
      near = labels[_brute_neighbours(emb, i, k)]
      votes = {c: np.sum(near == c) for c in set(near)}
      top = max(votes.values())
      correct += next(c for c in near if votes[c] == top) == labels[i]
    assert retrieval.knn_accuracy(emb, labels, k) == pytest.approx(correct / len(emb)), k
  recall = retrieval.recall_at_k(emb, labels, ks=(1, 3, 10))
  for k in (1, 3, 10):
    hits = [np.any(labels[_brute_neighbours(emb, i, k)] == labels[i]) for i in range(len(emb))]
    assert recall[k] == pytest.approx(np.mean(hits)), k


def test_separated_clusters_are_perfect():
  emb, labels = _clusters()
  assert retrieval.knn_accuracy(emb, labels, 1) == 1.0
  assert retrieval.knn_accuracy(emb, labels, 5) == 1.0
  assert retrieval.recall_at_k(emb, labels) == {1: 1.0, 5: 1.0}
  for method in ("nearest", "prototype"):
    assert retrieval.few_shot_accuracy(emb, labels, 5, 1, 5, 50, 0, method) == (1.0, 0.0)


def test_random_labels_are_at_chance():
  rng = np.random.default_rng(4)
  emb = rng.normal(size=(600, 8)).astype(np.float32)
  labels = rng.integers(0, 10, 600)
  assert abs(retrieval.knn_accuracy(emb, labels, 1) - 0.1) < 0.05
  mean, half = retrieval.few_shot_accuracy(emb, labels, 5, 1, 5, 400, seed=0)
  assert 0 < half < 0.02 and abs(mean - 0.2) < 0.03


def test_few_shot_samples_classes_uniformly():
  """Classes 2 and 3 coincide: 2-way episodes pairing them score 1/2 (the first way wins every
  tie), the other 5 of the 6 pairs score 1, so the mean accuracy is 11/12."""
  points = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [0.0, 10.0]])
  labels = np.repeat(np.arange(4), 10)
  emb = points[labels]
  mean, half = retrieval.few_shot_accuracy(emb, labels, 2, 2, 3, 2000, seed=1)
  assert abs(mean - 11 / 12) < 3 * half


def test_few_shot_is_pure_and_methods_agree_for_one_shot():
  emb, labels = _clusters(n_classes=20, per_class=12, spread=150.0)

  def run(seed, method="nearest", k_shot=1):
    return retrieval.few_shot_accuracy(emb, labels, 5, k_shot, 4, 100, seed, method)

  assert run(0) == run(0)
  assert run(0) != run(1)
  assert 0.3 < run(0)[0] < 0.95  # neither trivial nor chance, so the agreement below tells
  assert run(0, "prototype") == run(0, "nearest")
  assert run(0, "prototype", 5) != run(0, "nearest", 5)


def test_few_shot_refuses_impossible_episodes():
  emb, labels = _clusters(n_classes=3, per_class=5)
  with pytest.raises(ValueError, match="4-way"):
    retrieval.few_shot_accuracy(emb, labels, 4, 1, 1, 10, 0)
  with pytest.raises(ValueError, match="3 classes with >= 6"):
    retrieval.few_shot_accuracy(emb, labels, 3, 1, 5, 10, 0)
  with pytest.raises(ValueError, match="method"):
    retrieval.few_shot_accuracy(emb, labels, 3, 1, 1, 10, 0, "cosine")


def test_verification_pairs():
  labels = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4])  # class 2 and 4 have no classmate
  i, j, same = retrieval.verification_pairs(labels, 1001, seed=0)
  assert len(i) == 1001 and same.sum() == 500
  assert np.all(i != j)
  np.testing.assert_array_equal(labels[i] == labels[j], same)
  assert not np.isin(i[same], [5, 10]).any()
  again = retrieval.verification_pairs(labels, 1001, seed=0)
  assert all(np.array_equal(a, b) for a, b in zip((i, j, same), again))
  assert not np.array_equal(i, retrieval.verification_pairs(labels, 1001, seed=1)[0])


def test_best_threshold():
  rng = np.random.default_rng(5)
  same = rng.random(200) < 0.5
  separable = np.where(same, rng.uniform(0, 1, 200), rng.uniform(2, 3, 200))
  tau = retrieval.best_threshold(separable, same)
  assert 1 < tau < 2 and retrieval.verification_accuracy(separable, same, tau) == 1.0
  # Overlapping classes, with ties: the best over every threshold between distinct distances.
  overlap = np.round(np.where(same, rng.normal(1, 1, 200), rng.normal(2, 1, 200)), 1)
  candidates = np.concatenate([np.unique(overlap), [np.inf]])
  best = max(retrieval.verification_accuracy(overlap, same, t) for t in candidates)
  assert retrieval.verification_accuracy(overlap, same, retrieval.best_threshold(overlap,
                                                                                  same)) == best
  # Adjacent float32 distances: tau must still fall between them in float32, also for a caller
  # comparing float32 distances with it directly.
  one = np.float32(1)
  tight = np.array([one, one, np.nextafter(one, np.float32(2))], np.float32)
  labels = np.array([True, True, False])
  tau = retrieval.best_threshold(tight, labels)
  assert retrieval.verification_accuracy(tight, labels, tau) == 1.0
  np.testing.assert_array_equal(tight < tau, labels)
  np.testing.assert_array_equal(jnp.asarray(tight) < tau, labels)
  everything_same = retrieval.best_threshold(tight, np.ones(3, bool))
  assert retrieval.verification_accuracy(tight, np.ones(3, bool), everything_same) == 1.0


# ---- linear baselines ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape,rank,k", [((200, 30), None, 8), ((100, 40), 5, 5),
                                          ((20, 50), None, 10)])
def test_pca_matches_scikit_learn(shape, rank, k):
  rng = np.random.default_rng(6)
  if rank is None:
    x = rng.normal(size=shape) * rng.uniform(0.1, 3, shape[1]) + rng.normal(size=shape[1])
  else:
    x = rng.normal(size=(shape[0], rank)) @ rng.normal(size=(rank, shape[1])) + 5.0
  mean, components, variance = linear.pca_fit(x, k)
  ref = PCA(n_components=k, svd_solver="full").fit(x)
  np.testing.assert_allclose(mean, ref.mean_, atol=1e-12)
  np.testing.assert_allclose(variance, ref.explained_variance_, rtol=1e-8)
  signs = np.sign(np.sum(components * ref.components_, axis=1))
  np.testing.assert_allclose(components * signs[:, None], ref.components_, atol=1e-8)
  np.testing.assert_allclose(components @ components.T, np.eye(k), atol=1e-12)
  codes = linear.pca_encode(x, mean, components)
  reconstruction = linear.pca_reconstruct(codes, mean, components)
  np.testing.assert_allclose(reconstruction, ref.inverse_transform(ref.transform(x)), atol=1e-8)
  if rank is not None:  # rank-k data is reconstructed exactly from k components
    np.testing.assert_allclose(reconstruction, x, atol=1e-9)


def test_linear_probe_matches_scikit_learn():
  x, y = load_digits(return_X_y=True)
  order = np.random.default_rng(7).permutation(len(y))
  x, y = x[order], y[order]
  train_x, train_y, test_x, test_y = x[:1000], y[:1000], x[1000:], y[1000:]
  mean, std = train_x.mean(0), train_x.std(0)
  std[std == 0] = 1
  optimum = {}
  for l2 in (1e-3, 1e-1):
    probe = linear.linear_probe(train_x, train_y, test_x, test_y, 10, l2=l2, tol=1e-6)
    ref = LogisticRegression(C=1 / (l2 * len(train_y)), max_iter=5000, tol=1e-8)
    ref.fit((train_x - mean) / std, train_y)
    assert abs(probe["test_accuracy"] - ref.score((test_x - mean) / std, test_y)) <= 0.01
    assert abs(probe["train_accuracy"] - ref.score((train_x - mean) / std, train_y)) <= 0.01
    logits = (train_x - mean) / std @ ref.coef_.T + ref.intercept_
    log_p = logits - np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1,
                                   keepdims=True)) - logits.max(1, keepdims=True)
    optimum[l2] = -log_p[np.arange(len(train_y)), train_y].mean() + l2 / 2 * np.sum(ref.coef_ ** 2)
    assert probe["objective"] == pytest.approx(optimum[l2], rel=1e-3)
  capped = linear.linear_probe(train_x, train_y, test_x, test_y, 10, l2=1e-3, steps=3)
  assert capped["steps"] == 3 and capped["objective"] > 1.5 * optimum[1e-3]
