"""The Euclidean group E(n) and the relabelling of points, acting on point clouds (section 4.4:
the blueprint on "more exotic domains"; Satorras, Hoogeboom and Welling 2021).

An element g = (Q, t, P) is an orthogonal matrix Q (a rotation, det +1, or an improper one,
det -1), a translation t and a permutation P of the points. On a point cloud it acts by role:

- points (positions): x_i -> Q x_{P(i)} + t;
- vectors (velocities, forces, displacements): v_i -> Q v_{P(i)};
- scalars (charges, masses, features): s_i -> s_{P(i)}.

Layouts: a point cloud is an array [batch, n, dim] of points, or a dict of node arrays
[batch, n, ...] whose keys name their roles (`POINT_KEYS`, `VECTOR_KEYS`, `SCALAR_KEYS`; any
other key is refused). A map's output is one array whose role `EuclideanAction.output` states
("point", "vector" or "scalar", per point [batch, n, ...]); an invariant output (an energy) is
compared unchanged by `check_invariant`.

Elements are dicts of arrays ({"rotation", "translation", "permutation"}), drawn from explicit
keys, so that `act` runs under `jax.jit` with the element traced. Rotations are Haar-uniform on
SO(n) (`random_rotation`: the QR decomposition of a Gaussian matrix with the signs of R's
diagonal moved into Q, then one column flipped when det Q = -1).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.symmetry.groups import Element, GroupAction

POINT_KEYS = ("positions", "points", "coordinates", "pos")
VECTOR_KEYS = ("velocities", "velocity", "forces", "vectors", "displacements", "momenta",
               "accelerations", "normals")
SCALAR_KEYS = ("charges", "masses", "features", "node_features", "scalars", "atom_types",
               "species")
ROLES = ("point", "vector", "scalar")


def random_rotation(key: jax.Array, dim: int = 3, dtype=jnp.float32) -> jax.Array:
  """A Haar-uniform rotation matrix of SO(dim)."""
  a = jax.random.normal(key, (dim, dim), dtype)
  q, r = jnp.linalg.qr(a)
  q = q * jnp.sign(jnp.diagonal(r))[None, :]  # Haar on O(dim) (Mezzadri 2007)
  flip = jnp.where(jnp.linalg.det(q) < 0, -1.0, 1.0).astype(dtype)
  return q.at[:, 0].multiply(flip)


def random_reflection(key: jax.Array, dim: int = 3, dtype=jnp.float32) -> jax.Array:
  """The mirror image through a uniformly random plane through the origin: I - 2 u u^T."""
  u = jax.random.normal(key, (dim,), dtype)
  u = u / jnp.linalg.norm(u)
  return jnp.eye(dim, dtype=dtype) - 2.0 * jnp.outer(u, u)


def role_of(key: str) -> str:
  """The role of a point cloud's entry, by its key; an unknown key is refused rather than taken
  for a scalar (a vector under another name would then never be rotated, and a model that
  mixes its components would pass)."""
  for role, keys in (("point", POINT_KEYS), ("vector", VECTOR_KEYS), ("scalar", SCALAR_KEYS)):
    if key in keys:
      return role
  raise ValueError(f"point cloud key {key!r} has no role; accepted keys: points "
                   f"{', '.join(POINT_KEYS)}; vectors {', '.join(VECTOR_KEYS)}; scalars "
                   f"{', '.join(SCALAR_KEYS)} (rename the entry in the input you give the check)")


def transform(g: Element, y: jax.Array, role: str, node_axis: int = 1) -> jax.Array:
  """g acting on one array of the given role (the last axis holds the coordinates)."""
  q = g["rotation"].astype(y.dtype)
  if role != "scalar":
    y = jnp.einsum("...d,ed->...e", y, q)
    if role == "point":
      y = y + g["translation"].astype(y.dtype)
  return jnp.take(y, g["permutation"], axis=node_axis)


@dataclasses.dataclass(frozen=True)
class EuclideanAction(GroupAction):
  """E(dim) x S_n on point clouds of n points, or any of its components.

  Attributes:
    num_points: n (the permutations' size).
    dim: the space's dimension.
    rotations: draw a Haar-uniform rotation (else Q = I).
    reflection_probability: compose Q with a reflection through a random plane with this
      probability (0: SO(dim) only; 1: improper elements only; 0.5: uniform on O(dim));
      strictly between 0 and 1, `sample_n` alternates proper and improper elements.
    translations: draw t ~ N(0, translation_scale^2) per coordinate (else t = 0).
    permutations: draw a uniform permutation of the points (else the identity).
    output: the role of the map's output ("point", "vector" or "scalar").
    node_axis: the points' axis (1: [batch, n, ...]).
  """
  num_points: int
  dim: int = 3
  rotations: bool = True
  reflection_probability: float = 0.0
  translations: bool = True
  permutations: bool = False
  output: str = "point"
  translation_scale: float = 2.0
  node_axis: int = 1

  def __post_init__(self):
    if self.output not in ROLES:
      raise ValueError(f"output={self.output!r}; accepted: {', '.join(ROLES)}")
    if not 0.0 <= self.reflection_probability <= 1.0:
      raise ValueError(f"reflection_probability={self.reflection_probability} is not in [0, 1]")
    if not (self.rotations or self.reflection_probability or self.translations
            or self.permutations):
      raise ValueError("an EuclideanAction needs at least one component")

  def sample(self, key: jax.Array) -> Element:
    """Drawn in the default float dtype (float64 under `jax.enable_x64`), so that Q is
    orthogonal to the precision the check runs in."""
    dtype = jnp.result_type(float)
    k_rot, k_ref, k_coin, k_t, k_perm = jax.random.split(key, 5)
    q = random_rotation(k_rot, self.dim, dtype) if self.rotations else jnp.eye(self.dim,
                                                                              dtype=dtype)
    if self.reflection_probability:
      mirrored = random_reflection(k_ref, self.dim, dtype) @ q
      q = jnp.where(jax.random.bernoulli(k_coin, self.reflection_probability), mirrored, q)
    t = (self.translation_scale * jax.random.normal(k_t, (self.dim,), dtype)
         if self.translations else jnp.zeros(self.dim, dtype))
    perm = (jax.random.permutation(k_perm, self.num_points) if self.permutations
            else jnp.arange(self.num_points))
    return {"rotation": q, "translation": t, "permutation": perm.astype(jnp.int32)}

  def sample_n(self, key: jax.Array, n: int) -> list[Element]:
    """`n` elements; with 0 < reflection_probability < 1 the parity alternates (even samples
    proper rotations, odd ones improper), so that any n >= 2 checks both halves of O(dim)."""
    elements = [self.sample(k) for k in jax.random.split(key, n)]
    if not 0.0 < self.reflection_probability < 1.0:
      return elements
    out = []
    for i, (g, k) in enumerate(zip(elements, jax.random.split(jax.random.fold_in(key, 1), n))):
      q = g["rotation"]
      proper = jnp.where(jnp.linalg.det(q) < 0, random_reflection(k, self.dim, q.dtype) @ q, q)
      q = random_reflection(k, self.dim, q.dtype) @ proper if i % 2 else proper
      out.append({**g, "rotation": q})
    return out

  def act(self, g: Element, x):
    if isinstance(x, dict):
      return {k: transform(g, v, role_of(k), self.node_axis) for k, v in x.items()}
    return transform(g, x, "point", self.node_axis)

  def act_output(self, g: Element, y):
    return transform(g, y, self.output, self.node_axis)

  def describe(self, g: Element) -> str:
    g = jax.device_get(g)
    q = np.asarray(g["rotation"], np.float64)
    det = float(np.linalg.det(q))
    parts = [f"det {det:+.0f}"]
    if self.rotations:
      proper = q if det > 0 else -q if self.dim % 2 else q
      cos = np.clip((np.trace(proper) - (self.dim - 2)) / 2, -1.0, 1.0)
      parts.append(f"angle {np.degrees(np.arccos(cos)):.0f} deg")
    if self.translations:
      parts.append("t " + np.array2string(np.asarray(g["translation"]), precision=2))
    if self.permutations:
      parts.append(f"perm {np.asarray(g['permutation']).tolist()}")
    return ", ".join(parts)
