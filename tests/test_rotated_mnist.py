"""experiments/rotated_mnist.py: the --quick run writes its plot, table and results."""

import json
import sys

import numpy as np
import pytest

from dl_jax.errors import ConfigError
from experiments import rotated_mnist
from tests.conftest import run


def test_quick_run_writes_plot_table_and_results(tmp_path):
  result = run([sys.executable, "-m", "experiments.rotated_mnist", "--quick",
                f"--workdir={tmp_path}"], timeout=300)
  assert result.returncode == 0, result.stderr
  png = tmp_path / "accuracy_vs_size.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["quick"] and results["sizes"] == [300]
  assert sum(results["test_rotation_counts"]) == results["test_size"] == 1000
  for name in rotated_mnist.MODELS:
    cell = results["results"][name]["300"]
    assert 0.0 <= cell["rotated_test_accuracy"] <= 1.0 and np.isfinite(cell["final_train_loss"])
  # Invariance by construction: the p4 CNN scores the same on rotated and upright digits.
  p4 = results["results"]["p4cnn"]["300"]
  assert abs(p4["rotated_test_accuracy"] - p4["upright_test_accuracy"]) <= 0.002
  assert results["test_accuracy"] == p4["rotated_test_accuracy"]
  table = (tmp_path / "table.md").read_text()
  assert "| p4 CNN (invariant) | 32,858 |" in table and "n = 300" in table


def test_test_set_rotations_are_multiples_of_90_degrees():
  images = np.random.default_rng(0).normal(size=(8, 5, 5, 1)).astype(np.float32)
  rotated, k = rotated_mnist.rotate_test_set(images, seed=0)
  for x, y, r in zip(images, rotated, k):
    np.testing.assert_array_equal(y, np.rot90(x, r))
  np.testing.assert_array_equal(rotated_mnist.rotate_test_set(images, seed=0)[1], k)


def test_bad_sizes_fail_before_training(tmp_path):
  with pytest.raises(ConfigError, match="sizes"):
    rotated_mnist.run(str(tmp_path), sizes=["10k"])
  with pytest.raises(ConfigError, match="sizes"):
    rotated_mnist.run(str(tmp_path), sizes=[0])
  assert not list(tmp_path.iterdir())
