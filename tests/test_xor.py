"""XOR (section 2.4.1): a single neuron stays at or below 3/4 accuracy; one hidden layer gets 1."""

import json
import sys

import jax
import jax.numpy as jnp
import pytest

from dl_jax.errors import ConfigError
from experiments import xor
from tests.conftest import run

# Why no linear boundary can exceed 3/4: a neuron predicts 1 where z = w_0 x_0 + w_1 x_1 + b >= 0.
# Classifying all four points right would need z(0,1) = w_1 + b >= 0 and z(1,0) = w_0 + b >= 0,
# whose sum is w_0 + w_1 + 2b >= 0, and z(0,0) = b < 0 and z(1,1) = w_0 + w_1 + b < 0, whose sum
# is w_0 + w_1 + 2b < 0: a contradiction. So at least one point is wrong, and the accuracy is at
# most 3/4, whatever the training.


def test_no_linear_boundary_beats_three_quarters():
  w = jax.random.normal(jax.random.PRNGKey(0), (100_000, 3))
  predictions = (xor.X @ w[:, :2].T + w[:, 2]) >= 0  # (4 points, 10^5 random boundaries)
  accuracies = (predictions == (xor.Y == 1)[:, None]).mean(axis=0)
  assert accuracies.max() == 0.75  # reached (the bound is tight), never exceeded


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("learning_rate", [0.01, 0.1, 1.0])
def test_single_neuron_stays_at_or_below_three_quarters(optimizer, learning_rate):
  for seed in range(4):
    params, losses = xor.train(xor.Neuron(), jax.random.PRNGKey(seed), optimizer=optimizer,
                               learning_rate=learning_rate, steps=500)
    assert xor.accuracy(xor.Neuron(), params) <= 0.75
    # It does train: towards the best a line can do in cross-entropy, P = 1/2 everywhere, log 2.
    assert losses[-1] <= losses[0] + 1e-6 and losses[-1] >= jnp.log(2.0) - 1e-5


@pytest.mark.parametrize("seed", range(4))
def test_one_hidden_layer_reaches_100_percent(seed):
  model = xor.OneHiddenLayer(hidden=8, activation="tanh")
  params, losses = xor.train(model, jax.random.PRNGKey(seed), learning_rate=0.1, steps=1000)
  assert xor.accuracy(model, params) == 1.0
  assert losses[-1] < 0.01


def test_experiment_writes_figure_and_results(tmp_path):
  result = run([sys.executable, "-m", "experiments.xor", f"--workdir={tmp_path}", "--steps=500"],
               timeout=120)
  assert result.returncode == 0, result.stderr
  png = tmp_path / "xor_boundaries.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["neuron"]["accuracy"] <= 0.75
  assert results["mlp"]["accuracy"] == results["test_accuracy"] == 1.0
  assert results["mlp"]["param_count"] == results["param_count"] == 2 * 8 + 8 + 8 + 1


def test_bad_settings_fail_before_training(tmp_path):
  with pytest.raises(ConfigError, match="unknown activation 'swish'"):
    xor.run(str(tmp_path), activation="swish")
  with pytest.raises(ConfigError, match="unknown optimizer 'lbfgs'"):
    xor.run(str(tmp_path), optimizer="lbfgs")
  assert not list(tmp_path.iterdir())
