"""Real-data trainings of every experiment. CI runs a short but real version of each; the full
runs, which check the README targets, run with `./launch.sh test --full-training -k training`."""

import json

import pytest

# experiment -> (short flags, short target, full target)
TRAININGS = {
    "mnist_mlp": (("--config.num_epochs=2",), 0.950, 0.980),
    "mnist_cnn": (("--config.num_epochs=1",), 0.960, 0.990),
}


@pytest.mark.parametrize("name", sorted(TRAININGS))
def test_training_reaches_target(name, tmp_path, run_experiment, full_training):
  short_flags, short_target, full_target = TRAININGS[name]
  result = run_experiment(name, tmp_path, *(() if full_training else short_flags))
  assert result.returncode == 0, result.stderr[-3000:]
  results = json.loads((tmp_path / "results.json").read_text())
  target = full_target if full_training else short_target
  assert results["test_accuracy"] >= target, results
