"""The contextual stochastic block model (`csbm`): procedural node
classification graphs with a chosen homophily and feature signal."""

from __future__ import annotations

import numpy as np

from dl_jax.data.graphs.containers import NodeDataset, _undirected
from dl_jax.data.graphs.splits import random_split
from dl_jax.errors import ConfigError


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
