"""Splits of labelled examples: Planetoid and stratified random node splits, and
stratified k-fold cross-validation for graph classification. All are
deterministic in their seed."""

from __future__ import annotations

import numpy as np

from dl_jax.errors import ConfigError


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
