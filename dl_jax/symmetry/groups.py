"""Group actions on data domains (chapter 4 of the notes): grids, the square's symmetries, sets
and graphs.

A symmetry of a domain is a transformation g that we may apply to a signal x (section 4.2):
f is invariant if f(g.x) = f(x), equivariant if f(g.x) = g.f(x). Each action here says how a
group element acts on the input and on the output of a map, so that one checker
(`dl_jax.symmetry.check`) can test both properties for any of them:

- `sample(key)`: a random group element, drawn from an explicit key. Elements are arrays, so
  `act` also runs under `jax.jit` with the element traced (`lax.switch` over the finite
  group's elements; eagerly, the one branch is called directly).
- `act(g, x)`: g.x on the input.
- `act_output(g, y)`: g.y on the output, for equivariance. It is the same action by default;
  strided layers act on the output by the shift divided by the total stride; p4 feature maps
  carry an extra rotation axis that the rotation shifts cyclically.
- `boundary`: how many output pixels at each border the action may invalidate (a zero-filled
  shift moves zeros in); the checker crops them.

Layouts: images are NHWC (spatial axes 1, 2); p4 feature maps are [N, H, W, 4, C] (the
rotation axis at 3); sets and graphs put nodes at axis 1, [N, n, F], adjacency [N, n, n], edge
lists [N, E] (senders, receivers). A `jraph.GraphsTuple` keeps its nodes at axis 0; the node
`Permutation` and the `EdgePermutation` act on it too.
"""

import abc
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import jraph
from jax import lax

Array = jax.Array
Element = Array
PyTree = Any


def _static_index(g: Element) -> int | None:
  """g as a Python int when it is concrete (eager), None under tracing."""
  try:
    return int(g)
  except jax.errors.ConcretizationTypeError:
    return None


def _switch(g: Element, branches: list, x):
  """branches[g](x): a direct call for a concrete g, `lax.switch` for a traced one."""
  index = _static_index(g)
  return lax.switch(g, branches, x) if index is None else branches[index](x)


class GroupAction(abc.ABC):
  """Base class. Subclasses are frozen dataclasses (hashable, usable as static jit args)."""

  #: Output axes that `boundary` and the checker's crop refer to.
  out_spatial_axes: tuple[int, ...] = ()

  @abc.abstractmethod
  def sample(self, key: Array) -> Element:
    """A random group element drawn from `key`."""

  @abc.abstractmethod
  def act(self, g: Element, x: PyTree) -> PyTree:
    """g.x: the element acting on an input."""

  def act_output(self, g: Element, y: PyTree) -> PyTree:
    return self.act(g, y)

  def sample_n(self, key: Array, n: int) -> list[Element]:
    """`n` elements, one from each of `jax.random.split(key, n)`; an action whose group has
    parts that random draws could miss (E(3)'s reflections) overrides it to cover them."""
    return [self.sample(k) for k in jax.random.split(key, n)]

  @property
  def boundary(self) -> int:
    return 0

  def elements(self) -> tuple[int, ...]:
    """All elements, for finite groups (as Python ints: usable inside traced code)."""
    raise TypeError(f"{type(self).__name__} is not a finite group; it has no element list")

  def describe(self, g: Element) -> str:
    return str(jax.device_get(g).tolist())


class FiniteGroupAction(GroupAction):
  """A finite group whose element 0 is the identity: every check runs each other element once,
  whatever the number of samples asked for (random draws could repeat one, or stay in a
  subgroup: three draws from C4 are all the 180-degree rotation one time in 27)."""

  def sample_n(self, key: Array, n: int) -> list[Element]:
    del key, n
    return [jnp.asarray(e, jnp.int32) for e in self.elements()[1:]]


# ---------------------------------------------------------------------------------------------
# Translations of the grid (section 4.2, figures 4.5-4.6).

def _shift_zero_fill(x: Array, shifts: Array, axes: tuple[int, ...], pad: int,
                     fill: float) -> Array:
  """x translated by `shifts` along `axes`: y[i + s] = x[i], entries moved in are `fill`."""
  widths = [(0, 0)] * x.ndim
  for a in axes:
    widths[a] = (pad, pad)
  padded = jnp.pad(x, widths, constant_values=fill)
  starts = [jnp.zeros((), jnp.int32)] * x.ndim
  for i, a in enumerate(axes):
    starts[a] = pad - shifts[i].astype(jnp.int32)
  return lax.dynamic_slice(padded, starts, x.shape)


@dataclasses.dataclass(frozen=True)
class CircularShift(GroupAction):
  """Cyclic translations of the grid (the torus), x -> jnp.roll(x, s, axes).

  Shifts are s = stride * k + phase with k uniform in [-max_shift // stride, max_shift // stride]
  per axis; the output is rolled by k. With stride = the layer's total stride and phase 0 this
  is the exact symmetry of a strided layer with circular padding (if the grid size is a multiple
  of the stride); phase != 0 gives shifts that such a layer does not commute with (a negative
  control).
  """
  axes: tuple[int, ...] = (1, 2)
  stride: int = 1
  phase: int = 0
  max_shift: int = 8
  out_spatial_axes: tuple[int, ...] = (1, 2)

  def __post_init__(self):
    if self.stride < 1 or not 0 <= self.phase < self.stride or self.max_shift < self.stride:
      raise ValueError(f"need stride >= 1, 0 <= phase < stride, max_shift >= stride; got {self}")

  def sample(self, key: Array) -> Element:
    """k uniform over the shifts other than 0 (which would test nothing) when phase is 0."""
    m, d = self.max_shift // self.stride, len(self.axes)
    if self.phase:
      return jax.random.randint(key, (d,), -m, m + 1)
    side = 2 * m + 1
    index = jax.random.randint(key, (), 0, side ** d - 1)
    index = index + (index >= (side ** d - 1) // 2)  # skip the center: k = 0 on every axis
    return jnp.stack([(index // side ** i) % side for i in range(d)]) - m

  def act(self, g: Element, x: Array) -> Array:
    return jnp.roll(x, self.stride * g + self.phase, self.axes)

  def act_output(self, g: Element, y: Array) -> Array:
    return jnp.roll(y, g, self.out_spatial_axes)

  def describe(self, g: Element) -> str:
    k = jax.device_get(g).tolist()
    return f"shift {[self.stride * v + self.phase for v in k]} (output {k})"


@dataclasses.dataclass(frozen=True)
class Shift(CircularShift):
  """Translations of a finite grid: content moves by s, `fill` moves in, what leaves is lost
  (so, strictly, not a group action: it cannot be undone).

  This is the translation that zero padding (section 5.2.2) sees; a zero-padded convolution
  commutes with it only away from the border, so the action declares `boundary` = the largest
  output shift and the checker crops it (plus the receptive-field radius it is given).
  """
  fill: float = 0.0

  def act(self, g: Element, x: Array) -> Array:
    return _shift_zero_fill(x, self.stride * g + self.phase, self.axes,
                            self.max_shift + self.stride, self.fill)

  def act_output(self, g: Element, y: Array) -> Array:
    return _shift_zero_fill(y, g, self.out_spatial_axes, self.max_shift // self.stride + 1,
                            self.fill)

  @property
  def boundary(self) -> int:
    return self.max_shift // self.stride


# ---------------------------------------------------------------------------------------------
# The square's symmetries: p4 (rotations by 90 degrees) and p4m (with reflections).

def rot90(x: Array, k: int, axes: tuple[int, int] = (1, 2), group_axis: int | None = None) -> Array:
  """Rotation by k * 90 degrees (static k) of the spatial `axes`; on a p4 feature map also the
  cyclic shift r -> r + k of its rotation axis."""
  x = jnp.rot90(x, k, axes)
  return x if group_axis is None else jnp.roll(x, k, group_axis)


@dataclasses.dataclass(frozen=True)
class Rotation90(FiniteGroupAction):
  """The rotation group C4 of the square acting on images (and p4 feature maps).

  Element k in {0, 1, 2, 3}: rotation by k * 90 degrees about the image center (`jnp.rot90`,
  which maps the pixel grid onto itself). `sample` draws k from {1, 2, 3}: the identity would
  test nothing; a check runs all three. On a p4 feature map f(x, r) (Cohen & Welling 2016)
  the rotation also shifts the rotation axis cyclically: (g f)(x, r) = f(g^-1 x, r - k).
  `group_axis` is that axis on the input (None: a plain image), `out_group_axis` on the output.
  """
  spatial_axes: tuple[int, int] = (1, 2)
  group_axis: int | None = None
  out_group_axis: int | None = None
  out_spatial_axes: tuple[int, ...] = (1, 2)

  def sample(self, key: Array) -> Element:
    return jax.random.randint(key, (), 1, 4)

  @staticmethod
  def _rotate(g, x, group_axis, spatial_axes):
    return _switch(g, [lambda x, k=k: rot90(x, k, spatial_axes, group_axis) for k in range(4)], x)

  def act(self, g: Element, x: Array) -> Array:
    return self._rotate(g, x, self.group_axis, self.spatial_axes)

  def act_output(self, g: Element, y: Array) -> Array:
    return self._rotate(g, y, self.out_group_axis, self.out_spatial_axes[:2])

  def elements(self) -> tuple[int, ...]:
    return tuple(range(4))

  def describe(self, g: Element) -> str:
    return f"rotate {90 * int(g)} deg"


@dataclasses.dataclass(frozen=True)
class Rotation90Flip(FiniteGroupAction):
  """The dihedral group D4 of the square (p4m without translations), on images.

  Element e in {0..7}: k = e // 2 rotations by 90 degrees after m = e % 2 mirror images
  (left-right, along the second spatial axis). `sample` draws e from {1..7} (not the identity);
  a check runs all seven.
  """
  spatial_axes: tuple[int, int] = (1, 2)
  out_spatial_axes: tuple[int, ...] = (1, 2)

  def sample(self, key: Array) -> Element:
    return jax.random.randint(key, (), 1, 8)

  @staticmethod
  def _apply(x, e, axes):
    k, m = divmod(e, 2)
    return rot90(jnp.flip(x, axes[1]) if m else x, k, axes)

  def act(self, g: Element, x: Array) -> Array:
    return _switch(g, [lambda x, e=e: self._apply(x, e, self.spatial_axes) for e in range(8)], x)

  def act_output(self, g: Element, y: Array) -> Array:
    return _switch(g, [lambda y, e=e: self._apply(y, e, self.out_spatial_axes[:2])
                       for e in range(8)], y)

  def elements(self) -> tuple[int, ...]:
    return tuple(range(8))

  def describe(self, g: Element) -> str:
    k, m = divmod(int(g), 2)
    return f"{'flip, then ' if m else ''}rotate {90 * k} deg"


# ---------------------------------------------------------------------------------------------
# Permutations of sets and graphs (section 4.2, figure 4.8).

GRAPH_NODE_KEYS = ("nodes",)


def permute_graph(perm: Array, x: PyTree, axis: int = 1) -> PyTree:
  """Relabels the nodes: new node i is old node perm[i].

  Arrays (a set, [N, n, F]) and a graph's "nodes": X -> P X, taking rows along `axis`.
  "adjacency" [N, n, n]: A -> P A P^T, i.e. A'[i, j] = A[perm[i], perm[j]].
  "senders"/"receivers" (edge lists, [N, E] or [E]): old node j becomes perm^-1[j]; the order
  of the edges is kept. Other entries of a graph dict (edge features, masks) are unchanged.

  A `jraph.GraphsTuple` (nodes [total nodes, ...], a pytree) is relabeled the same way along
  its node axis 0 (`axis` is ignored); edges, globals and counts are kept. For a batch, `perm`
  must map each graph's nodes onto themselves (`Permutation(segments=n_node)` draws such).
  """
  if isinstance(x, jraph.GraphsTuple):
    inverse = jnp.argsort(perm)
    return x._replace(nodes=jax.tree.map(lambda v: jnp.take(v, perm, axis=0), x.nodes),
                      senders=inverse[x.senders], receivers=inverse[x.receivers])
  if not isinstance(x, dict):
    return jnp.take(x, perm, axis=axis)
  inverse = jnp.argsort(perm)
  out = dict(x)
  for key in GRAPH_NODE_KEYS:
    if key in x:
      out[key] = jnp.take(x[key], perm, axis=axis)
  if "adjacency" in x:
    out["adjacency"] = jnp.take(jnp.take(x["adjacency"], perm, axis=axis), perm, axis=axis + 1)
  for key in ("senders", "receivers"):
    if key in x:
      out[key] = inverse[x[key]]
  return out


def block_permutation(key: Array, segments: tuple[int, ...]) -> Array:
  """A uniform random permutation of sum(segments) items that maps each consecutive block
  (of the given sizes) onto itself: int32[sum(segments)]."""
  keys = jax.random.split(key, max(len(segments), 1))
  blocks, offset = [], 0
  for k, size in zip(keys, segments):
    blocks.append(offset + jax.random.permutation(k, size).astype(jnp.int32))
    offset += size
  return jnp.concatenate(blocks) if blocks else jnp.zeros((0,), jnp.int32)


@dataclasses.dataclass(frozen=True)
class Permutation(GroupAction):
  """The symmetric group S_n relabeling the n elements of a set or the nodes of a graph.

  Element: a permutation `perm` (int32[n]), uniform from `jax.random.permutation`; it acts by
  `permute_graph` (X -> P X, A -> P A P^T, edge lists relabeled, also on a jraph.GraphsTuple).
  `segments`: for a batched GraphsTuple, the node count of each graph (its n_node, summing to
  num_nodes): the permutation then relabels nodes within each graph (the product of the S_n_k).
  A map from a GraphsTuple to node arrays [total nodes, ...] needs `axis=0` (the output's node
  axis); GraphsTuple outputs are relabeled whatever `axis` is.
  """
  num_nodes: int
  axis: int = 1
  out_spatial_axes: tuple[int, ...] = ()
  segments: tuple[int, ...] = ()

  def __post_init__(self):
    if self.segments and sum(self.segments) != self.num_nodes:
      raise ValueError(f"segments {self.segments} must sum to num_nodes={self.num_nodes}")

  def sample(self, key: Array) -> Element:
    if self.segments:
      return block_permutation(key, self.segments)
    return jax.random.permutation(key, self.num_nodes)

  def act(self, g: Element, x: PyTree) -> PyTree:
    return permute_graph(g, x, self.axis)


def permute_edges(perm: Array, x: PyTree, axis: int = 1) -> PyTree:
  """Reorders the edges: new edge k is old edge perm[k]; the nodes are unchanged.

  A jraph.GraphsTuple: senders, receivers and edge features (a pytree) along axis 0. A graph
  dict: "senders", "receivers" and "edges" along `axis`. Anything else (a node array, a
  per-graph output) is returned unchanged: it does not see the order of the edges.
  """
  if isinstance(x, jraph.GraphsTuple):
    take = lambda v: jnp.take(v, perm, axis=0)
    return x._replace(senders=take(x.senders), receivers=take(x.receivers),
                      edges=jax.tree.map(take, x.edges))
  if not isinstance(x, dict):
    return x
  out = dict(x)
  for key in ("senders", "receivers", "edges"):
    if key in x:
      out[key] = jnp.take(x[key], perm, axis=axis)
  return out


@dataclasses.dataclass(frozen=True)
class EdgePermutation(GroupAction):
  """Reordering of the stored edges (the edge set is unordered, section 6.4): `permute_edges`.

  A message-passing layer must not depend on the order its aggregation sees the messages in:
  on a GraphsTuple output the check compares the reordered output graph, on node arrays the
  unchanged ones. `segments`: the edge count of each graph of a batch (its n_edge), so that
  edges stay within their graph's block as jraph expects.
  """
  num_edges: int
  axis: int = 1
  out_spatial_axes: tuple[int, ...] = ()
  segments: tuple[int, ...] = ()

  def __post_init__(self):
    if self.segments and sum(self.segments) != self.num_edges:
      raise ValueError(f"segments {self.segments} must sum to num_edges={self.num_edges}")

  def sample(self, key: Array) -> Element:
    if self.segments:
      return block_permutation(key, self.segments)
    return jax.random.permutation(key, self.num_edges)

  def act(self, g: Element, x: PyTree) -> PyTree:
    return permute_edges(g, x, self.axis)


# ---------------------------------------------------------------------------------------------

def group_average(f: Callable[[PyTree], PyTree], action: GroupAction) -> Callable:
  """The invariant map x -> 1/|G| sum_g f(g.x) over a finite group (symmetrization).

  It is invariant whatever f is, at |G| times the cost: the alternative to building the
  symmetry into the layers (the blueprint of section 4.4).
  """
  elements = action.elements()

  def averaged(x):
    outs = [f(action.act(g, x)) for g in elements]
    return jax.tree.map(lambda *ys: sum(ys) / len(ys), *outs)

  return averaged
