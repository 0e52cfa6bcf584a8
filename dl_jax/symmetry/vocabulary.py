"""The names a model or layer uses to declare its symmetries, and what each one means.

`ModelSpec.symmetries` (dl_jax.models.registry) and `LayerSpec.symmetries`
(dl_jax.symmetry.layers) hold names from `SYMMETRIES`; `tests/test_symmetry.py` turns each name
into a group action and checks the property with `dl_jax.symmetry.check`. Per-model details
(the total stride of a pooling stack, where a p4 feature map keeps its rotation axis, the
receptive-field radius of a zero-padded layer) are `SymmetryParams`; a registered model gives
them as a `symmetry_params` property of its module, a layer spec as its `params`.
"""

import dataclasses
from typing import Any, Callable

from dl_jax.errors import ConfigError
from dl_jax.symmetry import euclidean, groups

TRANSLATION_CIRCULAR_EQUIVARIANT = "translation_circular_equivariant"
TRANSLATION_CIRCULAR_INVARIANT = "translation_circular_invariant"
TRANSLATION_INTERIOR_EQUIVARIANT = "translation_interior_equivariant"
ROTATION_P4_EQUIVARIANT = "rotation_p4_equivariant"
ROTATION_P4_INVARIANT = "rotation_p4_invariant"
ROTATION_REFLECTION_P4M_INVARIANT = "rotation_reflection_p4m_invariant"
PERMUTATION_EQUIVARIANT = "permutation_equivariant"
PERMUTATION_INVARIANT = "permutation_invariant"
E3_EQUIVARIANT = "e3_equivariant"
SE3_EQUIVARIANT = "se3_equivariant"
E3_INVARIANT = "e3_invariant"
POINT_PERMUTATION_EQUIVARIANT = "point_permutation_equivariant"


@dataclasses.dataclass(frozen=True)
class SymmetryParams:
  """What a declared symmetry needs to know about the map it is checked on.

  Attributes:
    stride: total stride of the map on the grid; only shifts by its multiples are checked, and
      the output moves by shift / stride.
    max_shift: largest input shift drawn (None: 8 circular, 2 * stride zero-filled).
    radius: receptive-field radius in output pixels of a zero-padded map (the interior crop).
    group_axis: the rotation axis of a p4 feature-map input (None: an image).
    out_group_axis: the rotation axis of a p4 feature-map output (None: an image).
    output: the role of a point-cloud map's output: "point" (moves like the positions),
      "vector" (rotates only) or "scalar" (per point, only relabelled); see
      `dl_jax.symmetry.euclidean`.
  """
  stride: int = 1
  max_shift: int | None = None
  radius: int = 0
  group_axis: int | None = None
  out_group_axis: int | None = None
  output: str = "point"


@dataclasses.dataclass(frozen=True)
class Symmetry:
  name: str
  kind: str  # "equivariant" or "invariant"
  description: str
  make_action: Callable[[SymmetryParams, Any], groups.GroupAction]
  uses_crop: bool = False


def _num_nodes(x) -> int:
  return (x["nodes"] if isinstance(x, dict) else x).shape[1]


def _circular(p: SymmetryParams, x) -> groups.GroupAction:
  del x
  return groups.CircularShift(stride=p.stride, max_shift=p.max_shift or max(8, p.stride))


def _zero_fill(p: SymmetryParams, x) -> groups.GroupAction:
  del x
  return groups.Shift(stride=p.stride, max_shift=p.max_shift or 2 * p.stride)


def _rotation(p: SymmetryParams, x) -> groups.GroupAction:
  del x
  return groups.Rotation90(group_axis=p.group_axis, out_group_axis=p.out_group_axis)


def _points(x):
  """The points of a point cloud: the array itself, or a dict's first point-role entry."""
  if not isinstance(x, dict):
    return x
  for key, value in x.items():
    if euclidean.role_of(key) == "point":
      return value
  raise ConfigError(f"a point cloud dict needs its points under one of "
                    f"{', '.join(euclidean.POINT_KEYS)}; got keys {', '.join(map(str, x))}")


def _euclidean(rotations=True, reflections=True, translations=True):
  def make(p: SymmetryParams, x) -> groups.GroupAction:
    return euclidean.EuclideanAction(
        _points(x).shape[1], dim=_points(x).shape[-1],
        rotations=rotations, reflection_probability=0.5 if reflections else 0.0,
        translations=translations, permutations=True, output=p.output)
  return make


SYMMETRIES: dict[str, Symmetry] = {s.name: s for s in (
    Symmetry(TRANSLATION_CIRCULAR_EQUIVARIANT, "equivariant",
             "f(roll(x, s)) = roll(f(x), s / stride) for shifts s that are multiples of the stride",
             _circular),
    Symmetry(TRANSLATION_CIRCULAR_INVARIANT, "invariant",
             "f(roll(x, s)) = f(x) for shifts s that are multiples of the stride", _circular),
    Symmetry(TRANSLATION_INTERIOR_EQUIVARIANT, "equivariant",
             "zero-filled shifts commute with f away from the border (cropped: max shift / stride"
             " + radius)", _zero_fill, uses_crop=True),
    Symmetry(ROTATION_P4_EQUIVARIANT, "equivariant",
             "rotations by 90 degrees commute with f (on p4 feature maps: spatial rotation and a "
             "cyclic shift of the rotation axis)", _rotation),
    Symmetry(ROTATION_P4_INVARIANT, "invariant", "f(rot90^k x) = f(x)", _rotation),
    Symmetry(ROTATION_REFLECTION_P4M_INVARIANT, "invariant",
             "f(g x) = f(x) for the 8 rotations and reflections of the square",
             lambda p, x: groups.Rotation90Flip()),
    Symmetry(PERMUTATION_EQUIVARIANT, "equivariant",
             "f(P X) = P f(X) (graphs: A -> P A P^T, edge lists relabeled)",
             lambda p, x: groups.Permutation(_num_nodes(x))),
    Symmetry(PERMUTATION_INVARIANT, "invariant", "f(P X) = f(X)",
             lambda p, x: groups.Permutation(_num_nodes(x))),
    Symmetry(E3_EQUIVARIANT, "equivariant",
             "point clouds: f(Q x P + t) = Q f(x) P + t for rotations and reflections Q, "
             "translations t and relabellings P (vectors rotate, scalars are relabelled)",
             _euclidean()),
    Symmetry(SE3_EQUIVARIANT, "equivariant",
             "as e3_equivariant for proper rotations only (chiral maps)",
             _euclidean(reflections=False)),
    Symmetry(E3_INVARIANT, "invariant", "point clouds: f(Q x P + t) = f(x)", _euclidean()),
    Symmetry(POINT_PERMUTATION_EQUIVARIANT, "equivariant",
             "point clouds: relabelling the points relabels the output",
             _euclidean(rotations=False, reflections=False, translations=False)),
)}


def get(name: str) -> Symmetry:
  if name not in SYMMETRIES:
    raise ConfigError(f"unknown symmetry {name!r}; accepted: {', '.join(SYMMETRIES)}")
  return SYMMETRIES[name]


def action_for(name: str, x, params: SymmetryParams | dict | None = None
               ) -> tuple[Symmetry, groups.GroupAction, int]:
  """(symmetry, group action, crop) to check `name` on input `x` with `params`."""
  if not isinstance(params, SymmetryParams):
    try:
      params = SymmetryParams(**(params or {}))
    except TypeError as e:
      raise ConfigError(f"bad symmetry params {params!r}: {e}; accepted: "
                        f"{', '.join(f.name for f in dataclasses.fields(SymmetryParams))}") from e
  symmetry = get(name)
  return symmetry, symmetry.make_action(params, x), params.radius if symmetry.uses_crop else 0
