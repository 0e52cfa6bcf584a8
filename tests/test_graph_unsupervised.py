"""GraphSAGE's unsupervised neighbour-similarity loss (Hamilton et al. 2017, eq. 1) in the
node-classification trainer: the loss against numpy, the edge and negative sampling, the hidden
embeddings of NodeClassifier, and a short WordNet "cora" run with the term on."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax.errors import ConfigError
from dl_jax.models import registry
from dl_jax import engine
from dl_jax.tasks import node_classification as node_train
from dl_jax.graph.graphs import from_edge_list
from experiments.configs import gnn_wordnet
from tests.conftest import experiment_cmd, run


def _log_sigmoid(x):
  return -np.log1p(np.exp(-x))


def test_unsupervised_loss_matches_numpy():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(5, 3))
  u, v = np.array([0, 1, 3, 4]), np.array([1, 0, 2, 2])
  negatives = np.array([[2, 3], [4, 4], [0, 1], [3, 0]])
  expected = np.mean([
      -_log_sigmoid(z[a] @ z[b]) - sum(_log_sigmoid(-(z[a] @ z[n])) for n in negs)
      for a, b, negs in zip(u, v, negatives)])
  got = node_train.unsupervised_loss(jnp.asarray(z, jnp.float32), u, v, negatives)
  np.testing.assert_allclose(float(got), expected, rtol=1e-5, atol=1e-6)
  # Swapping a positive and a negative changes the value (the two terms are not symmetric).
  swapped = node_train.unsupervised_loss(jnp.asarray(z, jnp.float32), u, negatives[:, 0],
                                         np.stack([v, negatives[:, 1]], 1))
  assert abs(float(swapped) - expected) > 1e-3


def test_sample_unsupervised_edges_and_noise_distribution():
  # A star 0 - {1, 2, 3} (both directions) and an isolated node 4.
  senders = np.array([0, 0, 0, 1, 2, 3])
  receivers = np.array([1, 2, 3, 0, 0, 0])
  key = jax.random.key(0)
  u, v, negatives = node_train.sample_unsupervised(key, senders, receivers, 5, 4000, 5)
  assert u.shape == v.shape == (4000,) and negatives.shape == (4000, 5)
  edges = set(zip(senders.tolist(), receivers.tolist()))
  assert set(zip(np.asarray(u).tolist(), np.asarray(v).tolist())) == edges
  counts = np.bincount(np.asarray(negatives).ravel(), minlength=5) / negatives.size
  p = np.array([3, 1, 1, 1, 0], np.float64) ** 0.75
  np.testing.assert_allclose(counts, p / p.sum(), atol=0.02)  # 20,000 draws
  assert counts[4] == 0  # no edges: never a negative
  again = node_train.sample_unsupervised(key, senders, receivers, 5, 4000, 5)
  for a, b in zip((u, v, negatives), again):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("kind", ["sage_mean", "gcn", "ggnn"])
def test_return_hidden_keeps_logits_and_params(kind):
  graph = from_edge_list([0, 1, 1, 2], [1, 0, 2, 1], 3,
                         nodes=np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))
  model = registry.build(kind, num_classes=2, hidden=8, dropout=0.0)
  params = model.init(jax.random.PRNGKey(0), graph)
  logits = model.apply(params, graph)
  logits2, hidden = model.apply(params, graph, return_hidden=True)
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(logits2))
  assert hidden.shape == (3, 8)
  assert jax.tree.structure(model.init(jax.random.PRNGKey(0), graph, return_hidden=True)) == \
      jax.tree.structure(params)
  if kind != "ggnn":
    assert np.all(np.asarray(hidden) >= 0)  # after the ReLU


def test_wordnet_cora_with_unsupervised_loss(tmp_path):
  out = run(experiment_cmd("gnn_wordnet", tmp_path, "--config.model=sage_mean",
                           "--config.seeds=2", "--config.num_epochs=6",
                           "--config.log_every_steps=3", "--config.unsupervised_weight=1.0",
                           "--config.unsupervised_edges=256"))
  assert out.returncode == 0, out.stderr[-3000:]
  r = json.loads((tmp_path / "results.json").read_text())
  assert r["steps"] == 6 and r["config"]["unsupervised_weight"] == 1.0
  assert 0 <= r["test_accuracy"] <= 1
  train = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
           if json.loads(line)["split"] == "train"]
  unsup = [m["unsupervised_loss"] for m in train]
  assert all(np.isfinite(unsup)) and all(x > 0 for x in unsup)


@pytest.mark.parametrize("values,message", [
    ({"unsupervised_weight": -1.0}, "unsupervised_weight=-1.0 must be a finite number >= 0"),
    ({"unsupervised_weight": 1.0, "unsupervised_negatives": 0},
     "unsupervised_negatives=0 must be a positive integer"),
    ({"unsupervised_weight": 1.0, "sampling.enabled": True},
     "unsupervised_weight=1.0 needs full-batch training"),
    ({"unsupervised_weight": 1.0, "model_kwargs.num_layers": 1},
     "model_kwargs.num_layers=1; accepted: >= 2"),
])
def test_bad_unsupervised_config(values, message):
  config = gnn_wordnet.get_config()
  for key, value in values.items():
    node = config
    *parents, leaf = key.split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  with pytest.raises(ConfigError, match=re.escape(message)):
    engine.validate(config)
