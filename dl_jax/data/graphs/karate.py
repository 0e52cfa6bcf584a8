"""Zachary's karate club (`load_karate`), from networkx."""

from __future__ import annotations

import numpy as np

from dl_jax.data.graphs.containers import NodeDataset, _undirected

KARATE_CLUBS = ("Mr. Hi", "Officer")


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
