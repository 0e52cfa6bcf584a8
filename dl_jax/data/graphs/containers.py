"""Dataset containers of `dl_jax.data.graphs` and the helpers its loaders share.

`NodeDataset` is one graph with labelled nodes and a node split; `GraphDataset`
is many small graphs with one label each. Node graphs are undirected, both
directions of each edge stored (`_undirected`); real data is cached as
`<data_dir>/<name>.npz` through `dl_jax.data.cache` (`_cached`).
"""

from __future__ import annotations

import dataclasses
import pathlib

import jraph
import numpy as np

from dl_jax.data import cache


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
