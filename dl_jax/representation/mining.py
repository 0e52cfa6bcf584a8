"""Metric-learning losses of section 5.5.2 on a batch of embeddings f(x) [B, D] with labels [B].

Distances are the squared Euclidean d(x_i, x_j) = ||f(x_i) - f(x_j)||^2 of eq. 5.32 (the triplet
loss can also take the Euclidean distance, as Hermans et al. 2017 do). Every
function here is jittable for a fixed batch shape (`strategy` is static) and its gradient is finite
everywhere, including at the collapsed embedding f(x) = const the notes warn about.
"""

import jax
import jax.numpy as jnp

STRATEGIES = ("all", "easy", "semihard", "hard", "batch_hard")
DISTANCES = ("squared", "euclidean")  # d of eq. 5.37: ||.||^2 as in the notes, or ||.||


def pairwise_sq_distances(emb: jax.Array) -> jax.Array:
  """[B, D] -> [B, B] of ||f_i - f_j||^2 (eq. 5.32), from the differences themselves.

  Unlike the |f_i|^2 + |f_j|^2 - 2 f_i.f_j expansion, this is never negative, exactly 0 on the
  diagonal and for coinciding embeddings, and its gradient 2 (f_i - f_j) is finite everywhere;
  the price is a [B, B, D] intermediate.
  """
  diff = emb[:, None, :] - emb[None, :, :]
  return jnp.sum(diff * diff, axis=-1)


def _safe_sqrt(sq: jax.Array) -> jax.Array:
  """sqrt with gradient 0 (not inf) at 0: the Euclidean distance of coinciding points."""
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _ratio(num: jax.Array, den: jax.Array) -> jax.Array:
  """num / den, 0 where den == 0 (an empty selection)."""
  return num / jnp.maximum(den, 1)


def _mean_distance(sq: jax.Array) -> jax.Array:
  """Mean Euclidean distance over the B (B - 1) ordered pairs i != j."""
  b = sq.shape[0]
  off_diagonal = ~jnp.eye(b, dtype=bool)
  return _ratio(jnp.sum(jnp.where(off_diagonal, _safe_sqrt(sq), 0.0)), b * (b - 1))


def valid_triplets(labels: jax.Array) -> jax.Array:
  """bool [B, B, B] indexed [a, p, n]: a != p, y_a == y_p and y_n != y_a (the triplets of 5.37)."""
  same = labels[:, None] == labels[None, :]
  positive = same & ~jnp.eye(labels.shape[0], dtype=bool)
  return positive[:, :, None] & ~same[:, None, :]


def _triplet_margins(sq_dist: jax.Array, margin) -> jax.Array:
  """[a, p, n] -> d_ap - d_an + alpha, the argument of the max in eq. 5.37."""
  return sq_dist[:, :, None] - sq_dist[:, None, :] + margin


def triplet_categories(sq_dist: jax.Array, labels: jax.Array, margin) -> dict[str, jax.Array]:
  """bool [B, B, B] masks of the valid triplets of each kind of section 5.5.2.

  "easy": zero loss, d_ap - d_an + alpha <= 0 (eq. 5.38); "hard": d_an < d_ap (eq. 5.39);
  "semihard": d_ap < d_an and positive loss, i.e. d_an < d_ap + alpha (eq. 5.40); "valid": all.
  For alpha > 0 the three are disjoint, and with the ties d_an == d_ap (positive loss alpha,
  neither strict inequality) they cover the valid triplets: the triplets with positive loss are
  exactly the hard, the semi-hard and the ties. The upper bound of 5.40 is tested on the loss
  argument itself, so that "easy" and "semihard" never overlap through rounding.
  """
  valid = valid_triplets(labels)
  d_ap = sq_dist[:, :, None]
  d_an = sq_dist[:, None, :]
  active = _triplet_margins(sq_dist, margin) > 0
  return {
      "easy": valid & ~active,
      "hard": valid & (d_an < d_ap),
      "semihard": valid & (d_ap < d_an) & active,
      "valid": valid,
  }


def _batch_hard(sq_dist: jax.Array, labels: jax.Array, margin) -> tuple[jax.Array, jax.Array]:
  """Per anchor: max(farthest positive - nearest negative + alpha, 0), and who has both."""
  same = labels[:, None] == labels[None, :]
  positive = same & ~jnp.eye(labels.shape[0], dtype=bool)
  negative = ~same
  has_both = jnp.any(positive, axis=1) & jnp.any(negative, axis=1)
  hardest_pos = jnp.max(jnp.where(positive, sq_dist, 0.0), axis=1)
  nearest_neg = jnp.min(jnp.where(negative, sq_dist, jnp.inf), axis=1)
  nearest_neg = jnp.where(has_both, nearest_neg, 0.0)
  loss = jax.nn.relu(hardest_pos - nearest_neg + margin)
  return jnp.where(has_both, loss, 0.0), has_both


def triplet_loss(emb: jax.Array, labels: jax.Array, margin: float, strategy: str,
                 distance: str = "squared") -> tuple[jax.Array, dict[str, jax.Array]]:
  """Triplet loss max(d_ap - d_an + alpha, 0) (eq. 5.37) over the triplets a strategy selects.

  d is the squared distance of eq. 5.37 (`distance="squared"`) or the Euclidean distance
  ||f_i - f_j|| that Hermans et al. (2017) use (`"euclidean"`, alpha then a distance); the
  categories of eq. 5.38-5.40 are taken in the same d.

  strategy: "all" averages over every valid triplet of the batch, zeros included; "easy",
  "semihard", "hard" over the valid triplets of that category (`triplet_categories`; the loss is 0
  when there are none). "easy" triplets have zero loss by definition (eq. 5.38), so that strategy
  gives exactly zero gradient. "batch_hard" (Hermans, Beyer and Leibe 2017) takes, for each
  anchor with a positive and a negative in the batch, its farthest positive and its nearest
  negative, and averages over those anchors.

  Returns (loss, stats), stats scalars for logging: "active_share" (valid triplets with positive
  loss, whatever the strategy), "selected" (the number of triplets, or of anchors for
  "batch_hard", averaged over), "easy_share", "semihard_share", "hard_share" (of the valid
  triplets), "mean_distance" (Euclidean, over pairs i != j) and "collapse_ratio" =
  mean_distance / sqrt(alpha) (/ alpha for the Euclidean d): the scale at which triplets
  separate. A ratio near 0 means the embedding has collapsed to a point, f(x) = const, where every
  valid triplet has loss alpha; a ratio well above 1 means the batch is spread out on the margin's
  scale.
  """
  if strategy not in STRATEGIES:
    raise ValueError(f"unknown triplet strategy {strategy!r}; accepted: {', '.join(STRATEGIES)}")
  if distance not in DISTANCES:
    raise ValueError(f"unknown distance {distance!r}; accepted: {', '.join(DISTANCES)}")
  sq = pairwise_sq_distances(emb)
  d = sq if distance == "squared" else _safe_sqrt(sq)
  cats = triplet_categories(d, labels, margin)
  losses = jax.nn.relu(_triplet_margins(d, margin))  # relu: gradient 0 at the easy boundary
  valid = cats["valid"]
  n_valid = jnp.sum(valid)
  if strategy == "batch_hard":
    per_anchor, has_both = _batch_hard(d, labels, margin)
    selected = jnp.sum(has_both)
    loss = _ratio(jnp.sum(per_anchor), selected)
  else:
    mask = valid if strategy == "all" else cats[strategy]
    selected = jnp.sum(mask)
    loss = _ratio(jnp.sum(jnp.where(mask, losses, 0.0)), selected)
  mean_distance = _mean_distance(sq)
  stats = {
      "active_share": _ratio(jnp.sum(valid & (losses > 0)), n_valid),
      "selected": selected,
      "easy_share": _ratio(jnp.sum(cats["easy"]), n_valid),
      "semihard_share": _ratio(jnp.sum(cats["semihard"]), n_valid),
      "hard_share": _ratio(jnp.sum(cats["hard"]), n_valid),
      "mean_distance": mean_distance,
      "collapse_ratio": mean_distance / (jnp.sqrt(margin) if distance == "squared" else margin),
  }
  return loss, stats


def contrastive_loss(emb: jax.Array, labels: jax.Array,
                     margin: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Siamese contrastive loss (Hadsell, Chopra and LeCun 2006) over the pairs i < j of a batch.

  With d = ||f_i - f_j|| (the square root of eq. 5.32), a same-class pair costs d^2 and a
  different-class pair max(m - d, 0)^2, pushing it to at least the margin m (a distance, not a
  squared one). loss = (mean over same-class pairs + mean over different-class pairs) / 2: the 1/2
  of Hadsell et al., with each kind averaged on its own so that the many negative pairs of a batch
  do not outweigh the few positive ones; a kind absent from the batch contributes 0. The gradient
  of d at coinciding points is taken as 0, so it is finite everywhere.

  Stats: "pos_distance", "neg_distance" (mean d over same- and different-class pairs),
  "mean_distance" (over all pairs), "active_share" (different-class pairs closer than m) and
  "collapse_ratio" = mean_distance / m, near 0 when f(x) = const.
  """
  b = labels.shape[0]
  sq = pairwise_sq_distances(emb)
  d = _safe_sqrt(sq)
  upper = jnp.triu(jnp.ones((b, b), dtype=bool), k=1)
  same = labels[:, None] == labels[None, :]
  pos = upper & same
  neg = upper & ~same
  n_pos, n_neg = jnp.sum(pos), jnp.sum(neg)
  hinge = jax.nn.relu(margin - d)
  pos_term = _ratio(jnp.sum(jnp.where(pos, sq, 0.0)), n_pos)
  neg_term = _ratio(jnp.sum(jnp.where(neg, hinge * hinge, 0.0)), n_neg)
  mean_distance = _ratio(jnp.sum(jnp.where(upper, d, 0.0)), b * (b - 1) // 2)
  stats = {
      "pos_distance": _ratio(jnp.sum(jnp.where(pos, d, 0.0)), n_pos),
      "neg_distance": _ratio(jnp.sum(jnp.where(neg, d, 0.0)), n_neg),
      "mean_distance": mean_distance,
      "active_share": _ratio(jnp.sum(neg & (hinge > 0)), n_neg),
      "collapse_ratio": mean_distance / margin,
  }
  return (pos_term + neg_term) / 2, stats
