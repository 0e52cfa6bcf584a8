"""Chapter-6 experiments end to end, as a user runs them: node classification (WordNet "cora"
with several seeds at once, karate, the full WordNet graph with neighbour sampling), MUTAG
cross-validation, resume, bad config values; and, in-process, that a graph-classification epoch
compiles at most once per size bucket. The full-length runs (README numbers) are marked slow and
run with --full-training."""

import json

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.conftest import experiment_cmd, run

CORA_SHORT = ("--config.seeds=2", "--config.num_epochs=6", "--config.checkpoint_every_steps=3",
              "--config.log_every_steps=3", "--config.keep_checkpoints=5")


def results(workdir) -> dict:
  return json.loads((workdir / "results.json").read_text())


def load_tree(workdir, step):
  return ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "default")


def assert_trees_equal(a, b):
  """Bitwise equality of two checkpoints, all but the wall-clock train time."""
  a, b = ({k: v for k, v in t.items() if k != "train_time_s"} for t in (a, b))
  flat_a, flat_b = ocp.tree.to_flat_dict(a), ocp.tree.to_flat_dict(b)
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]),
                                  err_msg=str(key))


def check_run(workdir, cmd):
  out = run(cmd)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


@pytest.fixture(scope="module")
def cora_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("cora")
  check_run(workdir, experiment_cmd("gnn_wordnet", workdir, *CORA_SHORT))
  return workdir


def test_wordnet_cora_several_seeds(cora_run):
  r = results(cora_run)
  assert r["seeds"] == 2 and r["steps"] == 6 and r["dataset"] == "wordnet_cora"
  for key in ("test_accuracy_at_best_val", "test_accuracy_final", "val_accuracy_best"):
    assert len(r[key]["per_seed"]) == 2
    assert r[key]["std"] == pytest.approx(np.std(r[key]["per_seed"]))
  per_seed = r["test_accuracy_at_best_val"]["per_seed"]
  assert per_seed[0] != per_seed[1]  # two different models, not one copied
  assert r["test_accuracy"] == pytest.approx(np.mean(per_seed))
  assert r["test_accuracy"] > 0.3  # 15 classes: chance is below 0.1; 6 epochs of GCN do better
  assert all(1 <= e <= 6 for e in r["best_epoch"])
  assert (cora_run / "learning_curves.png").stat().st_size > 0
  splits = [json.loads(line)["split"] for line in
            (cora_run / "metrics.jsonl").read_text().splitlines()]
  assert splits.count("val") == 6 and splits.count("test") == 6


def test_karate(tmp_path):
  check_run(tmp_path, experiment_cmd("gnn_karate", tmp_path, "--config.seeds=3",
                                     "--config.num_epochs=30"))
  r = results(tmp_path)
  assert r["num_nodes"] == 34 and r["test_nodes"] == 28 and r["seeds"] == 3
  assert r["test_accuracy"] > 0.6


def test_wordnet_full_with_sampling(tmp_path):
  check_run(tmp_path, experiment_cmd(
      "gnn_wordnet_full", tmp_path, "--config.sampling.batch_size=64",
      "--config.sampling.fanouts=(5,5)", "--config.max_steps=4",
      "--config.sampling.eval_subset=200", "--config.sampling.eval_batch_size=200",
      "--config.log_every_steps=2"))
  r = results(tmp_path)
  assert r["num_nodes"] == 82115 and r["steps"] == 4 and r["model"] == "sage_mean"
  assert r["eval_nodes"] == {"val": 200, "test": 200}
  assert r["sampling"]["fanouts"] == [5, 5] and r["train_nodes_per_s"] > 0
  assert 0 <= r["test_accuracy"] <= 1


def test_mutag_cross_validation_and_resume_across_a_fold_boundary(tmp_path):
  flags = ("--config.folds=2", "--config.num_epochs=2", "--config.checkpoint_every_steps=1",
           "--config.keep_checkpoints=20")
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  check_run(straight, experiment_cmd("gnn_mutag", straight, *flags))
  r = results(straight)
  assert r["folds_completed"] == 2 and len(r["test_accuracy_per_fold"]) == 2
  assert r["test_accuracy"] == pytest.approx(np.mean(r["test_accuracy_per_fold"]))
  assert 1 <= r["gin_protocol"]["epoch"] <= 2
  assert r["steps"] == 2 * 2 * 3  # 94 training graphs per fold: 3 batches of 32
  assert (straight / "learning_curves.png").stat().st_size > 0
  # Stop after the first fold (max_steps), then resume: the second fold starts afresh.
  check_run(resumed, experiment_cmd("gnn_mutag", resumed, *flags, "--config.max_steps=6"))
  assert results(resumed)["folds_completed"] == 1
  check_run(resumed, experiment_cmd("gnn_mutag", resumed, *flags))
  assert_trees_equal(load_tree(resumed, 12), load_tree(straight, 12))
  assert results(resumed)["test_accuracy_per_fold"] == r["test_accuracy_per_fold"]


@pytest.mark.parametrize("name,flags,message", [
    ("gnn_wordnet", ("--config.model=gnn",), "unknown model 'gnn'; accepted: gat, gcn, ggnn"),
    ("gnn_wordnet", ("--config.dataset=cora",), "unknown dataset 'cora'; accepted: wordnet_cora"),
    ("gnn_wordnet", ("--config.seeds=0",), "seeds=0 must be a positive integer"),
    ("gnn_wordnet", ("--config.model_kwargs.dropout=1.5",),
     "model_kwargs.dropout=1.5 must be a rate in [0, 1)"),
    ("gnn_wordnet", ("--config.sampling.fanout=5,5",),
     "unknown config key 'sampling.fanout'; did you mean 'sampling.fanouts'?"),
    ("gnn_wordnet_full", ("--config.sampling.fanouts=(25,0)",), "sampling.fanouts=(25, 0)"),
    ("gnn_mutag", ("--config.model=gcn",), "unknown model 'gcn'; accepted: graph_deepsets, graph_gcn"),
    ("gnn_mutag", ("--config.dataset=proteins",), "unknown dataset 'proteins'; accepted: mutag"),
])
def test_bad_config_values(tmp_path, name, flags, message):
  out = run(experiment_cmd(name, tmp_path / "w", *flags))
  assert out.returncode == 2, out.stderr[-2000:]
  errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and message in errors[0], out.stderr[-2000:]
  assert not (tmp_path / "w" / "checkpoints").exists()


def test_graph_epoch_compiles_once_per_bucket():
  from dl_jax.data import graphs as graph_data
  from dl_jax.models import registry
  from dl_jax.tasks import graph_classification as train_graphs
  from experiments.configs import gnn_mutag
  config = gnn_mutag.get_config()
  dataset = graph_data.load_mutag()
  train_idx = np.arange(120)
  model = registry.build("graph_gin", num_classes=2, hidden=8, num_layers=2)
  tx = train_graphs.make_optimizer(config)
  first = next(train_graphs.batches(dataset, train_idx, config, 0, 0, False))
  params = model.init(jax.random.PRNGKey(0), first["graph"])["params"]
  state = {"params": params, "opt_state": tx.init(params)}
  epochs = [list(train_graphs.batches(dataset, train_idx, config, 0, e, True)) for e in range(3)]
  shapes = {(b["graph"].nodes.shape, b["graph"].senders.shape) for ep in epochs for b in ep}
  assert 1 < len(shapes) < 12  # several buckets, far fewer than batches
  step = jax.jit(chex.assert_max_traces(train_graphs.make_train_step(model, tx), n=len(shapes)))
  key, n = jax.random.PRNGKey(1), 0
  for ep in epochs:
    for b in ep:
      n += 1
      state, sums = step(state, b, key, n, 0.01)
      assert sums["count"] == np.sum(b["graph_mask"])  # padding graphs are not counted
  chex.clear_trace_counter()


# ------------------------------------------------------------------ full-length (README numbers)

@pytest.fixture
def require_full(full_training):
  if not full_training:
    pytest.skip("full-length training: run with --full-training")


@pytest.mark.slow
def test_full_wordnet_cora_gnns_beat_the_mlp(require_full, tmp_path):
  acc = {}
  for model in ("gcn", "gat", "mlp"):
    check_run(tmp_path / model, experiment_cmd("gnn_wordnet", tmp_path / model,
                                               f"--config.model={model}", "--config.seeds=5"))
    acc[model] = results(tmp_path / model)["test_accuracy"]
  assert acc["gcn"] > 0.80 and acc["gat"] > 0.80
  assert min(acc["gcn"], acc["gat"]) > acc["mlp"] + 0.10, acc


@pytest.mark.slow
def test_full_karate(require_full, tmp_path):
  check_run(tmp_path, experiment_cmd("gnn_karate", tmp_path))
  assert results(tmp_path)["test_accuracy"] > 0.85


@pytest.mark.slow
def test_full_wordnet_sampling_beats_the_mlp(require_full, tmp_path):
  acc = {}
  for model in ("sage_mean", "mlp"):
    check_run(tmp_path / model, experiment_cmd("gnn_wordnet_full", tmp_path / model,
                                               f"--config.model={model}"))
    acc[model] = results(tmp_path / model)["test_accuracy"]
  assert acc["sage_mean"] > acc["mlp"] + 0.05, acc


@pytest.mark.slow
def test_full_mutag_gin(require_full, tmp_path):
  check_run(tmp_path, experiment_cmd("gnn_mutag", tmp_path))
  r = results(tmp_path)
  assert r["folds_completed"] == 10 and r["test_accuracy"] > 0.80
