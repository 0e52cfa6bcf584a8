"""The chapter-2 studies (experiments/studies/) in their --quick versions, on the real data.

Each runs as a user would run it, in a subprocess, and must write its plot, table.md and
results.json; the assertions are properties the short runs do show.
"""

import json
import math
import sys

import pytest

from tests.conftest import run

PNG = b"\x89PNG\r\n\x1a\n"


def run_study(name: str, workdir, *flags: str):
  return run([sys.executable, "-m", f"experiments.studies.{name}", f"--workdir={workdir}",
              "--quick", *flags], timeout=600)


def check_outputs(workdir, png: str) -> dict:
  image = (workdir / png).read_bytes()
  assert image[:8] == PNG and len(image) > 20_000
  table = (workdir / "table.md").read_text()
  assert table.count("\n|") >= 3 and "nan" not in table
  results = json.loads((workdir / "results.json").read_text())

  def finite(value, where):
    if isinstance(value, float):
      assert math.isfinite(value), where
    elif isinstance(value, dict):
      for k, v in value.items():
        finite(v, f"{where}.{k}")
    elif isinstance(value, list):
      for i, v in enumerate(value):
        finite(v, f"{where}[{i}]")

  finite(results, "results")
  # experiments/report.py can tabulate it like any run.
  for key in ("experiment", "model", "dataset", "test_accuracy", "epochs", "train_time_s",
              "param_count", "num_devices", "platform", "device_kind", "versions"):
    assert key in results, key
  return results


def test_activations(tmp_path):
  result = run_study("activations", tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  results = check_outputs(tmp_path, "activations_study.png")
  accuracy = {r["activation"]: r["test_accuracy"] for r in results["runs"]}
  assert sorted(accuracy) == ["relu", "sigmoid", "tanh"]
  assert results["config"]["dataset"] == "fashion_mnist"
  # One epoch: ReLU and tanh learn, four sigmoid layers barely move (vanishing gradient, 2.5.3).
  assert accuracy["relu"] > 0.75 and accuracy["tanh"] > 0.75
  assert accuracy["relu"] > accuracy["sigmoid"] + 0.2, accuracy
  for r in results["runs"]:
    assert len(r["val_curve"]) == 1 and r["train_curve"]

  # Running it again reads every finished training back instead of training again.
  saved = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/results.json")}
  assert len(saved) == 3
  again = run_study("activations", tmp_path)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stderr.count("done already") == 3
  assert {p: p.stat().st_mtime_ns for p in saved} == saved
  assert json.loads((tmp_path / "results.json").read_text())["runs"] == results["runs"]


def test_optimizers(tmp_path):
  result = run_study("optimizers", tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  results = check_outputs(tmp_path, "optimizers_study.png")
  rows = {r["optimizer"]: r for r in results["runs"]}
  assert sorted(rows) == sorted(["sgd", "momentum", "nesterov", "adagrad", "adadelta",
                                 "rmsprop", "adam"])
  initial = results["initial_train_loss"]
  assert abs(initial - math.log(10)) < 0.3  # about uniform predictions at the initialization
  for name, r in rows.items():
    assert r["final_train_loss"] < initial, (name, r["final_train_loss"], initial)
    tried = [t for t in r["grid"] if not t["diverged"]]
    assert len(r["grid"]) == 2 and tried
    assert r["learning_rate"] == max(tried, key=lambda t: t["val_accuracy"])["learning_rate"]
    assert r["steps"] == 100 and r["test_accuracy"] > 0.75, (name, r["test_accuracy"])


def test_batch_size(tmp_path):
  result = run_study("batch_size", tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  results = check_outputs(tmp_path, "batch_size_study.png")
  assert len(results["noise"]) == 2  # at the initialization and after a short training
  for point, noise in results["noise"].items():
    # The per-layer per-example gradient formula agrees with vmapped jax.grad.
    assert noise["per_example_check_rel_error"] < 1e-4, point
    # E||g_B - g||^2 ~ 1/B: the log-log slope, and the measured values against sigma^2/B.
    assert abs(noise["slope"] + 1) < 0.25, (point, noise["slope"])
    for row in noise["rows"]:
      assert 0.6 < row["ratio"] < 1.6, (point, row)
  runs = results["time_to_target"]
  assert [r["config"]["batch_size"] for r in runs] == [16, 64, 256, 1024]
  for r in runs:
    assert r["reached"] and r["val_accuracy"] >= 0.90, r["config"]
    b = r["config"]["batch_size"]
    assert r["config"]["learning_rate"] == pytest.approx(1e-3 * math.sqrt(b / 128))
    assert r["examples"] == r["steps"] * b
  # The largest batch needs far fewer steps than the smallest but sees more examples.
  assert runs[-1]["steps"] < runs[0]["steps"] / 4
  assert runs[-1]["examples"] > runs[0]["examples"]


def test_bad_flag_fails_before_training(tmp_path):
  result = run_study("activations", tmp_path, "--activations=relu,swish")
  assert result.returncode == 2
  assert "error: unknown activation 'swish'" in result.stderr
  assert not (tmp_path / "runs").exists()
