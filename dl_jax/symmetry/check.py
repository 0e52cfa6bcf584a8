"""One checker for invariance and equivariance (section 4.2): f(g.x) = f(x), f(g.x) = g.f(x).

    report = check_equivariant(f, x, action, key, atol=1e-5, rtol=1e-5)
    report = check_invariant(f, x, action, key, atol=1e-5, rtol=1e-5)

Group elements are drawn from the explicit `key` (`n_samples` of them) by `action.sample_n`; for
each, f(g.x) is compared with g.f(x) (`action.act_output`) or with f(x), entry by entry, with
`chex.assert_trees_all_close` semantics: |a - b| <= atol + rtol * |b|. The tolerances have no
defaults: a float32 network is exact only to rounding (a permuted sum is summed in another
order), so the caller states what it expects. The returned `SymmetryReport` holds the max and
mean absolute errors, overall and per sample; out of tolerance, an AssertionError carries it.

Zero padding (section 5.2.2) makes a convolution translation-equivariant only away from the
border: `crop` (the receptive-field radius, in output pixels) plus the action's own `boundary`
(its largest output shift) are cut from both ends of the output's spatial axes before comparing.

`jit=True` compiles the comparison (f(x), f(g.x) and g.f(x)) once, with the group element as a
traced argument; `jit=False` runs it op by op.

`scale_atol=True` reads atol in units of each output leaf's magnitude where that exceeds 1
(atol * max(1, max|g.f(x)|) per leaf): float32 keeps 7 digits of an output of 1e3 as of one of
1, and a small leaf beside a large one keeps its own tight tolerance. The report's `atol` is then
the largest leaf's.
"""

import dataclasses
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.symmetry.groups import GroupAction

PyTree = Any


@dataclasses.dataclass(frozen=True)
class SampleError:
  """The comparison for one group element."""
  element: str
  max_abs_error: float
  mean_abs_error: float
  within_tolerance: bool


@dataclasses.dataclass(frozen=True)
class SymmetryReport:
  """What `check_equivariant` / `check_invariant` measured."""
  kind: str  # "equivariant" or "invariant"
  action: str
  dtype: str
  atol: float
  rtol: float
  crop: int  # output pixels cut from each border (crop + action.boundary)
  jit: bool
  output_scale: float  # max |g.f(x)| (or |f(x)|) compared: ~0 means a vacuous check
  samples: tuple[SampleError, ...]

  @property
  def max_abs_error(self) -> float:
    return max(s.max_abs_error for s in self.samples)

  @property
  def mean_abs_error(self) -> float:
    return float(np.mean([s.mean_abs_error for s in self.samples]))

  @property
  def passed(self) -> bool:
    return all(s.within_tolerance for s in self.samples)

  def __str__(self) -> str:
    lines = [f"{self.kind} under {self.action} ({self.dtype}, jit={self.jit}, crop={self.crop}): "
             f"{'PASSED' if self.passed else 'FAILED'}, max abs error {self.max_abs_error:.3g}, "
             f"mean abs error {self.mean_abs_error:.3g}, atol={self.atol:g}, rtol={self.rtol:g}, "
             f"output scale {self.output_scale:.3g}"]
    for i, s in enumerate(self.samples):
      flag = "" if s.within_tolerance else "  <- out of tolerance"
      lines.append(f"  sample {i}: {s.element}: max {s.max_abs_error:.3g}, "
                   f"mean {s.mean_abs_error:.3g}{flag}")
    return "\n".join(lines)


def _crop(tree: PyTree, axes: tuple[int, ...], c: int) -> PyTree:
  if c == 0:
    return tree

  def crop_leaf(y):
    index = [slice(None)] * y.ndim
    for a in axes:
      if y.shape[a] <= 2 * c:
        raise ValueError(f"cropping {c} pixels from each end of axis {a} leaves nothing of an "
                         f"output of shape {y.shape}")
      index[a] = slice(c, y.shape[a] - c)
    return y[tuple(index)]

  return jax.tree.map(crop_leaf, tree)


def _as_float(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda y: y if jnp.issubdtype(y.dtype, jnp.inexact) else y.astype(float),
                      tree)


def _leaf_atols(tree: PyTree, atol: float, scale_atol: bool) -> list[float]:
  return [atol * max(1.0, float(np.abs(leaf).max(initial=0.0))) if scale_atol else atol
          for leaf in jax.tree.leaves(tree)]


def _check(kind: str, f: Callable, x: PyTree, action: GroupAction, key: jax.Array, *,
           atol: float, rtol: float, n_samples: int, crop: int, jit: bool,
           raise_on_failure: bool, scale_atol: bool) -> SymmetryReport:
  if not (atol >= 0 and rtol >= 0):
    raise ValueError(f"atol and rtol must be >= 0, got atol={atol}, rtol={rtol}")
  if n_samples < 1 or crop < 0:
    raise ValueError(f"need n_samples >= 1 and crop >= 0, got {n_samples}, {crop}")
  total_crop = crop + action.boundary if kind == "equivariant" else 0

  def compared(g, x):
    """(f(g.x), g.f(x) or f(x)), cropped, as floats."""
    y = f(x)
    lhs = f(action.act(g, x))
    rhs = action.act_output(g, y) if kind == "equivariant" else y
    if jax.tree.structure(lhs) != jax.tree.structure(rhs) or any(
        a.shape != b.shape for a, b in zip(jax.tree.leaves(lhs), jax.tree.leaves(rhs))):
      # Not an AssertionError: a check expected to fail must fail by its errors, not this.
      raise ValueError(f"f(g.x) and g.f(x) differ in structure or shape "
                       f"({jax.tree.map(jnp.shape, lhs)} against {jax.tree.map(jnp.shape, rhs)}):"
                       " the action does not fit the model's output")
    return (_as_float(_crop(lhs, action.out_spatial_axes, total_crop)),
            _as_float(_crop(rhs, action.out_spatial_axes, total_crop)))

  compared_fn = jax.jit(compared) if jit else compared
  samples, failures, dtypes, scale, effective_atol = [], [], set(), 0.0, atol
  for g in action.sample_n(key, n_samples):
    lhs, rhs = compared_fn(g, x)
    dtypes |= {str(leaf.dtype) for leaf in jax.tree.leaves(lhs)}
    lhs, rhs = jax.device_get((lhs, rhs))
    if not all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(rhs)):
      raise ValueError("g.f(x) is not finite: the model's output on x is not, so there is "
                       "nothing to compare")
    errors = np.concatenate([np.abs(a - b).ravel() for a, b in
                             zip(jax.tree.leaves(lhs), jax.tree.leaves(rhs))])
    scale = max([scale] + [float(np.abs(leaf).max(initial=0.0)) for leaf in jax.tree.leaves(rhs)])
    leaf_atols = _leaf_atols(rhs, atol, scale_atol)
    effective_atol = max([effective_atol] + leaf_atols)
    try:
      chex.assert_tree_all_finite(lhs)
      for a, b, leaf_atol in zip(jax.tree.leaves(lhs), jax.tree.leaves(rhs), leaf_atols):
        chex.assert_trees_all_close(a, b, atol=leaf_atol, rtol=rtol)
      ok = True
    except AssertionError as e:
      ok = False
      failures.append(str(e))
    samples.append(SampleError(action.describe(g), float(errors.max(initial=0.0)),
                               float(errors.mean()) if errors.size else 0.0, ok))
  report = SymmetryReport(kind, repr(action), ",".join(sorted(dtypes)), effective_atol, rtol,
                          total_crop, jit, scale, tuple(samples))
  if failures and raise_on_failure:
    raise AssertionError(f"{report}\nfirst failure (chex): {failures[0]}")
  return report


def check_equivariant(f: Callable[[PyTree], PyTree], x: PyTree, action: GroupAction,
                      key: jax.Array, *, atol: float, rtol: float, n_samples: int = 4,
                      crop: int = 0, jit: bool = False, raise_on_failure: bool = True,
                      scale_atol: bool = False) -> SymmetryReport:
  """Checks f(g.x) = g.f(x) for `n_samples` random g drawn from `key`.

  Args:
    f: the map (e.g. `lambda x: model.apply(variables, x)`); pytrees in and out.
    x: an input (batched: the same g acts on every example).
    action: the group action; `action.act_output` is g on the output.
    key: PRNG key the group elements are drawn from.
    atol, rtol: per-entry tolerance |f(g.x) - g.f(x)| <= atol + rtol |g.f(x)|.
    n_samples: how many group elements.
    crop: receptive-field radius (output pixels) of a zero-padded map; `crop +
      action.boundary` pixels are cut from each end of `action.out_spatial_axes`.
    jit: compile f and the comparison (the element is traced).
    raise_on_failure: raise (below) when out of tolerance; False returns the failed report.
    scale_atol: atol per unit of each output leaf's magnitude above 1 (module docstring).

  Returns:
    The `SymmetryReport`.

  Raises:
    AssertionError: with the report, if any entry is out of tolerance or not finite.
  """
  return _check("equivariant", f, x, action, key, atol=atol, rtol=rtol, n_samples=n_samples,
                crop=crop, jit=jit, raise_on_failure=raise_on_failure, scale_atol=scale_atol)


def check_invariant(f: Callable[[PyTree], PyTree], x: PyTree, action: GroupAction,
                    key: jax.Array, *, atol: float, rtol: float, n_samples: int = 4,
                    jit: bool = False, raise_on_failure: bool = True,
                    scale_atol: bool = False) -> SymmetryReport:
  """Checks f(g.x) = f(x) for `n_samples` random g drawn from `key`; see `check_equivariant`."""
  return _check("invariant", f, x, action, key, atol=atol, rtol=rtol, n_samples=n_samples,
                crop=0, jit=jit, raise_on_failure=raise_on_failure, scale_atol=scale_atol)
