"""Image experiments end to end, as a user runs them, on real MNIST: outputs, and one clear
message for each kind of bad input (resume, preemption and divergence of every task:
tests/test_tasks.py)."""

import json

import pytest

from tests.conftest import experiment_cmd, run

# A short MLP run that crosses an epoch boundary (429 steps per epoch) and checkpoints twice.
RESUME_FLAGS = ("--config.model=mnist_mlp", "--config.max_steps=1000",
                "--config.checkpoint_every_steps=300", "--config.log_every_steps=100",
                "--config.keep_checkpoints=10")


def train_records(workdir):
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [(r["step"], r["split"], r["loss"], r["accuracy"]) for r in rows]


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


BAD_CONFIGS = [
    (("--config.learning_rate=-0.1",), "learning_rate=-0.1 must be a finite number > 0"),
    (("--config.learning_rate=inf",), "learning_rate=inf must be a finite number > 0"),
    (("--config.warmup_steps=-3",), "warmup_steps=-3 must be 0 (no warm-up) or a positive"),
    (("--config.eval_batch_size=0",), "eval_batch_size=0 must be a positive integer"),
    (("--config.weight_l2=-1.0",), "weight_l2=-1.0 must be a finite number >= 0"),
    (("--config.optimizer=adamax",), "unknown optimizer 'adamax'; accepted: sgd, momentum"),
    (("--config.batch_size=0",), "batch_size=0 must be a positive integer"),
    (("--config.dataset=cifar10",), "unknown dataset 'cifar10'; accepted: mnist, fashion_mnist"),
    (("--config.model=resnet",), "unknown model 'resnet'; registered image models: alexnet, "
     "alexnet_small, blueprint_grid"),
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


def test_a_finished_run_run_again_returns_its_results_and_changes_nothing(straight_run):
  files = ("results.json", "metrics.jsonl", "run_config.json")
  before = {name: (straight_run / name).read_bytes() for name in files}
  result = run(experiment_cmd("mnist_mlp", straight_run, *RESUME_FLAGS))
  assert result.returncode == 0, result.stderr[-2000:]
  assert "mnist_mlp finished already at step 1000" in result.stderr
  assert {name: (straight_run / name).read_bytes() for name in files} == before


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


@pytest.mark.parametrize("flag,message", [
    ("--config.num_epoch=3", "unknown config key 'num_epoch'; did you mean 'num_epochs'?"),
    ("--config.batch_size=12.5", "config key 'batch_size' takes an int; got '12.5'"),
    ("--config.model_kwargs.hidden=abc", "config key 'model_kwargs.hidden' takes a tuple of ints"),
    ("--config.model_kwargs.depth=3", "unknown config key 'model_kwargs.depth'"),
    ("--work_dir=runs/x", "Unknown command line flag 'work_dir'. Did you mean: workdir ?; "
     "accepted: --config=<file>, "),
    ("--multihost=maybe", "flag --multihost=maybe: ('Non-boolean argument to boolean flag'"),
    ("stray", "unexpected argument 'stray'; accepted: --config=<file>, "),
])
def test_bad_command_lines_give_one_error_line(tmp_path, flag, message):
  result = run(experiment_cmd("mnist_mlp", tmp_path / "run", flag))
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and errors[0].startswith("error: " + message), result.stderr[-2000:]
  assert not (tmp_path / "run").exists()


def test_show_config_prints_every_key_with_model_hyper_parameters(tmp_path):
  result = run(experiment_cmd("mnist_mlp", tmp_path / "run", "--config.model_kwargs.hidden=64,64",
                              "--config.model=mnist_mlp", "--show-config"))
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.splitlines()
  assert "model_kwargs.hidden = (64, 64)" in lines and "num_epochs = 20" in lines
  assert "model_kwargs.dropout_rate = 0.2" in lines  # the config file's value wins the default
  assert any(line.startswith("model_kwargs.activation = ") for line in lines)  # registry default
  assert not (tmp_path / "run").exists()


def test_launch_help_prints_the_commands_only():
  result = run(["./launch.sh", "help"])
  assert result.returncode == 0
  assert "set -euo" not in result.stdout and "./launch.sh test" in result.stdout
