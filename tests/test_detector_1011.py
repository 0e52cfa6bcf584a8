"""The '1011' detector study of section 5.2.1 (experiments/detector_1011.py), quick version."""

import json
import sys

import numpy as np

from experiments import detector_1011
from tests.conftest import run


def test_labels_are_pattern_occurrences():
  x = np.array([[0, 1, 0, 1, 1, 0], [1, 1, 0, 1, 0, 1], [1, 0, 1, 1, 0, 0]], np.float32)
  np.testing.assert_array_equal(detector_1011.contains_pattern(x), [1, 0, 1])
  x, y = detector_1011.make_data(64, 32, np.random.default_rng(0))
  assert x.shape == (64, 32) and y.sum() == 32
  np.testing.assert_array_equal(detector_1011.contains_pattern(x), y)


def test_quick_run_conv_needs_fewer_examples_than_mlp(tmp_path):
  proc = run([sys.executable, "-m", "experiments.detector_1011", "--quick",
              f"--workdir={tmp_path}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  results = json.loads((tmp_path / "results.json").read_text())
  assert (tmp_path / "accuracy_vs_examples.png").stat().st_size > 0
  assert "| parameters | 7 |" in (tmp_path / "table.md").read_text()
  assert results["param_counts"] == {"conv": 7, "mlp": 32 * 64 + 64 + 64 + 1}
  to_95 = results["examples_to_95"]
  assert to_95["conv"] is not None, results["accuracy_mean"]
  assert to_95["mlp"] is None or to_95["mlp"] > to_95["conv"], results["accuracy_mean"]


def test_bad_flag_exits_2(tmp_path):
  proc = run([sys.executable, "-m", "experiments.detector_1011", "--quick", "--length=3",
              f"--workdir={tmp_path}"])
  assert proc.returncode == 2 and "error: --length" in proc.stderr
