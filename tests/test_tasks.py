"""One engine test over every task, each on small real data, as a user runs it (a subprocess):

- a run killed with SIGKILL after a checkpoint or stopped with SIGTERM (which saves a checkpoint
  and exits 0), or both in turn, and finished by the same command ends bitwise equal to the
  straight run (the final checkpoint and the metrics file, all but wall-clock fields);
- a non-finite loss stops the run with exit 1, naming the step, keeping the good checkpoints;
- each bad engine value is refused with one `error:` line and exit 2, before anything is written
  (each task gets one of them, in turn);
- every numeric key of every experiment config has a check.

A task added to `dl_jax.engine.TASKS` must get an entry in SHORT_RUNS, or the first test fails.
"""

import json
import pathlib
import re
import signal
import subprocess
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from dl_jax import engine
from dl_jax.engine import checks
from tests.conftest import ROOT, experiment_cmd, run

# task -> (experiment, flags of a short real-data run, the checkpoint step to kill it after); the
# run goes on for at least two checkpoints after it (the SIGTERM comes after the next one), with
# steps to spare after those: the signal must reach a run still training
SHORT_RUNS = {
    "denoising": ("denoise_mnist", (
        "--config.train_subset=512", "--config.val_size=200", "--config.test_subset=200",
        "--config.model_kwargs.depth=4", "--config.model_kwargs.features=16",
        "--config.batch_size=32", "--config.num_epochs=4", "--config.classical=false",
        "--config.checkpoint_every_steps=8",
        "--config.log_every_steps=4", "--config.keep_checkpoints=10"), 8),
    "autoencoding": ("ae_mlp", (
        "--config.train_subset=3200", "--config.val_size=1000", "--config.test_subset=1000",
        "--config.num_epochs=6", "--config.probe_steps=50", "--config.checkpoint_every_steps=25",
        "--config.log_every_steps=10", "--config.keep_checkpoints=10"), 25),
    "vae": ("vae_mlp", (
        "--config.train_subset=2560", "--config.val_size=500", "--config.test_subset=500",
        "--config.num_epochs=10", "--config.iwae_samples=20", "--config.iwae_chunk=10",
        "--config.iwae_batch_size=50", "--config.nll_test_size=100",
        "--config.checkpoint_every_steps=20", "--config.log_every_steps=10",
        "--config.keep_checkpoints=10"), 20),
    "autoregressive": ("pixelcnn_mnist", (
        "--config.train_subset=1280", "--config.val_size=200", "--config.test_subset=200",
        "--config.model_kwargs.features=8", "--config.model_kwargs.num_layers=2",
        "--config.model_kwargs.output_features=8", "--config.batch_size=64",
        "--config.num_epochs=10", "--config.num_samples=4", "--config.completion_images=1",
        "--config.completion_samples=1", "--config.checkpoint_every_steps=20",
        "--config.log_every_steps=10", "--config.keep_checkpoints=10"), 20),
    "metric_learning": ("triplet_mnist", (
        "--config.num_steps=60", "--config.eval_every_steps=20", "--config.val_size=500",
        "--config.episodes=100", "--config.verification_pairs=1000",
        "--config.checkpoint_every_steps=10", "--config.log_every_steps=10",
        "--config.keep_checkpoints=10"), 10),
    "image_classification": ("mnist_mlp", (
        "--config.max_steps=1000", "--config.checkpoint_every_steps=200",
        "--config.log_every_steps=50", "--config.keep_checkpoints=10"), 200),
    "node_classification": ("gnn_wordnet", (
        "--config.seeds=3", "--config.num_epochs=45", "--config.checkpoint_every_steps=15",
        "--config.log_every_steps=5", "--config.keep_checkpoints=10"), 15),
    "graph_classification": ("gnn_mutag", (
        "--config.folds=3", "--config.num_epochs=25", "--config.batch_size=16",
        "--config.checkpoint_every_steps=40", "--config.log_every_steps=20",
        "--config.keep_checkpoints=20"), 40),
    "nbody": ("nbody_egnn", (
        "--config.train_size=500", "--config.batch_size=50", "--config.num_epochs=12",
        "--config.eval_every_epochs=2", "--config.checkpoint_every_steps=20",
        "--config.log_every_steps=10", "--config.keep_checkpoints=10"), 20),
    "localization": ("yolo_mnist", (
        "--config.train_size=512", "--config.val_size=64", "--config.test_size=64",
        "--config.model_kwargs.widths=(8,16,32,32)", "--config.batch_size=32",
        "--config.eval_batch_size=64", "--config.num_epochs=3", "--config.warmup_steps=0",
        "--config.checkpoint_every_steps=8", "--config.log_every_steps=4",
        "--config.keep_checkpoints=10"), 8),
    "segmentation": ("unet_mnist", (
        "--config.train_size=160", "--config.val_size=32", "--config.test_size=32",
        "--config.canvas_size=48", "--config.model_kwargs.image_size=48",
        "--config.model_kwargs.features=(8,16,32)", "--config.batch_size=16",
        "--config.eval_batch_size=32", "--config.num_epochs=3", "--config.figure_count=2",
        "--config.checkpoint_every_steps=5", "--config.log_every_steps=5",
        "--config.keep_checkpoints=10"), 5),
    "style_transfer": ("style_transfer", (
        "--config.image_size=32", "--config.num_steps=32", "--config.features=trained",
        "--config.optimizer=adam", "--config.learning_rate=0.02",
        "--config.feature_steps=10", "--config.checkpoint_every_steps=4",
        "--config.log_every_steps=4", "--config.keep_checkpoints=10"), 4),
    "sequence_classification": ("seq_mnist_rows_gru", (
        "--config.train_subset=640", "--config.val_size=200", "--config.test_subset=200",
        "--config.model_kwargs.hidden=32", "--config.batch_size=32", "--config.num_epochs=4",
        "--config.checkpoint_every_steps=8", "--config.log_every_steps=4",
        "--config.keep_checkpoints=10"), 8),
    "language_model": ("charlm_moby_lstm", (
        "--config.model_kwargs.hidden=32", "--config.batch_size=16", "--config.seq_len=50",
        "--config.num_steps=64", "--config.eval_every_steps=16", "--config.eval_window=2000",
        "--config.ngram_orders=(2,3)", "--config.ngram_discounts=(0.8,)",
        "--config.sample_length=20", "--config.sample_count=1",
        "--config.checkpoint_every_steps=8", "--config.log_every_steps=4",
        "--config.keep_checkpoints=10"), 8),
    "gan": ("dcgan_mnist", (
        "--config.train_subset=1024", "--config.batch_size=32",
        "--config.model_kwargs.features=(16,32)", "--config.num_steps=40",
        "--config.eval_every_steps=20", "--config.classifier_steps=50",
        "--config.fd_samples=256", "--config.eval_fd_samples=128", "--config.grid_size=16",
        "--config.checkpoint_every_steps=8", "--config.log_every_steps=4",
        "--config.keep_checkpoints=10"), 8),
    "word_embeddings": ("word2vec_skipgram", (
        "--config.max_tokens=300000", "--config.epochs=4", "--config.batch_size=2048",
        "--config.steps_per_call=4", "--config.checkpoint_every_steps=16",
        "--config.log_every_steps=8", "--config.keep_checkpoints=50",
        "--config.native_threads=1"), 16),
}
TASKS = sorted(engine.TASKS)
WALL_CLOCK = ("_per_s",)  # metric fields that measure time, not the computation


def test_every_task_has_a_short_run():
  assert sorted(SHORT_RUNS) == TASKS


def test_a_task_missing_a_method_cannot_be_constructed():
  class Incomplete(engine.Task):
    def plan(self):
      return engine.Plan(1, 1, "examples", 1)

  with pytest.raises(TypeError, match="advance, finish, init"):
    Incomplete(None, None)


def load_checkpoint(workdir: pathlib.Path, step: int) -> dict:
  tree = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "default")
  return ocp.tree.to_flat_dict({k: v for k, v in tree.items() if k != "train_time_s"})


def assert_same_run(a: pathlib.Path, b: pathlib.Path, sigterm_step: int | None):
  """The final checkpoints are bitwise equal, and so are the metrics (but the train rows of the
  log window a SIGTERM cut: it is written as a row at the SIGTERM step and one after it)."""
  step_a, step_b = (json.loads((w / "results.json").read_text())["steps"] for w in (a, b))
  assert step_a == step_b
  flat_a, flat_b = load_checkpoint(a, step_a), load_checkpoint(b, step_b)
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]),
                                  err_msg=str(key))
  rows_a, rows_b = (metrics(w) for w in (a, b))
  if sigterm_step is not None:
    rows_a, rows_b = (without_window(rows, sigterm_step) for rows in (rows_a, rows_b))
  assert rows_a == rows_b


def without_window(rows: list[dict], step: int) -> list[dict]:
  """`rows` without the train rows at `step` and at the first train record after it."""
  after = min((r["step"] for r in rows if r["split"] == "train" and r["step"] > step),
              default=None)
  return [r for r in rows if not (r["split"] == "train" and r["step"] in (step, after))]


def metrics(workdir: pathlib.Path) -> list[dict]:
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [{k: v for k, v in r.items() if not k.endswith(WALL_CLOCK)} for r in rows]


def command(task: str, workdir, *extra):
  name, flags, _ = SHORT_RUNS[task]
  return experiment_cmd(name, workdir, *flags, *extra)


def start(task: str, workdir):
  return subprocess.Popen(command(task, workdir), cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def wait_for_checkpoint(proc, workdir, after: int, timeout=600) -> int:
  """Waits for a checkpoint at a step > `after` (one a kill mid-save left unfinished, which
  orbax names `N.orbax-checkpoint-tmp`, does not count); returns its step."""
  directory = workdir / "checkpoints"
  deadline = time.time() + timeout
  while True:
    steps = [int(p.name) for p in directory.glob("*") if p.name.isdigit() and int(p.name) > after]
    if steps:
      return min(steps)
    assert proc.poll() is None, f"ended before a checkpoint after {after}:\n{proc.stdout.read()}"
    assert time.time() < deadline
    time.sleep(0.002)


def finish(task, workdir):
  out = run(command(task, workdir))
  assert out.returncode == 0, out.stderr[-3000:]
  return out


# Two tasks are killed, resumed, stopped and finished; each other task is interrupted once,
# by SIGKILL or SIGTERM in turn (a process fewer per task): either way the task's state is
# saved and restored, at a checkpoint step (SIGKILL) or at any step (SIGTERM).
BOTH_SIGNALS = ("gan", "image_classification")
INTERRUPTIONS = [(task, ("SIGKILL", "SIGTERM") if task in BOTH_SIGNALS else
                  (("SIGKILL",), ("SIGTERM",))[i % 2]) for i, task in enumerate(TASKS)]


@pytest.mark.parametrize("task, signals", INTERRUPTIONS)
def test_interrupted_and_resumed_runs_end_bitwise_as_the_straight_run(task, signals, tmp_path):
  """Killed (SIGKILL) after a checkpoint and/or stopped by SIGTERM (which saves a checkpoint and
  exits 0) after the next one, each time resumed by the same command: the run ends bitwise
  where the straight run does."""
  straight, workdir = tmp_path / "straight", tmp_path / "interrupted"
  finish(task, straight)
  after, resumed_from, sigterm_step = SHORT_RUNS[task][2] - 1, None, None
  for sig in signals:
    proc = start(task, workdir)
    after = wait_for_checkpoint(proc, workdir, after)
    proc.send_signal(getattr(signal, sig))
    output, _ = proc.communicate(timeout=300)
    if resumed_from is not None:
      assert f"/checkpoints/{resumed_from} at step {resumed_from}" in output  # "resumed from"
    if sig == "SIGKILL":
      assert proc.returncode == -signal.SIGKILL
    else:
      assert proc.returncode == 0, output[-3000:]
      saved = re.search(r"SIGTERM: saved checkpoint at step (\d+)", output)
      assert saved, f"the run finished before the SIGTERM reached it:\n{output[-3000:]}"
      after = sigterm_step = int(saved.group(1))
    assert not (workdir / "results.json").exists(), f"the run finished before its {sig}"
    resumed_from = after

  out = finish(task, workdir)
  assert f"/checkpoints/{resumed_from} at step {resumed_from}" in out.stderr
  assert_same_run(straight, workdir, sigterm_step)
  results = json.loads((workdir / "results.json").read_text())
  assert results["task"] == task and results["train_time_s"] > 0
  assert (workdir / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))


# The learning rate that makes a task's loss overflow: 1e30, but where the network's state is
# bounded (saturating recurrent cells keep the loss near 1e31 at that rate) 1e38, with which
# the logits overflow float32 at the second step.
DIVERGING_LEARNING_RATE = {"sequence_classification": "1e38", "language_model": "1e38"}


@pytest.mark.parametrize("task", TASKS)
def test_non_finite_loss_stops_with_exit_1(task, tmp_path):
  rate = DIVERGING_LEARNING_RATE.get(task, "1e30")
  out = run(command(task, tmp_path, f"--config.learning_rate={rate}",
                    "--config.checkpoint_every_steps=1", "--config.log_every_steps=1"))
  assert out.returncode == 1, out.stderr[-3000:]
  errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
  # The loss or gradient norm of a step, or, where an update overflowed from finite ones, the
  # parameters it made.
  bad = re.match(r"error: non-finite (loss or gradient norm at step (\d+)|parameters or optimizer "
                 r"state after step (\d+))", errors[0]) if len(errors) == 1 else None
  assert bad, errors
  assert "Traceback" not in out.stderr
  bad_step = int(bad.group(2) or bad.group(3))
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                 if p.name.isdigit()) if (tmp_path / "checkpoints").exists() else []
  assert all(s < bad_step for s in saved)  # nothing non-finite was saved, the good ones kept
  if saved:
    assert f"last good checkpoint (step {saved[-1]})" in errors[0]
  assert not (tmp_path / "results.json").exists()


BAD_ENGINE_VALUES = [
    ("--config.log_every_steps=0", "log_every_steps=0 must be a positive integer"),
    ("--config.checkpoint_every_steps=-5", "checkpoint_every_steps=-5 must be a positive integer"),
    ("--config.keep_checkpoints=0", "keep_checkpoints=0 must be a positive integer"),
    ("--config.max_steps=-1", "max_steps=-1 must be 0 (no cap) or a positive integer"),
    ("--config.task=regression", "unknown task 'regression'; accepted: image_classification"),
    ("--config.seed=-1", "seed=-1 must be an integer in [0, 4294967295]"),
]


# Each task is given one bad value (in turn), so that every value meets several tasks and every
# task's command line is refused once, without one process per (task, value).
@pytest.mark.parametrize("task, bad_value", [
    (task, BAD_ENGINE_VALUES[i % len(BAD_ENGINE_VALUES)]) for i, task in enumerate(TASKS)])
def test_bad_engine_values_are_refused(task, bad_value, tmp_path):
  for flag, message in [bad_value]:
    out = run(command(task, tmp_path / "w", flag))
    assert out.returncode == 2, (flag, out.stderr[-2000:])
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: " + message), (flag, errors)
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "w").exists()  # refused before anything was written


CONFIGS = sorted(p.stem for p in (ROOT / "experiments" / "configs").glob("*.py")
                 if p.stem not in ("__init__", "base"))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_numeric_config_value_is_checked(name):
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"experiments.configs.{name}").get_config()
  assert checks.unchecked_numeric_keys(config, engine.all_checks(config)) == []
  engine.validate(config)  # the shipped defaults pass their own checks
