"""The suite on a model dl_jax did not write: an `e3nn-jax` point-cloud layer, checked the way an
outside user checks theirs (section 4.4: the blueprint on "more exotic domains").

`E3nnDisplacement` moves each point by a learned combination of the spherical harmonics of its
displacements to the others (l = 1 and 2, radial weights from a small MLP) and of its velocity;
it is E(3)-equivariant. Its chiral twin adds r_ij x v_j, a pseudovector (1e): equivariant under
rotations (SE(3)), not under reflections, and the suite must tell the two apart.
"""

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from dl_jax.symmetry import euclidean
from dl_jax.symmetry.check import check_equivariant

POINTS = 6
KEY = jax.random.PRNGKey(0)


class E3nnDisplacement(nn.Module):
  """x_i' = x_i + sum_{j != i} w(|r_ij|) L[Y(r_ij), Y(r_ij) (x) Y(r_ij)]_1o + L[v_i]_1o with
  r_ij = x_i - x_j (plus the cross term r_ij x v_i when `chiral`)."""
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


def _cloud(dtype):
  k1, k2 = jax.random.split(jax.random.PRNGKey(1))
  return {"positions": jax.random.normal(k1, (2, POINTS, 3), dtype),
          "velocities": jax.random.normal(k2, (2, POINTS, 3), dtype)}


def _model(chiral: bool, dtype):
  cloud = _cloud(dtype)
  module = E3nnDisplacement(chiral=chiral)
  params = module.init(KEY, cloud)
  return (lambda c: module.apply(params, c)), cloud


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_e3nn_layer_is_e3_equivariant(jit):
  f, cloud = _model(False, jnp.float32)
  action = euclidean.EuclideanAction(POINTS, reflection_probability=0.5, permutations=True)
  report = check_equivariant(f, cloud, action, KEY, atol=1e-5, rtol=1e-5, n_samples=4, jit=jit)
  assert report.passed and report.output_scale > 0.1


def test_e3nn_layer_float64_at_rounding_level():
  with jax.enable_x64(True):
    f, cloud = _model(False, jnp.float64)
    action = euclidean.EuclideanAction(POINTS, reflection_probability=0.5, permutations=True)
    report = check_equivariant(f, cloud, action, KEY, atol=1e-12, rtol=1e-12, n_samples=4,
                               jit=True)
  assert "float64" in report.dtype and report.max_abs_error < 1e-12


def test_chiral_e3nn_layer_is_se3_but_not_e3_equivariant():
  f, cloud = _model(True, jnp.float32)
  check_equivariant(f, cloud, euclidean.EuclideanAction(POINTS, permutations=True), KEY,
                    atol=1e-5, rtol=1e-5, n_samples=4)
  mirror = euclidean.EuclideanAction(POINTS, rotations=False, translations=False,
                                     reflection_probability=1.0)
  with pytest.raises(AssertionError, match="FAILED"):
    check_equivariant(f, cloud, mirror, KEY, atol=1e-5, rtol=1e-5, n_samples=4)
