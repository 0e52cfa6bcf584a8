"""The charged N-body system (`dl_jax.data.physics.nbody`) and its task: the simulator against
`jax.grad` of the Coulomb potential, Newton's third law, energy conservation, first-order
convergence in dt, the symmetry of the simulated physics under E(3) and relabelling, the cached
dataset; then a short real training of each N-body experiment (the full runs, which check the
README targets, run with `./launch.sh test --full-training -k nbody`)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax.data.physics import nbody
from dl_jax.symmetry import euclidean
from experiments import report


def _systems(count: int, seed: int = 7):
  return nbody.initial_conditions(np.random.default_rng(seed), count)


def test_forces_are_minus_the_gradient_of_the_coulomb_potential():
  x, _, q = _systems(16)

  def potential(x, q):  # sum over pairs i < j of q_i q_j / |x_i - x_j|
    diff = x[:, None] - x[None]
    r = jnp.sqrt(jnp.sum(diff ** 2, -1) + jnp.eye(len(x)))
    return 0.5 * jnp.sum((q * q.T) / r * (1.0 - jnp.eye(len(x))))

  with jax.enable_x64(True):
    expected = np.stack([-jax.grad(potential)(jnp.asarray(xs), jnp.asarray(qs))
                         for xs, qs in zip(x, q)])
  np.testing.assert_allclose(nbody.forces(x, q, max_force=None), expected, rtol=1e-10,
                             atol=1e-12)
  np.testing.assert_allclose(nbody.forces(x, q, max_force=None).sum(axis=1), 0.0, atol=1e-10)
  clipped = nbody.forces(x, q, max_force=0.5)
  assert np.abs(clipped).max() == 0.5 and not np.array_equal(clipped, expected)


def test_energy_is_conserved_to_first_order_in_dt():
  """Symplectic Euler: the energy error after one time unit, and the position error against a
  16x finer integration, both halve when dt halves (medians over 32 systems; the energy in
  units of |E| + kinetic energy, since E of a bound system can be near 0)."""
  x, v, q = _systems(32)
  e0 = nbody.energy(x, v, q)
  scale = np.abs(e0) + 0.5 * np.sum(v ** 2, axis=(1, 2))

  def end_state(dt):  # one time unit, unclipped
    steps = int(round(1.0 / dt))
    xs, vs = nbody.simulate(x, v, q, num_frames=1, sample_every=steps, dt=dt, max_force=None)
    return xs[:, 0], vs[:, 0]

  reference = end_state(1e-3 / 16)[0]
  energy_errors, position_errors = [], []
  for dt in (1e-3, 5e-4):
    x1, v1 = end_state(dt)
    energy_errors.append(np.abs(nbody.energy(x1, v1, q) - e0) / scale)
    position_errors.append(np.abs(x1 - reference).max(axis=(1, 2)))
  assert np.median(energy_errors[0]) < 2e-3, np.median(energy_errors[0])
  for errors in (energy_errors, position_errors):
    ratio = np.median(errors[0] / errors[1])
    assert 1.6 < ratio < 2.6, ratio


def test_simulated_physics_is_e3_and_permutation_equivariant():
  """The symmetry the EGNN builds in is the data's: integrating rotated, reflected, translated
  and relabelled initial conditions gives the transformed trajectory (unclipped forces; the
  reference's per-component clip is the one term that is not rotation-equivariant)."""
  x, v, q = _systems(8)
  action = euclidean.EuclideanAction(nbody.NUM_PARTICLES, reflection_probability=0.5,
                                     permutations=True)
  with jax.enable_x64(True):
    g = jax.device_get(action.sample(jax.random.PRNGKey(3)))
    cloud = {"positions": x, "velocities": v, "charges": q}
    moved = {k: np.asarray(a) for k, a in action.act(g, cloud).items()}
    xs, vs = nbody.simulate(x, v, q, num_frames=3, sample_every=500, max_force=None)
    xs_g, vs_g = nbody.simulate(moved["positions"], moved["velocities"], moved["charges"],
                                num_frames=3, sample_every=500, max_force=None)
    for frame in range(3):
      np.testing.assert_allclose(
          xs_g[:, frame], np.asarray(euclidean.transform(g, jnp.asarray(xs[:, frame]), "point")),
          atol=1e-8)
      np.testing.assert_allclose(
          vs_g[:, frame], np.asarray(euclidean.transform(g, jnp.asarray(vs[:, frame]),
                                                         "vector")), atol=1e-8)


def test_frame_k_is_step_100_k_plus_100():
  """The reference generator's frames: its first recording (step 100) overwrites the initial
  state, so frame k is step 100 (k + 1)."""
  x, v, q = _systems(3)
  xs, _ = nbody.simulate(x, v, q, num_frames=2)
  one_step = nbody.simulate(x, v, q, num_frames=1, sample_every=1)[0][:, 0]
  np.testing.assert_allclose(one_step, x + nbody.DT * (v + nbody.DT * nbody.forces(x, q)))
  long = nbody.simulate(x, v, q, num_frames=1, sample_every=2 * nbody.SAMPLE_EVERY)[0][:, 0]
  np.testing.assert_array_equal(long, xs[:, 1])


def test_generation_is_a_pure_function_of_the_seed():
  a, b, c = nbody.generate(6, seed=5), nbody.generate(6, seed=5), nbody.generate(6, seed=6)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a["positions"], c["positions"])
  speeds = np.linalg.norm(nbody.initial_conditions(np.random.default_rng(0), 4)[1], axis=-1)
  np.testing.assert_allclose(speeds, nbody.SPEED)


def test_cached_dataset_has_the_papers_splits():
  data = nbody.load()
  assert {s: len(d["positions"]) for s, d in data.items()} == {"train": 3000, "val": 2000,
                                                                "test": 2000}
  for split in data.values():
    assert split["positions"].shape == (len(split["positions"]), 5, 3)
    assert split["positions"].dtype == np.float32
    assert set(np.unique(split["charges"])) == {-1.0, 1.0}
    # One time unit later: x + v is a first guess, far from exact (the forces matter).
    guess = np.mean((split["positions"] + split["velocities"] - split["target"]) ** 2)
    assert 0.05 < guess < 0.2, guess
  first = data["train"]["positions"][:50].reshape(50, -1)
  assert not any(np.allclose(first[i], row) for i in range(50)
                 for row in data["test"]["positions"][:200].reshape(200, -1))


# experiment -> (short flags, short target, full target): test MSE at the best validation epoch;
# the full targets guard the README's numbers against regression: the upper ends of their 95 %
# bootstrap intervals (EGNN 0.0083, GNN 0.0142, Linear 0.0853)
TRAININGS = {
    "nbody_egnn": (("--config.num_epochs=20",), 0.03, 0.0095),
    "nbody_gnn": (("--config.num_epochs=20",), 0.08, 0.0156),
    "nbody_linear": (("--config.num_epochs=20",), 0.09, 0.0902),
}


@pytest.mark.parametrize("name", sorted(TRAININGS))
def test_nbody_training(name, tmp_path, run_experiment, full_training):
  short_flags, short_target, full_target = TRAININGS[name]
  done = run_experiment(name, tmp_path, *(() if full_training else short_flags))
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["test_mse"] <= (full_target if full_training else short_target), results
  low, high = results["test_mse_interval95"]
  assert low < results["test_mse"] < high < 2 * results["test_mse"]
  errors = results["equivariance_errors_float64"]
  assert errors["permutation"]["relative_error"] < 1e-12  # every model relabels exactly
  exact = max(e["relative_error"] for e in errors.values()) < 1e-11
  assert exact == (name != "nbody_gnn"), errors  # the GNN on raw coordinates is not E(3)
  assert (tmp_path / "predictions.png").read_bytes()[:4] == b"\x89PNG"
  row = report.nbody_table([{**results, "run": name}]).splitlines()[-1]  # the README's table
  assert row.startswith(f"| `{name}` | `{results['model']}` | {results['param_count']:,} |")
  assert f"| {results['test_mse']:.4f} ({low:.4f}-{high:.4f}) |" in row


@pytest.mark.parametrize("flags,message", [
    (("--config.train_size=5000",), "train_size=5000 exceeds the 3000 training systems; "
                                    "accepted: 1..3000"),
    (("--config.model=mnist_cnn",), "unknown model 'mnist_cnn'; registered point_cloud models: "
                                    "egnn, nbody_gnn, nbody_linear"),
    (("--config.lr_schedule=linear",), "unknown lr_schedule 'linear'; accepted: constant, cosine"),
])
def test_bad_nbody_values_are_one_error_line(tmp_path, run_experiment, flags, message):
  done = run_experiment("nbody_egnn", tmp_path / "w", *flags)
  errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
  assert done.returncode == 2 and len(errors) == 1, done.stderr[-2000:]
  assert errors[0].startswith(f"error: {message}"), errors
  assert "Traceback" not in done.stderr and not (tmp_path / "w").exists()
