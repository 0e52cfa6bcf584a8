"""Data parallelism on 8 simulated CPU devices: the batch is really split 8 ways, and training
matches the single-device run within float tolerance (the reduction order differs).

The step-level comparison uses SGD with momentum: Adam divides by sqrt(v) and so magnifies
float32 noise in parameters whose gradients are near zero."""

import json
import sys
import textwrap

from tests.conftest import experiment_cmd, run

EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}

COMPARE_SCRIPT = textwrap.dedent("""
    import json
    import jax, numpy as np
    from jax.sharding import Mesh
    from dl_jax.models import registry
    from dl_jax import optim as optimizers
    from dl_jax.engine import sharding
    from dl_jax.tasks import image_classification as state_lib

    assert jax.device_count() == 8, jax.devices()
    rng = np.random.default_rng(0)
    images = rng.normal(size=(5, 64, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, (5, 64)).astype(np.int32)
    report = {}
    for name in ("mnist_mlp", "mnist_cnn"):
      params = {}
      for n_dev in (1, 8):
        mesh = Mesh(np.asarray(jax.devices()[:n_dev]), ("data",))
        state = state_lib.create_train_state(registry.build(name), optimizers.make_optimizer(
            "momentum", 0.05), jax.random.PRNGKey(0), (28, 28, 1))
        state = sharding.replicate(state, mesh)
        step = jax.jit(state_lib.train_step)
        for i in range(5):
          batch = sharding.shard_batch({"image": images[i], "label": labels[i]}, mesh)
          shards = batch["image"].addressable_shards
          assert len({s.device for s in shards}) == n_dev
          assert all(s.data.shape[0] == 64 // n_dev for s in shards)
          state, metrics = step(state, batch)
        assert len(state.params["Dense_0"]["kernel"].sharding.device_set) == n_dev  # replicated
        params[n_dev] = jax.device_get(state.params)
      diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))),
                                           params[1], params[8]))
      scale = max(float(np.max(np.abs(p))) for p in jax.tree.leaves(params[1]))
      report[name] = {"max_abs_diff": max(diffs), "max_abs_param": scale}
    print("REPORT " + json.dumps(report))
""")


def test_eight_devices_match_one_device():
  result = run([sys.executable, "-c", COMPARE_SCRIPT], env=EIGHT_DEVICES)
  assert result.returncode == 0, result.stderr
  report = json.loads(result.stdout.split("REPORT ")[1])
  for name, r in report.items():
    assert r["max_abs_diff"] < 1e-6, (name, r)


def test_full_run_on_eight_devices(tmp_path):
  flags = ("--config.max_steps=60", "--config.log_every_steps=20")
  one = run(experiment_cmd("mnist_mlp", tmp_path / "one", *flags))
  eight = run(experiment_cmd("mnist_mlp", tmp_path / "eight", *flags), env=EIGHT_DEVICES)
  assert one.returncode == 0, one.stderr
  assert eight.returncode == 0, eight.stderr
  r1 = json.loads((tmp_path / "one" / "results.json").read_text())
  r8 = json.loads((tmp_path / "eight" / "results.json").read_text())
  assert (r1["num_devices"], r8["num_devices"]) == (1, 8)
  assert abs(r1["test_accuracy"] - r8["test_accuracy"]) <= 0.002
  assert abs(r1["test_loss"] - r8["test_loss"]) <= 1e-3


def test_nbody_epochs_are_data_parallel(tmp_path):
  """The N-body task's scanned epoch splits each batch over the mesh: 8 devices train the same
  model as 1 (the gradient is summed across devices, in another order)."""
  flags = ("--config.num_epochs=2", "--config.train_size=800", "--config.batch_size=80",
           "--config.eval_every_epochs=2")
  one = run(experiment_cmd("nbody_egnn", tmp_path / "one", *flags))
  eight = run(experiment_cmd("nbody_egnn", tmp_path / "eight", *flags), env=EIGHT_DEVICES)
  assert one.returncode == 0, one.stderr[-3000:]
  assert eight.returncode == 0, eight.stderr[-3000:]
  r1, r8 = (json.loads((tmp_path / w / "results.json").read_text()) for w in ("one", "eight"))
  assert (r1["num_devices"], r8["num_devices"]) == (1, 8)
  assert abs(r1["test_mse"] - r8["test_mse"]) <= 1e-4 * r1["test_mse"], (r1, r8)
  refused = run(experiment_cmd("nbody_egnn", tmp_path / "bad", *flags[:2],
                               "--config.batch_size=60"), env=EIGHT_DEVICES)
  assert refused.returncode == 2 and "error: batch_size=60 cannot be split evenly over 8 " \
      "devices; use a positive multiple of 8" in refused.stderr, refused.stderr[-2000:]
