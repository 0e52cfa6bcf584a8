"""Automatic broken variants: a symmetry check must be able to fail (negative controls).

A check that passes proves little if it would also pass on a map without the symmetry (an
all-zero output, an input the map ignores, a tolerance too wide). For each group action this
module builds a fixed, deterministic, small perturbation b of the input such that f o b lacks
the symmetry f has; `dl_jax.symmetry.suite` runs the same check on f o b and reports the
check "vacuous" if f o b passes too. The perturbations break f(g.x) = g.f(x) (section 4.2,
figures 4.9-4.10) by making the input depend on where each entry sits:

- grids (translations, p4/p4m rotations and reflections, `PositionBreaker`): x -> x + eps (M1 +
  M2 * x) with M1, M2 fixed N(0, 1) maps over the non-batch axes (a pattern with no translation
  or rotation symmetry). The additive term alone would not do: a global sum or mean pooling
  sees sum(x + M1) = sum(x) + sum(M1), still invariant; the multiplicative term reweights
  each position;
- sets and graphs (node permutations): the same, per node: a per-node index embedding on the
  node features ("nodes" of a graph dict, the nodes of a jraph.GraphsTuple, axis 1 of a set);
- point clouds (E(n) x S_n, `EuclideanBreaker`): points p -> p + eps (p A + p**2 + E), vectors
  v -> v + eps (v A + E), scalars s -> s + eps (E1 + E2 * s): A is a fixed random
  (non-orthogonal) matrix mixing the coordinate axes, which breaks rotations; p**2 breaks
  translations (a constant offset would commute with them); E, per point, breaks the
  relabelling.

`eps` (1e-2 by default) keeps f o b close to f (relative change ~1e-2) while the symmetry
error it causes, ~eps times f's sensitivity, stays far above float32's 1e-5 tolerance.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from dl_jax.symmetry import euclidean, groups

PyTree = Any
EPS = 1e-2


def _is_float(leaf) -> bool:
  return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)


def _normal(rng: np.random.Generator, shape: tuple[int, ...], dtype) -> jax.Array:
  return jnp.asarray(rng.standard_normal(shape), dtype)


@dataclasses.dataclass(frozen=True)
class Breaker:
  """A fixed input perturbation b (built for one input) and what it does, in words."""
  description: str
  perturb: Callable[[PyTree], PyTree]

  def broken(self, f: Callable[[PyTree], PyTree]) -> Callable[[PyTree], PyTree]:
    """f o b."""
    return lambda x: f(self.perturb(x))


def _positional(leaf, first_axis: int, rng: np.random.Generator, eps: float):
  """v -> v + eps (M1 + M2 * v), M1 and M2 fixed N(0, 1) over axes `first_axis`: of `leaf`."""
  shape = leaf.shape[first_axis:]
  m1, m2 = _normal(rng, shape, leaf.dtype), _normal(rng, shape, leaf.dtype)
  return lambda v: v + eps * (m1.astype(v.dtype) + m2.astype(v.dtype) * v)


def _float_leaves_map(x: PyTree, make: Callable) -> Callable[[PyTree], PyTree]:
  """A map applying make(leaf) to each float leaf of x (other leaves unchanged)."""
  leaves, treedef = jax.tree.flatten(x)
  maps = [make(leaf) if _is_float(leaf) else None for leaf in leaves]

  def perturb(y):
    ys = treedef.flatten_up_to(y)
    return treedef.unflatten([v if m is None else m(v) for m, v in zip(maps, ys)])
  return perturb


def position_breaker(x: PyTree, seed: int = 0, eps: float = EPS, node_axis: int = 1,
                     label: str = "position-dependent") -> Breaker:
  """x + eps (M1 + M2 * x) per position (grids) or per node (sets, graphs), fixed by `seed`.

  Arrays and dicts without "nodes": every float leaf, M over its axes from `node_axis` on
  (axis 0 is the batch). A graph dict: its "nodes" only. A jraph.GraphsTuple: its nodes
  (axis 0 is the node axis).
  """
  rng = np.random.default_rng(seed)
  if isinstance(x, jraph.GraphsTuple):
    node_map = _float_leaves_map(x.nodes, lambda leaf: _positional(leaf, 0, rng, eps))
    return Breaker(f"per-node embedding on the nodes (eps={eps:g})",
                   lambda y: y._replace(nodes=node_map(y.nodes)))
  if isinstance(x, dict) and any(k in x for k in groups.GRAPH_NODE_KEYS):
    keys = [k for k in groups.GRAPH_NODE_KEYS if k in x]
    maps = {k: _float_leaves_map(x[k], lambda leaf: _positional(leaf, node_axis, rng, eps))
            for k in keys}
    return Breaker(f"per-node embedding on {', '.join(keys)} (eps={eps:g})",
                   lambda y: {**y, **{k: maps[k](y[k]) for k in keys}})
  return Breaker(f"{label} x + eps (M1 + M2 x) (eps={eps:g})",
                 _float_leaves_map(x, lambda leaf: _positional(leaf, node_axis, rng, eps)))


def euclidean_breaker(x: PyTree, seed: int = 0, eps: float = EPS, node_axis: int = 1,
                      dim: int | None = None) -> Breaker:
  """Points p + eps (p A + p**2 + E), vectors v + eps (v A + E), scalars s + eps (E1 + E2 s):
  A mixes the coordinates (non-orthogonal), p**2 is not translation-equivariant, E is per
  point. Roles by dict key (`euclidean.role_of`); an array is points."""
  rng = np.random.default_rng(seed)

  def make(role):
    def for_leaf(leaf):
      if role == "scalar" or leaf.shape[-1] != (dim or leaf.shape[-1]):
        return _positional(leaf, node_axis, rng, eps)
      a = _normal(rng, (leaf.shape[-1],) * 2, leaf.dtype)
      e = _normal(rng, leaf.shape[node_axis:], leaf.dtype)
      square = role == "point"
      return lambda v: v + eps * (v @ a.astype(v.dtype) + (v * v if square else 0.0)
                                  + e.astype(v.dtype))
    return for_leaf

  if isinstance(x, dict):
    maps = {k: _float_leaves_map(v, make(euclidean.role_of(k))) for k, v in x.items()}
    perturb = lambda y: {k: maps[k](v) for k, v in y.items()}
  else:
    perturb = _float_leaves_map(x, make("point"))
  return Breaker(f"coordinate mixing x A + x**2 + per-point term (eps={eps:g})", perturb)


def edge_breaker(x: PyTree, seed: int = 0, eps: float = EPS, edge_axis: int = 1) -> Breaker:
  """e + eps (M1 + M2 * e) per edge on the float edge features (a jraph.GraphsTuple's `edges`,
  a graph dict's "edges" along `edge_axis`): the features then depend on where each edge is
  stored, which a reordering of the edges exposes. Without float edge features nothing can be
  perturbed, and the check is reported vacuous."""
  rng = np.random.default_rng(seed)
  if isinstance(x, jraph.GraphsTuple) and x.edges is not None:
    edge_map = _float_leaves_map(x.edges, lambda leaf: _positional(leaf, 0, rng, eps))
    return Breaker(f"per-edge embedding on the edges (eps={eps:g})",
                   lambda y: y._replace(edges=edge_map(y.edges)))
  if isinstance(x, dict) and "edges" in x:
    edge_map = _float_leaves_map(x["edges"],
                                 lambda leaf: _positional(leaf, edge_axis, rng, eps))
    return Breaker(f"per-edge embedding on edges (eps={eps:g})",
                   lambda y: {**y, "edges": edge_map(y["edges"])})
  return Breaker("none: no edge features to perturb", lambda y: y)


def breaker_for(action: groups.GroupAction, x: PyTree, seed: int = 0, eps: float = EPS
                ) -> Breaker:
  """The automatic broken variant's input perturbation for `action` on input `x`.

  Grid and permutation actions get `position_breaker` (per node along the permutation's axis),
  edge reorderings `edge_breaker`, `euclidean.EuclideanAction` gets `euclidean_breaker`; any
  other action (a user's own) gets `position_breaker` over the non-batch axes (on a graph: its
  nodes), which breaks actions that move those entries.
  """
  if isinstance(action, euclidean.EuclideanAction):
    return euclidean_breaker(x, seed, eps, action.node_axis, action.dim)
  if isinstance(action, groups.Permutation):
    return position_breaker(x, seed, eps, node_axis=action.axis, label="per-node")
  if isinstance(action, groups.EdgePermutation):
    return edge_breaker(x, seed, eps, edge_axis=action.axis)
  return position_breaker(x, seed, eps)
