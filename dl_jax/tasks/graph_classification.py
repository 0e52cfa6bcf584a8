"""Graph classification (section 6.5, the molecule setting): k-fold stratified cross-validation
on MUTAG, a task of the engine.

Each fold trains a fresh `config.model` (GIN or GCN layers, sum read-out) for `num_epochs` on
the other folds, in batches of `batch_size` graphs padded to size buckets
(`dl_jax.graph.graphs.iterate_batches`: the jitted step compiles once per bucket, never per fold);
the graph mask keeps the padding graphs out of the loss and the metrics. One `advance` is one
epoch, followed by the evaluation of the fold's test graphs, which gives two summaries:

- the per-fold test accuracy after the last epoch, its mean and std over the folds (the number
  to quote);
- the protocol of the GIN paper (Xu et al. 2019), labelled as such: the epoch whose test
  accuracy, averaged over the folds, is highest, and the mean and std at that epoch. It selects
  the epoch on the test folds, so it is optimistic.

Steps are optimizer steps, counted over all folds; checkpoints, `max_steps` and SIGTERM take
effect at epoch ends. The data order is a pure function of (seed, fold, epoch); fold f starts from
fold_in(k_init, f) and its dropout key of step t is fold_in(fold_in(k_dropout, f), t), where
(k_init, k_dropout) is the split of the run's key.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from dl_jax import optim, plots
from dl_jax.data import graphs as graph_data
from dl_jax.engine import checks
from dl_jax.engine.task import Plan, Task, jit_step
from dl_jax.errors import ConfigError
from dl_jax.graph import graphs as gg
from dl_jax.models import registry
from dl_jax.models.spec import count_params

DATASETS = ("mutag",)


def make_optimizer(config) -> optax.GradientTransformation:
  """`config.optimizer` with its learning rate as a hyper-parameter of the state, so that the
  GIN paper's step decay (`learning_rate_at`) needs no recompilation per fold."""
  return optax.inject_hyperparams(optim.OPTIMIZERS[config.optimizer])(
      learning_rate=config.learning_rate)


def learning_rate_at(config, epoch: int) -> float:
  """The learning rate times `lr_decay_factor` every `lr_decay_every_epochs` epochs."""
  return config.learning_rate * config.lr_decay_factor ** (epoch // config.lr_decay_every_epochs)

# ---------------------------------------------------------------------------------------------
# Pure steps.

def _sums(logits, labels, mask):
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return {"loss": jnp.sum(jnp.where(mask, ce, 0.0)),
          "correct": jnp.sum(jnp.where(mask, correct, 0.0)),
          "count": jnp.sum(mask).astype(jnp.float32)}


def make_train_step(model, tx):
  """train_step(state, batch, key, step, learning_rate) -> (state, sums): one optimizer step on a
  padded batch ({"graph", "labels", "graph_mask"}); the loss is the mean cross-entropy over the
  real graphs; dropout from fold_in(key, step)."""
  def train_step(state, batch, key, step, learning_rate):
    rngs = {"dropout": jax.random.fold_in(key, step)}
    opt_state = state["opt_state"]
    opt_state = opt_state._replace(hyperparams={
        **opt_state.hyperparams, "learning_rate": jnp.asarray(learning_rate, jnp.float32)})

    def loss_fn(params):
      logits = model.apply({"params": params}, batch["graph"], deterministic=False, rngs=rngs)
      sums = _sums(logits, batch["labels"], batch["graph_mask"])
      return sums["loss"] / jnp.maximum(sums["count"], 1), sums

    (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, opt_state, state["params"])
    params = optax.apply_updates(state["params"], updates)
    return ({**state, "params": params, "opt_state": opt_state},
            {**sums, "grad_norm": optax.tree.norm(grads)})
  return train_step


def make_eval_step(model):
  """eval_step(params, batch) -> loss and accuracy sums over the real graphs, dropout off."""
  def eval_step(params, batch):
    logits = model.apply({"params": params}, batch["graph"], deterministic=True)
    return _sums(logits, batch["labels"], batch["graph_mask"])
  return eval_step


def batches(dataset, indices, config, seed: int, epoch: int, shuffle: bool):
  """The padded batches of `dataset.graphs[indices]` in the order of (seed, epoch)."""
  graphs = [dataset.graphs[i] for i in indices]
  labels = dataset.labels[np.asarray(indices)]
  for b in gg.iterate_batches(graphs, config.batch_size, seed=seed, epoch=epoch,
                              shuffle=shuffle, growth=config.bucket_growth,
                              minimum=config.bucket_minimum):
    yield {"graph": b.graph, "labels": np.where(b.indices >= 0, labels[b.indices], 0),
           "graph_mask": b.graph_mask}



def _fold_seed(config, fold: int) -> int:
  return config.seed * 1000 + fold  # batch order of fold f: (seed * 1000 + f, epoch)


def _max_buckets(dataset, config) -> int:
  """An upper bound on the padded batch shapes: rungs of the node ladder times those of the edge
  ladder up to the largest possible batch (the step compiles at most once per shape)."""
  def rungs(sizes):
    largest = int(np.sum(np.sort(sizes)[::-1][:config.batch_size])) + 1
    count, size = 1, gg.bucket_size(1, config.bucket_growth, config.bucket_minimum)
    while size < largest:
      size = gg.bucket_size(size + 1, config.bucket_growth, config.bucket_minimum)
      count += 1
    return count
  nodes = [int(g.n_node.sum()) for g in dataset.graphs]
  edges = [int(g.n_edge.sum()) for g in dataset.graphs]
  return rungs(nodes) * rungs(edges)


class GraphClassification(Task):
  """k-fold cross-validation of `config.model` on `config.dataset`."""

  SINGLE_PROCESS = "its batches are padded graphs in size buckets, built whole by one process"
  CHECKS = {
      "model": checks.one_of(*registry.names("graph")),
      "model_kwargs": checks.hyper_parameters,  # names and types: the model registry
      "dataset": checks.one_of(*DATASETS),
      "folds": checks.int_at_least(2),
      "fold_seed": checks.seed,
      "batch_size": checks.positive_int,
      "num_epochs": checks.positive_int,
      "optimizer": checks.one_of(*optim.OPTIMIZERS),
      "learning_rate": checks.positive_number,
      "lr_decay_every_epochs": checks.positive_int,
      "lr_decay_factor": checks.number(0.0, 1.0, low_open=True),
      "bucket_growth": checks.number(1.0, 16.0, low_open=True),
      "bucket_minimum": checks.positive_int,
  }

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.dataset = dataset = graph_data.load_mutag(config.data_dir or None)
    if config.folds > min(np.bincount(dataset.labels)):
      raise ConfigError(f"folds={config.folds} exceeds the {min(np.bincount(dataset.labels))} "
                        f"graphs of the rarest class; accepted: 2..{min(np.bincount(dataset.labels))}")
    self.folds = graph_data.stratified_kfold(dataset.labels, config.folds, config.fold_seed)
    self.steps_per_epoch = [math.ceil(len(train) / config.batch_size) for train, _ in self.folds]
    self.model = registry.build(config.model, num_classes=dataset.num_classes,
                              **config.model_kwargs.to_dict())
    self.tx = make_optimizer(config)
    self.example = next(batches(dataset, self.folds[0][0], config, 0, 0, False))["graph"]
    buckets = _max_buckets(dataset, config)
    self._train = jit_step(make_train_step(self.model, self.tx), max_traces=buckets,
                           donate_argnums=0)
    self._eval = jit_step(make_eval_step(self.model), max_traces=buckets)
    self._fresh = jax.jit(self._fresh_model)
    self._position = ""
    logging.info("%s on %s: %d-fold cross-validation, %d epochs per fold", config.model,
                 dataset.name, config.folds, config.num_epochs)

  def plan(self) -> Plan:
    total = sum(s * self.config.num_epochs for s in self.steps_per_epoch)
    return Plan(total, total / (self.config.folds * self.config.num_epochs), "graphs",
                self.config.batch_size)

  def _fresh_model(self, key_data, fold):
    """Parameters and optimizer state of fold `fold`, from fold_in(k_init, fold)."""
    k_init, _ = jax.random.split(jax.random.wrap_key_data(key_data))
    params = self.model.init(jax.random.fold_in(k_init, fold), self.example)["params"]
    return {"params": params, "opt_state": self.tx.init(params)}

  def init(self, key):
    k, e = self.config.folds, self.config.num_epochs
    key_data = jax.random.key_data(key)
    return {"model": self._fresh_model(key_data, 0), "key": key_data,
            "history": {name: jnp.zeros((k, e), jnp.float32) for name in
                        ("train_loss", "train_accuracy", "test_loss", "test_accuracy")},
            "epochs_done": jnp.zeros((), jnp.int32)}

  def advance(self, state, step, stop):
    del stop
    config = self.config
    fold, epoch = divmod(int(state["epochs_done"]), config.num_epochs)
    train_idx, test_idx = self.folds[fold]
    model_state = state["model"]
    if epoch == 0:  # a new fold starts from its own initialisation
      model_state = self._fresh(state["key"], np.int32(fold))
    _, k_dropout = jax.random.split(jax.random.wrap_key_data(state["key"]))
    dropout_key = jax.random.key_data(jax.random.fold_in(k_dropout, fold))
    lr = np.float32(learning_rate_at(config, epoch))
    sums = []
    for batch in batches(self.dataset, train_idx, config, _fold_seed(config, fold), epoch, True):
      step += 1
      model_state, m = self._train(model_state, batch, dropout_key, np.int32(step), lr)
      sums.append(m)
    sums = jax.device_get(sums)
    test_sums = jax.device_get([self._eval(model_state["params"], b)
                                for b in batches(self.dataset, test_idx, config, 0, 0, False)])
    history = {name: np.array(v) for name, v in state["history"].items()}
    for split, rows in (("train", sums), ("test", test_sums)):
      count = sum(float(m["count"]) for m in rows)
      history[f"{split}_loss"][fold, epoch] = sum(float(m["loss"]) for m in rows) / count
      history[f"{split}_accuracy"][fold, epoch] = sum(float(m["correct"]) for m in rows) / count
    count = np.maximum([float(m["count"]) for m in sums], 1)
    logs = {"train": {"loss": np.array([float(m["loss"]) for m in sums]) / count,
                      "accuracy": np.array([float(m["correct"]) for m in sums]) / count,
                      "grad_norm": np.array([float(m["grad_norm"]) for m in sums])},
            "test": {"loss": history["test_loss"][fold, epoch],
                     "accuracy": history["test_accuracy"][fold, epoch],
                     "fold": fold, "epoch": epoch + 1}}
    self._position = f"fold {fold + 1}/{config.folds}  epoch {epoch + 1}/{config.num_epochs}"
    state = {**state, "model": model_state, "history": history,
             "epochs_done": np.asarray(int(state["epochs_done"]) + 1, np.int32)}
    return state, step, logs

  def position(self, step):
    return self._position

  def finish(self, state, step, out_dir):
    config, k, num_epochs = self.config, self.config.folds, self.config.num_epochs
    history = {name: np.asarray(v) for name, v in state["history"].items()}
    epochs_done = int(state["epochs_done"])
    done = epochs_done // num_epochs  # complete folds
    final = history["test_accuracy"][:done, -1]
    mean_curve = history["test_accuracy"][:done].mean(0) if done else np.zeros(num_epochs)
    best_epoch = int(np.argmax(mean_curve))
    summary = {
        "dataset": self.dataset.name, "folds": k, "folds_completed": done,
        "epochs_per_fold": num_epochs,
        "test_accuracy": float(final.mean()) if done else None,
        "test_accuracy_std": float(final.std()) if done else None,
        "test_accuracy_per_fold": [float(v) for v in final],
        "gin_protocol": {
            "note": "epoch with the best test accuracy averaged over folds (Xu et al. 2019); "
                    "selected on the test folds, so optimistic",
            "epoch": best_epoch + 1,
            "test_accuracy": float(mean_curve[best_epoch]),
            "test_accuracy_std": (float(history["test_accuracy"][:done, best_epoch].std())
                                  if done else None)},
        "train_accuracy_final": (float(history["train_accuracy"][:done, -1].mean()) if done
                                 else None),
        "epochs": epochs_done, "param_count": count_params(state["model"]["params"]),
        "batch_size": config.batch_size,
    }
    if not done:
      return summary, {}, f"stopped after {epochs_done} of {k * num_epochs} epochs"
    headline = (f"{k}-fold test accuracy {100 * final.mean():.2f} +- {100 * final.std():.2f}% "
                f"(last epoch); GIN protocol: {100 * mean_curve[best_epoch]:.2f} +- "
                f"{100 * history['test_accuracy'][:done, best_epoch].std():.2f}% at epoch "
                f"{best_epoch + 1}")
    if out_dir is not None:
      plots.fold_curves(history["test_accuracy"][:done], out_dir / "fold_curves.png",
                        f"{config.experiment}: {100 * final.mean():.1f} +- "
                        f"{100 * final.std():.1f}% ({k}-fold, last epoch)")
    return summary, {}, headline
