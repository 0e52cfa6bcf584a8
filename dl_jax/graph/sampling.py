"""GraphSAGE neighbour sampling for mini-batches on a large graph (section 6.5.1).

Hamilton et al. (2017) train on graphs too big for full-batch message passing
by computing each mini-batch of "seed" nodes on a sampled neighbourhood: every
seed draws at most `fanouts[0]` of its neighbours, every newly reached node draws
at most `fanouts[1]` of its own, and so on (sampling without replacement; a node
with fewer neighbours than the fanout keeps them all). Message passing (eq. 6.3)
then runs on the union of the sampled edges, each directed from the sampled
neighbour to the node that drew it.

The sample is a padded `jraph.GraphsTuple` of numpy arrays whose shapes depend
only on the batch size and the fanouts (`budget`), so a jitted step compiles
once. Its first graph holds the real nodes and edges, the seeds first; the
second is a padding graph (the `jraph.pad_with_graphs` convention) holding the
padding nodes and the padding edges, which join padding node to padding node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jraph
import numpy as np

from dl_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True, eq=False)
class CSR:
  """In-neighbour lists: the neighbours of node i are
  indices[indptr[i]:indptr[i + 1]], the senders of the edges j -> i, sorted."""
  indptr: np.ndarray  # int64 [N + 1]
  indices: np.ndarray  # int32 [E]

  @property
  def num_nodes(self) -> int:
    return int(self.indptr.shape[0] - 1)

  @property
  def degree(self) -> np.ndarray:
    return np.diff(self.indptr)


def build_csr(senders, receivers, num_nodes: int) -> CSR:
  """The in-neighbour lists of a graph given as edges senders[k] -> receivers[k].

  For an undirected graph stored with both directions (as `dl_jax.data.graphs`
  does) these are simply the neighbours.
  """
  senders = np.asarray(senders, np.int64)
  receivers = np.asarray(receivers, np.int64)
  if senders.shape != receivers.shape or senders.ndim != 1:
    raise ConfigError(f"senders and receivers must be 1-D arrays of one length;"
                      f" got shapes {senders.shape} and {receivers.shape}.")
  if senders.size and (min(senders.min(), receivers.min()) < 0 or
                       max(senders.max(), receivers.max()) >= num_nodes):
    raise ConfigError(f"An edge names a node outside [0, {num_nodes}).")
  order = np.lexsort((senders, receivers))
  indptr = np.zeros(num_nodes + 1, np.int64)
  np.cumsum(np.bincount(receivers, minlength=num_nodes), out=indptr[1:])
  return CSR(indptr=indptr, indices=senders[order].astype(np.int32))


def budget(num_seeds: int, fanouts: Sequence[int], csr: CSR | None = None
           ) -> tuple[int, int]:
  """(max_nodes, max_edges) that no sample of `num_seeds` seeds can exceed.

  Without `csr`: num_seeds * (1 + f1 + f1 f2 + ...) nodes and one edge per
  node beyond the seeds. With `csr`, the bound follows the degrees: at hop k
  the frontier has at most m_k nodes (m_1 = num_seeds), which draw at most
  the sum of the m_k largest min(degree, f_k) neighbours, all new at best;
  nodes are also capped by the graph's size. One padding node is added.
  """
  if num_seeds < 1 or not fanouts or min(fanouts) < 1:
    raise ConfigError(f"num_seeds={num_seeds}, fanouts={tuple(fanouts)}; "
                      "accepted: num_seeds >= 1 and fanouts >= 1.")
  nodes, frontier, edges = num_seeds, num_seeds, 0
  for f in fanouts:
    if csr is None:
      drawn = new = frontier * f
    else:
      drawn = int(np.sort(np.minimum(csr.degree, f))[::-1][:frontier].sum())
      new = min(drawn, csr.num_nodes - nodes)
    frontier = new
    nodes += new
    edges += drawn
  return nodes + 1, edges


def fit_budget(csr: CSR, nodes, batch_size: int, fanouts: Sequence[int],
               num_batches: int = 20, seed: int = 0, margin: float = 1.25
               ) -> tuple[int, int]:
  """A practical (max_nodes, max_edges): `margin` times the largest sample
  among `num_batches` batches of `batch_size` seeds drawn from `nodes`,
  capped by the safe `budget`. Much smaller than the safe bound on graphs
  with hubs; a rare larger sample is then handled by `on_overflow`."""
  nodes = np.asarray(nodes)
  rng = np.random.default_rng(seed)
  need_nodes = need_edges = 0
  for _ in range(num_batches):
    seeds = rng.choice(nodes, size=min(batch_size, nodes.size), replace=False)
    g = sample_subgraph(csr, seeds, fanouts, rng)
    need_nodes = max(need_nodes, int(g.n_node[0]))
    need_edges = max(need_edges, int(g.n_edge[0]))
  safe_nodes, safe_edges = budget(batch_size, fanouts, csr)
  return (min(int(np.ceil(margin * need_nodes)) + 1, safe_nodes),
          min(int(np.ceil(margin * need_edges)), safe_edges))


def _rng(rng) -> np.random.Generator:
  if isinstance(rng, np.random.Generator):
    return rng
  if (isinstance(rng, tuple) and len(rng) == 2 and
      all(isinstance(v, (int, np.integer)) and v >= 0 for v in rng)):
    return np.random.default_rng([int(rng[0]), int(rng[1])])
  raise ConfigError(f"rng={rng!r}; accepted: a numpy Generator or a pair of "
                    "non-negative ints (seed, step).")


def _sample_hop(csr: CSR, frontier: np.ndarray, fanout: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Up to `fanout` distinct neighbours of each frontier node.

  Returns (neighbour, parent) pairs, grouped by parent in frontier order.
  Each neighbour list is ranked by independent uniform keys and its `fanout`
  smallest are kept: a uniform sample without replacement.
  """
  start = csr.indptr[frontier]
  deg = csr.indptr[frontier + 1] - start
  total = int(deg.sum())
  if total == 0:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  seg = np.repeat(np.arange(frontier.size), deg)
  seg_start = np.cumsum(deg) - deg
  pos = np.arange(total) - seg_start[seg]
  slot = start[seg] + pos
  order = np.lexsort((rng.random(total), seg))
  rank = np.empty(total, np.int64)
  rank[order] = pos
  keep = rank < fanout
  return csr.indices[slot[keep]].astype(np.int64), frontier[seg[keep]]


def sample_subgraph(csr: CSR, seed_nodes, fanouts: Sequence[int] = (25, 10),
                    rng=(0, 0), batch_size: int | None = None,
                    max_nodes: int | None = None, max_edges: int | None = None,
                    on_overflow: str = "error") -> jraph.GraphsTuple:
  """Samples the GraphSAGE computation graph of a mini-batch (section 6.5.1).

  Args:
    csr: neighbour lists of the whole graph (`build_csr`).
    seed_nodes: distinct node ids of the mini-batch.
    fanouts: neighbours drawn per node at hop 1, 2, ...
    rng: a numpy Generator, or (seed, step): the sample is a function of them.
    batch_size: the seed count the shapes are sized for (default
      len(seed_nodes)); a last, smaller batch gets the same shapes when given.
    max_nodes, max_edges: the padded sizes (padding node included); default
      `budget(batch_size, fanouts, csr)`, which no sample exceeds. A smaller
      budget (`fit_budget`) saves memory and compute.
    on_overflow: when a sample needs more than the budget: "error" raises
      ConfigError; "truncate" keeps the longest prefix of the edges (hop 1
      first, then hop 2, ...) that fits, and the nodes they reach.

  Returns:
    A GraphsTuple of numpy arrays of fixed shapes [max_nodes] and
    [max_edges], with n_node = [real, padding] nodes and n_edge = [real,
    padding] edges. nodes is a dict: "node_ids" int32 (original id; 0 for
    padding), "seed_mask" bool (the seeds, first and in the order given) and
    "node_mask" bool (real nodes); the other real nodes follow in the order
    they are reached. edges is a dict: "edge_mask" bool and "hop" int32 (the
    hop, from 1, at which the edge was drawn; 0 for padding). Edge k goes from
    the sampled neighbour senders[k] to the node receivers[k] that drew it;
    padding edges join the first padding node to itself. globals is None.
    `with_features` puts the node features in place of the dict.
  """
  seeds = np.asarray(seed_nodes)
  if seeds.ndim != 1 or seeds.size == 0 or not np.issubdtype(seeds.dtype,
                                                              np.integer):
    raise ConfigError(f"seed_nodes must be a non-empty 1-D integer array; got "
                      f"shape {seeds.shape} dtype {seeds.dtype}.")
  seeds = seeds.astype(np.int64)
  n = csr.num_nodes
  if seeds.min() < 0 or seeds.max() >= n:
    raise ConfigError(f"seed_nodes range from {seeds.min()} to {seeds.max()};"
                      f" accepted: ids in [0, {n}).")
  if np.unique(seeds).size != seeds.size:
    raise ConfigError("seed_nodes holds repeated ids; accepted: distinct ids.")
  fanouts = tuple(int(f) for f in fanouts)
  if not fanouts or min(fanouts) < 1:
    raise ConfigError(f"fanouts={fanouts}; accepted: one or more ints >= 1.")
  batch_size = seeds.size if batch_size is None else int(batch_size)
  if batch_size < seeds.size:
    raise ConfigError(f"batch_size={batch_size} is smaller than the "
                      f"{seeds.size} seed nodes; accepted: >= {seeds.size}.")
  if on_overflow not in ("error", "truncate"):
    raise ConfigError(f"on_overflow={on_overflow!r}; accepted: 'error', "
                      "'truncate'.")
  if max_nodes is None or max_edges is None:
    safe_nodes, safe_edges = budget(batch_size, fanouts, csr)
    max_nodes = safe_nodes if max_nodes is None else max_nodes
    max_edges = safe_edges if max_edges is None else max_edges
  if max_nodes < batch_size + 1 or max_edges < 0:
    raise ConfigError(f"max_nodes={max_nodes}, max_edges={max_edges}; "
                      f"accepted: max_nodes >= batch_size + 1 = "
                      f"{batch_size + 1} and max_edges >= 0.")
  gen = _rng(rng)

  node_ids = [seeds]
  is_new = np.ones(n, bool)
  is_new[seeds] = False
  frontier = seeds
  senders, receivers, hops = [], [], []
  for hop, fanout in enumerate(fanouts, 1):
    nbr, parent = _sample_hop(csr, frontier, fanout, gen)
    senders.append(nbr)
    receivers.append(parent)
    hops.append(np.full(nbr.size, hop, np.int32))
    # Newly reached nodes, in order of first appearance.
    cand = nbr[is_new[nbr]]
    _, first = np.unique(cand, return_index=True)
    frontier = cand[np.sort(first)]
    is_new[frontier] = False
    node_ids.append(frontier)
  node_ids = np.concatenate(node_ids)
  senders, receivers = np.concatenate(senders), np.concatenate(receivers)
  hops = np.concatenate(hops)
  # Relabel original ids to positions in node_ids.
  sorter = np.argsort(node_ids)
  senders = sorter[np.searchsorted(node_ids, senders, sorter=sorter)]
  receivers = sorter[np.searchsorted(node_ids, receivers, sorter=sorter)]
  num_real, num_edges = node_ids.size, senders.size
  if num_real > max_nodes - 1 or num_edges > max_edges:
    if on_overflow == "error":
      raise ConfigError(
          f"The sample needs {num_real} nodes and {num_edges} edges but the "
          f"budget is max_nodes={max_nodes} (one for padding) and max_edges="
          f"{max_edges}; accepted: a budget from `budget` or `fit_budget`, or"
          " on_overflow='truncate'.")
    # Nodes are numbered by first appearance along the edges, so a prefix
    # of the edges reaches a prefix of the nodes.
    reached = np.maximum.accumulate(np.maximum(senders, receivers))
    fits = (reached < max_nodes - 1) & (np.arange(num_edges) < max_edges)
    num_edges = int(fits.sum()) if fits.all() else int(np.argmin(fits))
    num_real = int(max(seeds.size, reached[num_edges - 1] + 1 if num_edges
                       else 0))
    node_ids, senders, receivers, hops = (
        node_ids[:num_real], senders[:num_edges], receivers[:num_edges],
        hops[:num_edges])
  ids = np.zeros(max_nodes, np.int32)
  ids[:num_real] = node_ids
  seed_mask = np.zeros(max_nodes, bool)
  seed_mask[:seeds.size] = True
  node_mask = np.zeros(max_nodes, bool)
  node_mask[:num_real] = True
  out_s = np.full(max_edges, num_real, np.int32)
  out_r = np.full(max_edges, num_real, np.int32)
  out_s[:num_edges] = senders
  out_r[:num_edges] = receivers
  edge_mask = np.zeros(max_edges, bool)
  edge_mask[:num_edges] = True
  hop = np.zeros(max_edges, np.int32)
  hop[:num_edges] = hops
  return jraph.GraphsTuple(
      nodes={"node_ids": ids, "seed_mask": seed_mask, "node_mask": node_mask},
      edges={"edge_mask": edge_mask, "hop": hop},
      senders=out_s, receivers=out_r, globals=None,
      n_node=np.array([num_real, max_nodes - num_real], np.int32),
      n_edge=np.array([num_edges, max_edges - num_edges], np.int32))


def with_features(sample: jraph.GraphsTuple, features: np.ndarray
                  ) -> jraph.GraphsTuple:
  """The sample with nodes = features[node_ids] (zeros on padding nodes)."""
  x = np.asarray(features)[sample.nodes["node_ids"]]
  x[~sample.nodes["node_mask"]] = 0
  return sample._replace(nodes=x)


def seed_batches(nodes, batch_size: int, seed: int, epoch: int
                 ) -> list[np.ndarray]:
  """The seed batches of one epoch: `nodes` in an order that is a function of
  (seed, epoch), cut into batches of `batch_size` (the last may be smaller;
  pass batch_size to `sample_subgraph` to keep its shapes)."""
  nodes = np.asarray(nodes)
  if batch_size < 1:
    raise ConfigError(f"batch_size={batch_size}; accepted: >= 1.")
  order = np.random.default_rng([int(seed), int(epoch)]).permutation(nodes)
  return [order[i:i + batch_size] for i in range(0, order.size, batch_size)]
