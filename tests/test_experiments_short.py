"""A short real run of every experiment of sections 5.3.2 and 5.4 (Fashion-MNIST architectures,
MNIST-1D): a few steps on real data through the engine, as a user runs it; the full runs are in
the README with their commands."""

import json

import pytest

from experiments import report

SHORT = ("--config.max_steps=2", "--config.train_subset=256", "--config.val_size=64",
         "--config.test_subset=64", "--config.batch_size=32", "--config.eval_batch_size=64",
         "--config.warmup_steps=0", "--config.log_every_steps=1")
EXPERIMENTS = ["fashion_lenet5", "fashion_alexnet", "fashion_vgg", "fashion_googlenet",
               "fashion_resnet", "fashion_wrn", "mnist1d_logreg", "mnist1d_mlp",
               "mnist1d_cnn", "mnist1d_cnn_shuffled"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_short_run(tmp_path, run_experiment, name):
  extra = ("--config.model=vgg11_small",) if name == "fashion_vgg" else ()
  done = run_experiment(name, tmp_path, *SHORT, *extra)
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["steps"] == 2 and results["test_size"] == 64
  assert 0.0 <= results["test_accuracy"] <= 1.0
  assert (tmp_path / "learning_curves.png").stat().st_size > 0
  if name.startswith("fashion"):  # the README's architecture table reads it
    row = report.fashion_table([{**results, "run": "short"}]).splitlines()[-1]
    assert row.startswith(f"| `short` | `{results['model']}` | {results['param_count']:,} |")
    assert "crop (pad 2), flip" in row and f"{100 * results['test_accuracy']:.2f} %" in row
