"""Symmetry as a tested property (chapter 4): every declared symmetry of every registered model
on arrays (`dl_jax.models.registry`, families image, set and point_cloud; the node and graph
families are checked on GraphsTuples in `tests/test_graph_symmetry.py`) and layer
(`dl_jax.symmetry.layers`) goes through the one checker, eagerly and jitted, in float32
(tolerance 1e-5) and float64 (1e-10), the absolute tolerance in units of the output's magnitude
where that exceeds 1; negative controls show the checker fails on maps that lack the symmetry.
Adding a registry entry adds its tests.

`pytest tests/test_symmetry.py -rP -k float32` prints each report (max/mean errors).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax.data.images import augment as augment_lib
from dl_jax.errors import ConfigError
from dl_jax.models import blueprint as blueprint_models
from dl_jax.models import registry
from dl_jax.nn import group_conv as gc
from dl_jax.nn.conv import Conv
from dl_jax.symmetry import blueprint as bp
from dl_jax.symmetry import euclidean, groups, layers
from dl_jax.symmetry import vocabulary as sym
from dl_jax.symmetry.check import check_equivariant, check_invariant
from dl_jax.symmetry import suite
from dl_jax.symmetry.suite import random_variables

TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
KEY = jax.random.PRNGKey(0)


ARRAY_FAMILIES = ("image", "set", "point_cloud")  # inputs the vocabulary's actions move
GRAPH_FAMILIES = ("node", "graph")  # tests/test_graph_symmetry.py


def _cases():
  cases = [("model", name, s) for family in ARRAY_FAMILIES for name in registry.names(family)
           for s in registry.get(name).symmetries]
  cases += [("layer", name, s) for name in layers.names() for s in layers.get(name).symmetries]
  return cases


CASES = _cases()
IDS = [f"{source}:{name}:{symmetry}" for source, name, symmetry in CASES]


SPECS = {spec.name: spec for spec in suite.registry_specs()}  # "model:<name>", "layer:<name>"


def setup_case(source: str, name: str, dtype):
  """(f, x, params) for one registry entry, through the public suite (`suite.setup`, cached):
  random variables (seed 2), input and all in `dtype`."""
  s = suite.setup(SPECS[f"{source}:{name}"], jnp.dtype(dtype).name, seed=2)
  return s.f, s.x, dataclasses.asdict(s.params)


def run_case(source, name, symmetry, dtype, jit):
  f, x, params = setup_case(source, name, dtype)
  declared, action, crop = sym.action_for(symmetry, x, params)
  # atol in units of each output's magnitude where that exceeds 1 (`scale_atol`): float32
  # keeps 7 digits, and the point-cloud models' outputs reach 1e3 under random weights.
  tol = TOLERANCE[jnp.dtype(dtype).name]
  if declared.kind == "equivariant":
    report = check_equivariant(f, x, action, jax.random.PRNGKey(2), atol=tol, rtol=tol,
                               n_samples=3, crop=crop, jit=jit, scale_atol=True)
  else:
    report = check_invariant(f, x, action, jax.random.PRNGKey(2), atol=tol, rtol=tol,
                             n_samples=3, jit=jit, scale_atol=True)
  print(f"{source}:{name}:{symmetry}: {report}")
  assert report.passed and report.output_scale > 0.1, report  # not vacuously zero
  return report


# ---------------------------------------------------------------------------------------------
# Every declared symmetry.

def test_registries_declare_symmetries_from_the_vocabulary():
  assert CASES, "no registered model or layer declares a symmetry"
  for name in registry.names():  # every declared symmetry is tested here or for graphs
    spec = registry.get(name)
    assert not spec.symmetries or spec.family in ARRAY_FAMILIES + GRAPH_FAMILIES, name
  for _, name, symmetry in CASES:
    sym.get(symmetry)
  names = {(source, name) for source, name, _ in CASES}
  for expected in (("model", "p4cnn"), ("model", "blueprint_grid"), ("model", "blueprint_set"),
                   ("layer", "circular_conv"), ("layer", "pool_stack"),
                   ("layer", "deepsets_linear"), ("layer", "blueprint_graph_edges"),
                   ("layer", "gnn_gcn"), ("layer", "gnn_gat"), ("layer", "gnn_graph_gin"),
                   ("model", "egnn")):
    assert expected in names


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("source,name,symmetry", CASES, ids=IDS)
def test_declared_symmetry_float32(source, name, symmetry, jit):
  run_case(source, name, symmetry, jnp.float32, jit)


@pytest.mark.parametrize("source,name,symmetry", CASES, ids=IDS)
def test_declared_symmetry_float64(source, name, symmetry):
  with jax.enable_x64(True):
    report = run_case(source, name, symmetry, jnp.float64, jit=True)
  assert "float64" in report.dtype and "float32" not in report.dtype


# ---------------------------------------------------------------------------------------------
# Negative controls: maps without the symmetry must make the checker raise.

def _init(module, x, **kwargs):
  variables = random_variables(module, x, seed=3, **kwargs)
  return lambda x: module.apply(variables, x, **kwargs)


class DenseImage(nn.Module):
  """A fully connected layer from an image to an image of the same shape (figure 4.11)."""

  @nn.compact
  def __call__(self, x):
    return nn.Dense(x[0].size)(x.reshape(x.shape[0], -1)).reshape(x.shape)


def test_dense_layer_is_not_translation_equivariant():
  x = jax.random.normal(KEY, (2, 8, 8, 1))
  with pytest.raises(AssertionError, match="FAILED"):
    check_equivariant(_init(DenseImage(), x), x, groups.CircularShift(), KEY, atol=1e-5,
                      rtol=1e-5)


def test_odd_shift_through_a_stride_2_layer_is_not_equivariant():
  x = jax.random.normal(KEY, (2, 12, 12, 3))
  f = _init(bp.CircularConv(8, 3, strides=2), x)
  check_equivariant(f, x, groups.CircularShift(stride=2), KEY, atol=1e-5, rtol=1e-5)
  with pytest.raises(AssertionError, match="out of tolerance"):
    check_equivariant(f, x, groups.CircularShift(stride=2, phase=1), KEY, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_zero_padding_is_exact_only_in_the_interior(jit):
  x = jax.random.normal(KEY, (2, 16, 16, 3))
  f = _init(Conv(8, 5, padding="SAME"), x)  # receptive-field radius 2
  shift = groups.Shift(max_shift=1)
  report = check_equivariant(f, x, shift, KEY, atol=1e-5, rtol=1e-5, crop=2, jit=jit)
  assert report.crop == 3  # radius 2 + largest shift 1
  # Without the radius only the shift's own border (1 pixel) is cut: the output 1 pixel from
  # the border still reads the zero padding where the shifted input had lost content.
  with pytest.raises(AssertionError, match="FAILED"):
    check_equivariant(f, x, shift, KEY, atol=1e-5, rtol=1e-5, crop=0, jit=jit)
  with pytest.raises(AssertionError, match="FAILED"):  # nor circularly
    check_equivariant(f, x, groups.CircularShift(), KEY, atol=1e-5, rtol=1e-5, jit=jit)


def test_positional_encodings_break_permutation_invariance():
  x = jax.random.normal(KEY, (2, 16, 3))
  model = blueprint_models.SetInvariantNet()
  f = _init(model, x)
  check_invariant(f, x, groups.Permutation(16), KEY, atol=1e-5, rtol=1e-5)
  position = jnp.arange(16)[:, None] / 16.0
  encoding = jnp.concatenate([jnp.sin(np.pi * position), jnp.cos(np.pi * position),
                              position], axis=-1)
  with pytest.raises(AssertionError, match="FAILED"):
    check_invariant(lambda x: f(x + encoding), x, groups.Permutation(16), KEY, atol=1e-5,
                    rtol=1e-5)


def test_plain_cnn_is_not_p4_invariant_and_p4cnn_is_not_p4m_invariant():
  x = jax.random.normal(KEY, (2, 28, 28, 1))
  with pytest.raises(AssertionError, match="FAILED"):
    check_invariant(_init(registry.build("mnist_cnn"), x, train=False), x, groups.Rotation90(),
                    KEY, atol=1e-5, rtol=1e-5)
  p4cnn = _init(registry.build("p4cnn"), x, train=False)
  check_invariant(p4cnn, x, groups.Rotation90(), KEY, atol=1e-5, rtol=1e-5)
  with pytest.raises(AssertionError, match="FAILED"):  # mirror images are not in p4
    check_invariant(p4cnn, x, groups.Rotation90Flip(), KEY, atol=1e-5, rtol=1e-5, n_samples=8)


def test_message_passing_on_raw_coordinates_is_not_e3_equivariant():
  """The EGNN paper's GNN baseline reads absolute coordinates: relabelling the particles
  commutes with it, rotations, reflections and translations do not (section 4.4, E(3))."""
  cloud = registry.get("nbody_gnn").example_inputs(2)[0]
  f = _init(registry.build("nbody_gnn"), cloud)
  check_equivariant(f, cloud, euclidean.EuclideanAction(5, rotations=False, translations=False,
                                                        permutations=True), KEY, atol=1e-5,
                    rtol=1e-5)
  for components in (dict(translations=False), dict(rotations=False),
                     dict(rotations=False, translations=False, reflection_probability=1.0)):
    with pytest.raises(AssertionError, match="FAILED"):
      check_equivariant(f, cloud, euclidean.EuclideanAction(5, **components), KEY, atol=1e-5,
                        rtol=1e-5)


def test_lifting_without_rotated_filters_is_not_rotation_equivariant(monkeypatch):
  x = jax.random.normal(KEY, (2, 12, 12, 3))
  action = groups.Rotation90(out_group_axis=3)
  check_equivariant(_init(gc.P4Lifting(4, 3), x), x, action, KEY, atol=1e-5, rtol=1e-5)
  monkeypatch.setattr(gc, "lifting_filters", lambda k: jnp.concatenate([k] * 4, axis=-1))
  with pytest.raises(AssertionError, match="FAILED"):
    check_equivariant(_init(gc.P4Lifting(4, 3), x), x, action, KEY, atol=1e-5, rtol=1e-5)


def test_a_small_perturbation_is_detected():
  x = jax.random.normal(KEY, (2, 12, 12, 3))
  f = _init(bp.CircularConv(8, 3), x)
  ramp = 1e-4 * jnp.arange(12.0)[:, None, None]  # position-dependent, 1e-4 relative
  with pytest.raises(AssertionError, match="FAILED"):
    check_equivariant(lambda x: f(x) + ramp, x, groups.CircularShift(), KEY, atol=1e-5,
                      rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# The checker itself.

def test_finite_groups_check_every_element_other_than_the_identity():
  """A map invariant under the half turn only: three random draws from C4 would all be the half
  turn one time in 27; every non-identity element is checked, so it fails whatever the key."""
  assert [int(g) for g in groups.Rotation90().sample_n(KEY, 1)] == [1, 2, 3]
  assert [int(g) for g in groups.Rotation90Flip().sample_n(KEY, 3)] == list(range(1, 8))
  x = jax.random.normal(KEY, (2, 6, 6, 1))
  half_turn_invariant = lambda x: x + jnp.rot90(x, 2, (1, 2))
  np.testing.assert_allclose(half_turn_invariant(groups.Rotation90().act(2, x)),
                             half_turn_invariant(x), atol=1e-6)  # the negative control
  for seed in range(3):
    report = check_invariant(half_turn_invariant, x, groups.Rotation90(),
                             jax.random.PRNGKey(seed), atol=1e-5, rtol=1e-5, n_samples=1,
                             raise_on_failure=False)
    assert not report.passed
    assert [s.within_tolerance for s in report.samples] == [False, True, False]


def test_shifts_never_draw_the_identity():
  """Zero shift would test nothing: it is never drawn, and every other shift is, about equally
  often; with a phase every shift moves the input, so k = 0 is drawn too."""
  shift = groups.CircularShift(max_shift=1)
  keys = jax.random.split(KEY, 4000)
  draws = np.asarray(jax.vmap(shift.sample)(keys))
  offsets, counts = np.unique(draws, axis=0, return_counts=True)
  assert [0, 0] not in offsets.tolist() and len(offsets) == 8
  assert counts.min() > 0.8 * 4000 / 8, counts
  phased = np.asarray(jax.vmap(groups.CircularShift(max_shift=2, stride=2, phase=1).sample)(keys))
  assert [0, 0] in phased.tolist()


def test_point_cloud_keys_without_a_role_are_refused():
  """An unknown key taken for a scalar would never be rotated: a model mixing its components
  would pass. Known names get their role; others are refused, naming the accepted keys."""
  assert [euclidean.role_of(k) for k in ("pos", "normals", "masses")] == [
      "point", "vector", "scalar"]
  action = euclidean.EuclideanAction(4)
  cloud = {"positions": jnp.ones((1, 4, 3)), "spins": jnp.ones((1, 4, 3))}
  with pytest.raises(ValueError, match="point cloud key 'spins' has no role; accepted keys: "
                     "points positions"):
    action.act(action.sample(KEY), cloud)


def test_a_check_that_cannot_compare_is_not_a_symmetry_failure():
  """A non-finite output or outputs of another shape raise ValueError, not the AssertionError
  of a failed check: a model expected to fail (strict xfail on AssertionError) must fail by its
  errors."""
  x = jax.random.normal(KEY, (2, 6, 6, 1))
  with pytest.raises(ValueError, match="g.f\\(x\\) is not finite"):
    check_invariant(lambda x: x / 0.0, x, groups.Rotation90(), KEY, atol=1e-5, rtol=1e-5)
  with pytest.raises(ValueError, match="differ in structure or shape"):
    check_equivariant(lambda x: x[:, :, :3], x, groups.Rotation90(), KEY, atol=1e-5, rtol=1e-5)
  with pytest.raises(AssertionError):  # the negative control: a real failure
    check_invariant(lambda x: x, x, groups.Rotation90(), KEY, atol=1e-5, rtol=1e-5)


def test_checker_report_and_arguments():
  x = jax.random.normal(KEY, (2, 8, 8, 3))
  report = check_equivariant(nn.relu, x, groups.CircularShift(), KEY, atol=0.0, rtol=0.0,
                             n_samples=5)
  assert report.passed and report.max_abs_error == report.mean_abs_error == 0.0
  assert len(report.samples) == 5 and "PASSED" in str(report)
  again = check_equivariant(nn.relu, x, groups.CircularShift(), KEY, atol=0.0, rtol=0.0,
                            n_samples=5, jit=True)
  assert [s.element for s in again.samples] == [s.element for s in report.samples]
  with pytest.raises(TypeError):
    check_equivariant(nn.relu, x, groups.CircularShift(), KEY)  # pylint: disable=missing-kwoa
  with pytest.raises(ValueError, match="atol"):
    check_invariant(nn.relu, x, groups.Rotation90(), KEY, atol=-1.0, rtol=0.0)
  with pytest.raises(ValueError, match="leaves nothing"):
    check_equivariant(nn.relu, x, groups.Shift(max_shift=2), KEY, atol=0.0, rtol=0.0, crop=2)


def test_failure_report_lists_errors_per_sample():
  x = jax.random.normal(KEY, (2, 8, 8, 3))
  with pytest.raises(AssertionError) as info:
    check_invariant(lambda x: x[:, 0, 0], x, groups.CircularShift(), KEY, atol=1e-5, rtol=1e-5,
                    n_samples=3)
  message = str(info.value)
  assert "FAILED" in message and "max abs error" in message and "sample 2" in message
  assert "first failure (chex)" in message


def test_unknown_symmetry_and_params():
  with pytest.raises(ConfigError, match="unknown symmetry 'scale_invariant'"):
    sym.get("scale_invariant")
  with pytest.raises(ConfigError, match="bad symmetry params"):
    sym.action_for(sym.ROTATION_P4_INVARIANT, jnp.zeros((1, 4, 4, 1)), {"strides": 2})


# ---------------------------------------------------------------------------------------------
# The group actions.

def test_circular_and_zero_filled_shifts():
  x = jnp.arange(2 * 6 * 6, dtype=jnp.float32).reshape(2, 6, 6, 1)
  g = jnp.array([1, -2])
  np.testing.assert_array_equal(groups.CircularShift().act(g, x), np.roll(x, (1, -2), (1, 2)))
  expected = np.zeros_like(x)
  expected[:, 1:, :-2] = x[:, :-1, 2:]
  np.testing.assert_array_equal(groups.Shift(max_shift=2).act(g, x), expected)
  np.testing.assert_array_equal(jax.jit(groups.Shift(max_shift=2).act)(g, x), expected)
  strided = groups.CircularShift(stride=4, phase=1, max_shift=8)
  for k in jax.random.split(KEY, 20):
    element = strided.sample(k)
    assert int(jnp.abs(element).max()) <= 2
    shifted = strided.act(element, x)
    np.testing.assert_array_equal(shifted, np.roll(x, tuple(4 * np.asarray(element) + 1), (1, 2)))


def test_rotations_and_reflections_form_the_group():
  x = jax.random.normal(KEY, (1, 5, 5, 4, 2))
  rot = groups.Rotation90(group_axis=3, out_group_axis=3)
  y = x
  for _ in range(4):
    y = rot.act(jnp.array(1), y)
  np.testing.assert_array_equal(y, x)  # rot^4 = identity, the cyclic shift included
  np.testing.assert_array_equal(rot.act(jnp.array(2), x), rot.act(jnp.array(1), rot.act(
      jnp.array(1), x)))
  image = jax.random.normal(KEY, (1, 5, 5, 1))
  d4 = groups.Rotation90Flip()
  images = [np.asarray(d4.act(jnp.array(e), image)) for e in range(8)]
  assert len({im.tobytes() for im in images}) == 8  # 8 distinct images of a generic input
  np.testing.assert_array_equal(images[1], image[:, :, ::-1])


def test_euclidean_elements_are_orthogonal_and_haar_uniform():
  rotations = jax.vmap(euclidean.random_rotation)(jax.random.split(KEY, 4000))
  np.testing.assert_allclose(jnp.einsum("nij,nkj->nik", rotations, rotations),
                             jnp.broadcast_to(jnp.eye(3), (4000, 3, 3)), atol=1e-5)
  np.testing.assert_allclose(jnp.linalg.det(rotations), 1.0, atol=1e-5)
  # Haar measure on SO(3): E[Q] = 0, and the trace 1 + 2 cos(angle) has mean 0 and variance 1.
  np.testing.assert_allclose(rotations.mean(axis=0), 0.0, atol=0.05)
  traces = jnp.trace(rotations, axis1=1, axis2=2)
  assert abs(float(traces.mean())) < 0.05 and abs(float(traces.var()) - 1.0) < 0.08
  mirror = euclidean.random_reflection(KEY)
  np.testing.assert_allclose(mirror @ mirror, jnp.eye(3), atol=1e-6)
  assert float(jnp.linalg.det(mirror)) == pytest.approx(-1.0, abs=1e-5)
  dets = [float(jnp.linalg.det(euclidean.EuclideanAction(4, reflection_probability=0.5).sample(
      k)["rotation"])) for k in jax.random.split(KEY, 40)]
  assert {round(d) for d in dets} == {-1, 1}


def test_euclidean_action_moves_each_role_and_composes():
  cloud = registry.get("egnn").example_inputs(2)[0]
  action = euclidean.EuclideanAction(5, reflection_probability=0.5, permutations=True)
  g, h = action.sample(jax.random.PRNGKey(1)), action.sample(jax.random.PRNGKey(2))
  moved = action.act(g, cloud)
  q, t, perm = g["rotation"], g["translation"], g["permutation"]
  np.testing.assert_allclose(moved["positions"], cloud["positions"][:, perm] @ q.T + t,
                             atol=1e-6)
  np.testing.assert_allclose(moved["velocities"], cloud["velocities"][:, perm] @ q.T, atol=1e-6)
  np.testing.assert_array_equal(moved["charges"], cloud["charges"][:, perm])
  # g.(h.x) = (gh).x with gh = (Q_g Q_h, Q_g t_h + t_g, perm_h[perm_g])
  gh = {"rotation": g["rotation"] @ h["rotation"],
        "translation": h["translation"] @ g["rotation"].T + g["translation"],
        "permutation": h["permutation"][g["permutation"]]}
  for key in cloud:
    np.testing.assert_allclose(action.act(g, action.act(h, cloud))[key],
                               action.act(gh, cloud)[key], atol=1e-5)
  with pytest.raises(ValueError, match="accepted: point, vector, scalar"):
    euclidean.EuclideanAction(5, output="tensor")


def test_permutation_acts_as_p_x_and_p_a_p_transpose():
  graph = layers.random_graph(1, 6, 3)(KEY)
  perm = groups.Permutation(6).sample(jax.random.PRNGKey(5))
  p = jnp.eye(6)[perm]  # P[i, perm[i]] = 1
  moved = groups.permute_graph(perm, graph)
  np.testing.assert_allclose(moved["nodes"][0], p @ graph["nodes"][0], atol=1e-6)
  np.testing.assert_array_equal(moved["adjacency"][0], p @ graph["adjacency"][0] @ p.T)


def test_edge_lists_relabel_like_the_adjacency():
  graph = layers.random_graph(2, 7, 3, edges=12)(KEY)
  perm = groups.Permutation(7).sample(jax.random.PRNGKey(6))
  moved = groups.permute_graph(perm, graph)

  def adjacency(g):  # A[i, j] = number of edges j -> i
    return jax.vmap(lambda s, r: jnp.zeros((7, 7)).at[r, s].add(1.0))(g["senders"],
                                                                      g["receivers"])

  np.testing.assert_array_equal(adjacency(moved),
                                groups.permute_graph(perm, {"adjacency": adjacency(graph)})[
                                    "adjacency"])
  np.testing.assert_allclose(bp.neighbour_sum(graph),
                             bp.neighbour_sum({"nodes": graph["nodes"],
                                               "adjacency": adjacency(graph)}), atol=1e-5)


def test_group_average_of_any_map_is_invariant():
  x = jax.random.normal(KEY, (2, 6, 6, 1))
  f = lambda x: x[:, 0, 1:3, 0] * x[:, 2, 3:5, 0]  # no symmetry at all
  averaged = groups.group_average(f, groups.Rotation90Flip())
  check_invariant(averaged, x, groups.Rotation90Flip(), KEY, atol=1e-6, rtol=1e-6, n_samples=7)
  with pytest.raises(AssertionError):
    check_invariant(f, x, groups.Rotation90Flip(), KEY, atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Augmentation (dl_jax.data.images.augment).

def test_augment_rot90_and_flip_are_the_exact_group_actions():
  x = jax.random.normal(KEY, (16, 10, 10, 2))
  y = augment_lib.augment(jax.random.PRNGKey(1), x, augment_lib.AugmentConfig(rot90=True))
  for i in range(16):
    assert any(np.array_equal(y[i], np.rot90(x[i], k)) for k in range(4))
  y = augment_lib.augment(jax.random.PRNGKey(1), x, augment_lib.AugmentConfig(flip=True))
  flipped = [np.array_equal(y[i], x[i, :, ::-1]) for i in range(16)]
  assert all(f or np.array_equal(y[i], x[i]) for i, f in enumerate(flipped))
  assert 0 < sum(flipped) < 16
  np.testing.assert_array_equal(augment_lib.augment(KEY, x, augment_lib.AugmentConfig()), x)


def test_augment_shift_matches_the_zero_filled_shift():
  x = jax.random.normal(KEY, (1, 9, 9, 1))
  y = augment_lib.affine_transform(x[0], jnp.eye(2), jnp.array([2.0, -1.0]))
  np.testing.assert_array_equal(y[None], groups.Shift(max_shift=2).act(jnp.array([2, -1]), x))


def test_augment_integer_shifts_are_uniform_over_the_offsets():
  """A random crop padded by 2: offsets -2..2 on each axis, each drawn 1/5 of the time (rounding
  a uniform shift, the negative control, draws the outer ones half as often)."""
  keys = jax.random.split(KEY, 20_000)
  config = augment_lib.AugmentConfig(max_shift=2)
  shifts = np.asarray(jax.vmap(lambda k: augment_lib.sample_transform(k, config)[1])(keys))
  offsets, counts = np.unique(shifts, return_counts=True)
  assert offsets.tolist() == [-2, -1, 0, 1, 2]
  assert np.abs(counts / shifts.size - 0.2).max() < 0.01, counts / shifts.size
  rounded = np.round(np.asarray(jax.random.uniform(KEY, (20_000, 2), minval=-2, maxval=2)))
  assert np.abs(np.unique(rounded, return_counts=True)[1] / rounded.size - 0.2).max() > 0.05


def test_augment_is_pure_and_keeps_shape_dtype_and_range():
  x = jax.random.uniform(KEY, (8, 28, 28, 1), minval=-1.0, maxval=1.0)
  config = augment_lib.AugmentConfig(max_shift=3, max_rotation=20, flip=True, max_shear=15,
                                     zoom=(0.8, 1.2), fill=-1.0)
  a = augment_lib.augment(jax.random.PRNGKey(4), x, config)
  b = augment_lib.augment(jax.random.PRNGKey(4), x, config)
  c = augment_lib.augment(jax.random.PRNGKey(5), x, config)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c) and a.shape == x.shape and a.dtype == x.dtype
  assert -1.0 - 1e-6 <= float(a.min()) and float(a.max()) <= 1.0 + 1e-6  # bilinear: convex
  rotation = augment_lib.affine_transform(x[0], augment_lib._rotation(jnp.pi / 2), jnp.zeros(2))
  np.testing.assert_allclose(rotation, np.rot90(x[0]), atol=1e-5)  # sign convention


def test_augment_rejects_bad_settings():
  with pytest.raises(ConfigError, match="order=3"):
    augment_lib.AugmentConfig(order=3)
  with pytest.raises(ConfigError, match="zoom"):
    augment_lib.AugmentConfig(zoom=(1.2, 0.8))
  with pytest.raises(ConfigError, match="mode='edge'"):
    augment_lib.AugmentConfig(mode="edge")
