"""The model-design studies of chapter 2 (vanishing/exploding gradients, regularization, double
descent), each run once as a user would (`--quick`, in a subprocess), and what their real results
must show.

Each study runs once per session (module-scoped fixtures); the assertions are on the numbers it
measured on real MNIST, with margins of an order of magnitude or more where the effect allows it.
"""

import json
import math
import os
import sys

import pytest

from tests.conftest import ROOT, run

PNG = b"\x89PNG\r\n\x1a\n"


def _study(tmp_path_factory, name: str, *flags: str, relative: bool = False) -> tuple:
  out = tmp_path_factory.mktemp(name)
  workdir = os.path.relpath(out, ROOT) if relative else out  # the command runs in ROOT
  result = run([sys.executable, "-m", f"experiments.studies.{name}", "--quick",
                f"--workdir={workdir}", *flags], timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return out, json.loads((out / "results.json").read_text())


def _check_outputs(out, png: str, results: dict, experiment: str) -> None:
  image = out / png
  assert image.read_bytes()[:8] == PNG and image.stat().st_size > 20_000
  table = (out / "table.md").read_text()
  assert table.count("\n|") >= 3  # a header, a rule and rows
  assert results["experiment"] == experiment
  assert results["platform"] and results["versions"]["jax"]


# Vanishing and exploding gradients (section 2.5.3).

@pytest.fixture(scope="module")
def gradients(tmp_path_factory):
  return _study(tmp_path_factory, "gradients")


def test_gradients_outputs(gradients):
  out, results = gradients
  _check_outputs(out, "gradient_norms.png", results, "study_gradients")
  rows = results["rows"]
  depth = results["config"]["depth"]
  assert len(rows) == 3 * 4  # three activations, four initializations
  for r in rows:
    assert len(r["norms"]) == depth + 1
    assert all(math.isfinite(v) and v > 0 for v in r["norms"])
    assert math.isclose(r["ratio"], r["norms"][0] / r["norms"][-1], rel_tol=0.5)
    assert r["label"] in (out / "table.md").read_text()


def _row(results, activation, setting):
  [row] = [r for r in results["rows"]
           if r["activation"] == activation and r["setting"] == setting]
  return row


def test_sigmoid_gradients_vanish_without_batch_norm(gradients):
  _, results = gradients
  # Measured ~1e-16 with N(0, 0.01^2) and ~1e-7 with Glorot (sigmoid' <= 1/4 per layer).
  assert _row(results, "sigmoid", "normal_0.01")["ratio"] < 1e-10
  assert _row(results, "sigmoid", "matched")["ratio"] < 1e-4
  # Decreasing towards the input, layer after layer.
  norms = _row(results, "sigmoid", "normal_0.01")["norms"]
  assert all(a < b for a, b in zip(norms[:-1], norms[1:]))
  # Batch norm brings the first layer's gradient back to the output layer's order (~0.6).
  assert 0.05 < _row(results, "sigmoid", "matched_bn")["ratio"] < 50


def test_tanh_gradients_explode_with_unit_normal(gradients):
  _, results = gradients
  assert _row(results, "tanh", "normal_1")["ratio"] > 1e3  # measured ~5e5
  assert 0.1 < _row(results, "tanh", "matched")["ratio"] < 10  # Glorot: measured ~2


def test_relu_gradient_scale_follows_the_init_scale(gradients):
  _, results = gradients
  he = _row(results, "relu", "matched")
  assert 0.1 < he["ratio"] < 10 and he["max_over_min"] < 10  # He init: flat, measured ~1-2
  assert 0.05 < _row(results, "relu", "matched_bn")["ratio"] < 50  # measured ~6-9
  # ReLU is positively homogeneous: a wrong scale multiplies every layer alike (~1e-11, ~1e13).
  assert max(_row(results, "relu", "normal_0.01")["norms"]) < 1e-7
  assert min(_row(results, "relu", "normal_1")["norms"]) > 1e8


# Regularization (section 2.5.4).

@pytest.fixture(scope="module")
def regularization(tmp_path_factory):
  return _study(tmp_path_factory, "regularization", relative=True)


def test_regularization_outputs(regularization):
  out, results = regularization
  _check_outputs(out, "regularization.png", results, "study_regularization")
  runs = {r["setting"]: r for r in results["runs"]}
  assert set(runs) == set(results["config"]["settings"])
  epochs = results["config"]["epochs"]
  for r in runs.values():
    assert len(r["val_curve"]) == epochs
    assert 0.7 < r["test_accuracy"] <= 1 and 0.7 < r["train_accuracy"] <= 1
    assert math.isclose(r["gap"], r["train_accuracy"] - r["test_accuracy"])
    assert (out / "runs" / r["setting"] / "results.json").exists()


def test_small_training_set_is_learned_by_heart(regularization):
  _, results = regularization
  none = {r["setting"]: r for r in results["runs"]}["none"]
  assert none["train_accuracy"] >= 0.99  # 500 images memorized
  assert none["gap"] > 0.05  # measured ~0.14: overfitting


def test_each_regularizer_does_what_it_says(regularization):
  _, results = regularization
  runs = {r["setting"]: r for r in results["runs"]}
  none = runs["none"]
  assert runs["l2"]["weight_norm"] < 0.95 * none["weight_norm"]  # smaller weights (~15 % less)
  assert runs["l1"]["small_weights"] > 3 * none["small_weights"]  # sparser (measured ~8x)
  assert runs["dropout"]["gap"] < none["gap"] - 0.02  # slower to memorize (gap ~7 vs ~14)
  assert runs["batch_norm"]["test_accuracy"] > none["test_accuracy"]  # ~ +2 points


def test_regularization_resumes_from_finished_runs(regularization, tmp_path):
  out, results = regularization
  again = run([sys.executable, "-m", "experiments.studies.regularization", "--quick",
               f"--workdir={out}"], timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "done already" in again.stderr
  rerun = json.loads((out / "results.json").read_text())
  assert [r["test_accuracy"] for r in rerun["runs"]] == [
      r["test_accuracy"] for r in results["runs"]]


# Double descent (section 2.5.3, figure 2.22).

@pytest.fixture(scope="module")
def double_descent(tmp_path_factory):
  return _study(tmp_path_factory, "double_descent")


def test_double_descent_outputs(double_descent):
  out, results = double_descent
  _check_outputs(out, "double_descent.png", results, "study_double_descent")
  config = results["config"]
  assert (config["train_subset"], config["batch_size"], config["epochs"]) == (500, 100, 200)
  assert config["noisy_labels"] == round(config["label_noise"] * config["train_subset"])
  assert [r["width"] for r in results["trained"]] == config["widths"]
  for r in results["trained"] + results["random_features"]:
    for key in ("train_error", "test_error", "train_loss", "test_loss"):
      assert math.isfinite(r[key]) and r[key] >= 0


def test_wide_networks_interpolate_noisy_labels(double_descent):
  _, results = double_descent
  trained = results["trained"]
  assert trained[0]["train_error"] > 0.2  # H = 2 cannot fit the training set
  assert trained[-1]["train_error"] < 0.02  # the widest fits it, wrong labels included
  assert trained[-1]["test_error"] < 0.5


def test_random_features_peak_at_the_threshold(double_descent):
  _, results = double_descent
  n = results["config"]["train_subset"]
  features = results["random_features"]
  at = min(features, key=lambda r: abs(r["width"] + 1 - n))
  others = [r for r in features if abs(r["width"] + 1 - n) > n // 2]
  assert at["train_error"] == 0.0  # interpolates
  assert all(at["test_error"] > 1.5 * r["test_error"] for r in others)
  assert all(at["test_loss"] > 10 * r["test_loss"] for r in others)
  assert results["summary"]["random_features_peak"]["peak_width"] == at["width"]


def test_bad_flags_fail_before_any_work(tmp_path):
  for name, flag, message in (
      ("double_descent", "--label_noise=1.5", "--label_noise=1.5 must be in [0, 1)"),
      ("gradients", "--activations=softplus", "'softplus' has no matched initializer"),
      ("regularization", "--settings=none,mixup", "unknown setting 'mixup'")):
    result = run([sys.executable, "-m", f"experiments.studies.{name}", flag,
                  f"--workdir={tmp_path / name}"], timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert not (tmp_path / name).exists()
