"""Experiments end to end, as a user runs them, on real MNIST: outputs, resume after SIGKILL,
preemption by SIGTERM, divergence, and one clear message for each kind of bad input."""

import json
import signal
import subprocess
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.conftest import ROOT, experiment_cmd, run

# A short MLP run that crosses an epoch boundary (429 steps per epoch) and checkpoints twice.
RESUME_FLAGS = ("--config.model=mnist_mlp", "--config.max_steps=1000",
                "--config.checkpoint_every_steps=300", "--config.log_every_steps=100",
                "--config.keep_checkpoints=10")


def load_tree(workdir, step):
  return ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "default")["state"]


def assert_bitwise_equal(a, b):
  flat_a, flat_b = ocp.tree.to_flat_dict(a), ocp.tree.to_flat_dict(b)
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]), err_msg=str(key))


def train_records(workdir):
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [(r["step"], r["split"], r["loss"], r["accuracy"]) for r in rows]


def start(workdir, *flags):
  return subprocess.Popen(experiment_cmd("mnist_mlp", workdir, *flags), cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_checkpoint(proc, workdir, step, timeout=300):
  target = workdir / "checkpoints" / str(step)
  deadline = time.time() + timeout
  while not target.exists():
    assert proc.poll() is None, f"run ended before checkpoint {step}:\n{proc.stdout.read()}"
    assert time.time() < deadline
    time.sleep(0.005)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("straight")
  result = run(experiment_cmd("mnist_mlp", workdir, *RESUME_FLAGS))
  assert result.returncode == 0, result.stderr
  return workdir


def test_run_writes_all_outputs(straight_run):
  results = json.loads((straight_run / "results.json").read_text())
  for key in ("test_accuracy", "param_count", "train_time_s", "train_examples_per_s",
              "device_kind", "versions", "config"):
    assert results[key] is not None, key
  assert results["param_count"] == 269_322 and results["steps"] == 1000
  assert results["test_accuracy"] > 0.95
  splits = {r[1] for r in train_records(straight_run)}
  assert splits == {"train", "val", "test"}
  assert list((straight_run / "tensorboard").glob("events.out.tfevents.*"))
  assert (straight_run / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
  assert sorted(int(p.name) for p in (straight_run / "checkpoints").iterdir()) == [300, 600, 900, 1000]


def test_resume_after_sigkill_is_bitwise_identical(straight_run, tmp_path):
  proc = start(tmp_path, *RESUME_FLAGS)
  wait_for_checkpoint(proc, tmp_path, 300)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (tmp_path / "results.json").exists(), "the run finished before it was killed"
  resumed = run(experiment_cmd("mnist_mlp", tmp_path, *RESUME_FLAGS))
  assert resumed.returncode == 0, resumed.stderr
  assert "resumed from" in resumed.stderr
  assert_bitwise_equal(load_tree(tmp_path, 1000), load_tree(straight_run, 1000))
  assert train_records(tmp_path) == train_records(straight_run)


def test_sigterm_saves_then_resumes_identically(straight_run, tmp_path):
  proc = start(tmp_path, *RESUME_FLAGS)
  wait_for_checkpoint(proc, tmp_path, 300)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  assert "SIGTERM: saved checkpoint at step" in out
  saved = max(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert 300 < saved < 1000
  resumed = run(experiment_cmd("mnist_mlp", tmp_path, *RESUME_FLAGS))
  assert resumed.returncode == 0, resumed.stderr
  assert_bitwise_equal(load_tree(tmp_path, 1000), load_tree(straight_run, 1000))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  result = run(experiment_cmd("mnist_mlp", tmp_path, "--config.optimizer=sgd",
                              "--config.learning_rate=1e4", "--config.lr_schedule=constant",
                              "--config.max_steps=400", "--config.checkpoint_every_steps=2",
                              "--config.log_every_steps=2"))
  assert result.returncode == 1
  message = result.stderr.strip().splitlines()[-1]
  assert message.startswith("error: non-finite") and "at step" in message, message
  bad_step = int(message.split("at step ")[1].split()[0])
  kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert kept and kept[-1] < bad_step
  assert f"(step {kept[-1]})" in message
  params = ocp.tree.to_flat_dict(load_tree(tmp_path, kept[-1])["params"])
  assert all(np.isfinite(v).all() for v in params.values())
  assert not (tmp_path / "results.json").exists()


BAD_CONFIGS = [
    (("--config.learning_rate=-0.1",), "learning_rate=-0.1 must be a positive number"),
    (("--config.optimizer=adamax",), "unknown optimizer 'adamax'; accepted: sgd, momentum"),
    (("--config.batch_size=0",), "batch_size=0 must be a positive integer"),
    (("--config.dataset=cifar10",), "unknown dataset 'cifar10'; accepted: mnist, fashion_mnist"),
    (("--config.model=resnet",), "unknown model 'resnet'; registered models: blueprint_grid"),
    (("--config.lr_schedule=step",), "unknown lr_schedule 'step'; accepted: constant, cosine"),
]


@pytest.mark.parametrize("flags,message", BAD_CONFIGS, ids=[f[0] for f, _ in BAD_CONFIGS])
def test_bad_config_values(tmp_path, flags, message):
  result = run(experiment_cmd("mnist_mlp", tmp_path / "run", *flags))
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: " + message)
  assert not (tmp_path / "run").exists()  # nothing was written


def test_batch_not_divisible_by_device_count(tmp_path):
  result = run(experiment_cmd("mnist_mlp", tmp_path / "run", "--config.batch_size=100"),
               env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert result.returncode == 2
  assert "batch_size=100 cannot be split evenly over 8 devices; use a positive multiple of 8" in result.stderr


def test_unknown_experiment():
  result = run(["./launch.sh", "mnist_transformer"])
  assert result.returncode == 2
  assert "unknown experiment 'mnist_transformer'; accepted: " in result.stderr
  assert "mnist_cnn" in result.stderr and "mnist_mlp" in result.stderr


def test_foreign_and_mismatched_workdirs_are_refused(straight_run, tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  result = run(experiment_cmd("mnist_mlp", tmp_path))
  assert result.returncode == 2 and "holds no dl_jax run" in result.stderr
  assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
  before = {p: p.stat().st_mtime_ns for p in straight_run.rglob("*")}
  result = run(experiment_cmd("mnist_mlp", straight_run, *RESUME_FLAGS, "--config.seed=1"))
  assert result.returncode == 2
  assert "holds a run with seed=0, but this run has seed=1" in result.stderr
  assert {p: p.stat().st_mtime_ns for p in straight_run.rglob("*")} == before


def test_corrupted_checkpoint_is_refused_and_kept(tmp_path):
  flags = ("--config.max_steps=20", "--config.checkpoint_every_steps=10")
  assert run(experiment_cmd("mnist_mlp", tmp_path, *flags)).returncode == 0
  (tmp_path / "results.json").unlink()
  files = [p for p in (tmp_path / "checkpoints" / "20").rglob("*") if p.is_file()]
  for f in files:
    if f.stat().st_size > 100:
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
  snapshot = {f: f.read_bytes() for f in files}
  result = run(experiment_cmd("mnist_mlp", tmp_path, *flags, "--config.max_steps=30"))
  assert result.returncode == 2
  assert "checkpoints/20' cannot be restored" in result.stderr and "left as is" in result.stderr
  assert {f: f.read_bytes() for f in files} == snapshot


def test_corrupted_cached_dataset_is_refused_and_kept(tmp_path):
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  real = __import__("dl_jax.data.fetch", fromlist=["x"]).data_dir() / "mnist.npz"
  for suffix in ("", ".sha256"):
    (data_dir / ("mnist.npz" + suffix)).write_bytes((real.parent / ("mnist.npz" + suffix)).read_bytes())
  npz = data_dir / "mnist.npz"
  corrupted = bytearray(npz.read_bytes())
  corrupted[len(corrupted) // 2] ^= 0xFF
  npz.write_bytes(bytes(corrupted))
  result = run(experiment_cmd("mnist_mlp", tmp_path / "run", f"--config.data_dir={data_dir}"))
  assert result.returncode == 2
  assert str(npz) in result.stderr and "sha256" in result.stderr
  assert npz.read_bytes() == bytes(corrupted)
