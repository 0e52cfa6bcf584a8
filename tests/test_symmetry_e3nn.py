"""The suite on a model dl_jax did not write: an `e3nn-jax` point-cloud layer, checked the way an
outside user checks theirs (section 4.4: the blueprint on "more exotic domains").

`E3nnDisplacement` moves each point by a learned combination of the spherical harmonics of its
displacements to the others (l = 1 and 2, radial weights from a small MLP) and of its velocity;
it is E(3)-equivariant. Its chiral twin adds r_ij x v_j, a pseudovector (1e): equivariant under
rotations (SE(3)), not under reflections, and the suite must tell the two apart. Both are
declared and checked through `dl_jax.symmetry.suite`, as a user checks their own model.
"""

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from dl_jax.symmetry import suite

POINTS = 6


class E3nnDisplacement(nn.Module):
  """x_i' = x_i + sum_{j != i} w(|r_ij|) L[Y(r_ij), Y(r_ij) (x) Y(r_ij)]_1o + L[v_i]_1o with
  r_ij = x_i - x_j (plus the cross term r_ij x v_j in the sum when `chiral`)."""
  chiral: bool = False

  @nn.compact
  def __call__(self, cloud):
    x, v = cloud["positions"], cloud["velocities"]
    n = x.shape[1]
    off = ~jnp.eye(n, dtype=bool)[None, :, :, None]
    r = jnp.where(off, x[:, :, None] - x[:, None], 1.0)  # the diagonal is masked out below
    sh = e3nn.spherical_harmonics("1o + 2e", r, normalize=True, normalization="component")
    pairs = e3nn.concatenate([sh, e3nn.tensor_product(sh, sh, filter_ir_out=("1o",))])
    message = e3nn.flax.Linear("1o")(pairs.regroup()).array  # [B, n, n, 3]
    radial = e3nn.soft_one_hot_linspace(jnp.linalg.norm(r, axis=-1), start=0.0, end=5.0,
                                        number=8, basis="smooth_finite", cutoff=False)
    weight = nn.Dense(1)(nn.silu(nn.Dense(16)(radial)))
    if self.chiral:
      message = message + jnp.cross(r, jnp.broadcast_to(v[:, None], r.shape))
    displacement = jnp.sum(jnp.where(off, weight * message, 0.0), axis=2)
    speed = e3nn.flax.Linear("1o")(e3nn.IrrepsArray("1o", v)).array
    return x + displacement + speed


def _cloud(key):
  k1, k2 = jax.random.split(key)
  return {"positions": jax.random.normal(k1, (2, POINTS, 3)),
          "velocities": jax.random.normal(k2, (2, POINTS, 3))}


def _spec(module, *symmetries):
  """The layer declared as a user declares theirs (`dl_jax.symmetry.suite`)."""
  return suite.SymmetrySpec(lambda: module, symmetries, make_input=_cloud, n_samples=4,
                            name=f"{type(module).__name__}(chiral={module.chiral})")


def test_e3nn_layer_passes_the_suite():
  report = suite.run_checks(_spec(E3nnDisplacement(), "e3_equivariant"))
  print(report.table(), report.vacuity_line(), sep="\n")
  assert report.ok and not report.vacuous and len(report.broken) == 2  # float32 and float64
  float64 = [c for c in report.checks if c.dtype == "float64"]
  assert float64 and all(c.max_abs_error < 1e-12 for c in float64)
  dets = {round(float(e.element.split(",")[0].split()[1])) for c in report.checks
          for e in c.report.samples}
  assert dets == {-1, 1}  # proper and improper elements were both checked


def chiral_map(cloud):
  """x_i + (x_i - mean x) x v_i: a pseudovector added to a point, rotation-equivariant only."""
  x, v = cloud["positions"], cloud["velocities"]
  return x + jnp.cross(x - x.mean(axis=1, keepdims=True), v)


@pytest.mark.parametrize("seed", range(4))
def test_a_chiral_map_fails_e3_and_passes_se3(seed):
  """The reflections are always checked: n >= 2 elements alternate det +1 and det -1."""
  for make, kind in ((lambda: chiral_map, "function"),
                     (lambda: E3nnDisplacement(chiral=True), "e3nn")):
    spec = suite.SymmetrySpec(make, ("e3_equivariant", "se3_equivariant"), make_input=_cloud,
                              dtypes=("float32",), vacuity=False, name=kind)
    e3 = suite.run_check(spec, "e3_equivariant", "float32", "jit", seed=seed, n_samples=2)
    se3 = suite.run_check(spec, "se3_equivariant", "float32", "jit", seed=seed, n_samples=2)
    assert not e3.passed and se3.passed, (kind, e3.report, se3.report)
