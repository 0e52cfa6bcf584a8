"""`train_and_evaluate` for graph classification (section 6.5, the molecule setting): k-fold
stratified cross-validation on MUTAG.

Each fold trains a fresh `config.model` (GIN or GCN layers, sum read-out) for `num_epochs` on
the other folds, in batches of `batch_size` graphs padded to size buckets
(`dl_jax.graph.graphs.iterate_batches`: a jitted step compiles once per bucket); the graph mask
keeps the padding graphs out of the loss and the metrics. After every epoch the fold's test
graphs are evaluated, which gives two summaries:

- the per-fold test accuracy after the last epoch, its mean and std over the folds (the number
  to quote);
- the protocol of the GIN paper (Xu et al. 2019), labelled as such: the epoch whose test
  accuracy, averaged over the folds, is highest, and the mean and std at that epoch. It selects
  the epoch on the test folds, so it is optimistic.

Steps are optimizer steps, counted over all folds. Checkpoints are written at epoch ends (the
first epoch end at or after each multiple of `checkpoint_every_steps`, and every fold's end);
`max_steps` and SIGTERM also stop at an epoch end. The data order is a pure function of (seed,
fold, epoch) and the dropout key of step t is fold_in(fold_in(key, fold), t), so a resumed run
ends bitwise where an uninterrupted one would.
"""

import json
import math
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import ml_collections
import numpy as np
import optax
from absl import logging

from dl_jax.data import graphs as graph_data
from dl_jax.errors import ConfigError, require_positive_int
from dl_jax.graph import graphs as gg
from dl_jax.graph import models
from dl_jax.train import checkpoint, metrics, optimizers
from dl_jax.train.loop import NonFiniteError, StopRequest, close_preempted, versions

DATASETS = ("mutag",)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails on the first bad value with a message naming it and what is accepted."""
  if config.model not in models.GRAPH_MODELS:
    raise ConfigError(f"unknown graph model {config.model!r}; accepted: "
                      f"{', '.join(models.GRAPH_MODELS)}")
  if config.dataset not in DATASETS:
    raise ConfigError(f"unknown dataset {config.dataset!r}; accepted: {', '.join(DATASETS)}")
  for key in ("folds", "batch_size", "num_epochs", "log_every_steps", "checkpoint_every_steps",
              "keep_checkpoints", "lr_decay_every_epochs"):
    require_positive_int(config, key)
  if config.folds < 2:
    raise ConfigError(f"folds={config.folds} must be >= 2")
  if not isinstance(config.max_steps, int) or config.max_steps < 0:
    raise ConfigError(f"max_steps={config.max_steps!r} must be 0 (no cap) or a positive integer")
  if not 0 < config.lr_decay_factor <= 1:
    raise ConfigError(f"lr_decay_factor={config.lr_decay_factor!r} must be in (0, 1]")
  if not config.bucket_growth > 1:
    raise ConfigError(f"bucket_growth={config.bucket_growth!r} must be > 1")
  optimizers.make_optimizer(config.optimizer, config.learning_rate)


def make_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """`config.optimizer` with the GIN paper's step decay: the learning rate times
  `lr_decay_factor` every `lr_decay_every_epochs` epochs."""
  schedule = optax.exponential_decay(config.learning_rate,
                                     config.lr_decay_every_epochs * steps_per_epoch,
                                     config.lr_decay_factor, staircase=True)
  return optimizers.OPTIMIZERS[config.optimizer](schedule)


# ---------------------------------------------------------------------------------------------
# Pure steps.

def _sums(logits, labels, mask):
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return {"loss": jnp.sum(jnp.where(mask, ce, 0.0)),
          "correct": jnp.sum(jnp.where(mask, correct, 0.0)),
          "count": jnp.sum(mask).astype(jnp.float32)}


def make_train_step(model, tx):
  """train_step(state, batch, key, step) -> (state, sums): one optimizer step on a padded batch
  ({"graph", "labels", "graph_mask"}); the loss is the mean cross-entropy over the real graphs;
  dropout from fold_in(key, step)."""
  def train_step(state, batch, key, step):
    rngs = {"dropout": jax.random.fold_in(key, step)}

    def loss_fn(params):
      logits = model.apply({"params": params}, batch["graph"], deterministic=False, rngs=rngs)
      sums = _sums(logits, batch["labels"], batch["graph_mask"])
      return sums["loss"] / jnp.maximum(sums["count"], 1), sums

    (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return ({"params": params, "opt_state": opt_state},
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


# ---------------------------------------------------------------------------------------------
# The run.

def _fold_seed(config, fold: int) -> int:
  return config.seed * 1000 + fold  # batch order of fold f: (seed * 1000 + f, epoch)


def _plot(history, path, title):
  fig, ax = plt.subplots(figsize=(7, 4))
  epochs = np.arange(1, history.shape[1] + 1)
  for row in history:
    ax.plot(epochs, 100 * row, color="0.8", lw=0.8)
  ax.plot(epochs, 100 * history.mean(0), color="C0", lw=2, label="mean over folds")
  ax.set_xlabel("epoch")
  ax.set_ylabel("test accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend()
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """k-fold cross-validation of `config.model` on `config.dataset`, resuming from `workdir`.

  Returns the final results (also written to `<workdir>/results.json`), or None when a SIGTERM
  stopped the run after saving a checkpoint.
  """
  # ------------------------------------------------------------------ config and data
  validate_config(config)
  run_dir = checkpoint.prepare_workdir(workdir, config.to_dict())
  dataset = graph_data.load_mutag(config.data_dir or None)
  folds = graph_data.stratified_kfold(dataset.labels, config.folds, config.fold_seed)
  k, num_epochs = config.folds, config.num_epochs
  steps_per_epoch = [math.ceil(len(train) / config.batch_size) for train, _ in folds]
  schedule_steps = sum(s * num_epochs for s in steps_per_epoch)
  model = models.build(config.model, num_classes=dataset.num_classes,
                       **config.model_kwargs.to_dict())
  example = next(batches(dataset, folds[0][0], config, 0, 0, False))

  def fresh(fold: int):
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), fold)
    params = model.init(key, example["graph"])["params"]
    return {"params": params, "opt_state": make_optimizer(config, steps_per_epoch[fold]).init(
        params)}

  # ------------------------------------------------------------------ state: resume or init
  history = {name: np.zeros((k, num_epochs), np.float32)
             for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")}
  state = fresh(0)
  ckpt = checkpoint.Checkpointer(run_dir, config.keep_checkpoints)
  progress_tree = {"step": np.zeros((), np.int64), "epochs_done": np.zeros((), np.int64)}
  train_time = 0.0
  latest = ckpt.latest_step()
  if latest is not None:
    restored = ckpt.restore(latest, {"state": state, "history": history, **progress_tree,
                                     "train_time_s": np.zeros((), np.float64)})
    state, history = restored["state"], {n: np.array(v) for n, v in restored["history"].items()}
    progress_tree = {n: restored[n] for n in progress_tree}
    train_time = float(restored["train_time_s"])
    logging.info("resumed from %s at step %d", ckpt.directory / str(latest), latest)
  step, epochs_done = int(progress_tree["step"]), int(progress_tree["epochs_done"])
  n_params = models.count_params(state["params"])
  logging.info("%s on %s: %s parameters, %d-fold cross-validation, %d epochs per fold, %d steps "
               "in all, workdir %s", config.model, dataset.name, f"{n_params:,}", k, num_epochs,
               schedule_steps, run_dir)

  # ------------------------------------------------------------------ training loop
  train_fns = {spe: jax.jit(make_train_step(model, make_optimizer(config, spe)),
                           donate_argnums=0)
               for spe in set(steps_per_epoch)}  # one per schedule: folds share compilations
  eval_fn = jax.jit(make_eval_step(model))
  writer = metrics.MetricWriter(run_dir, step)
  progress = metrics.Progress(step, schedule_steps, steps_per_epoch[0], config.batch_size)
  segment_start = time.perf_counter()
  last_saved = step

  def save():
    ckpt.save(step, {"state": state, "history": history,
                     "step": np.asarray(step, np.int64),
                     "epochs_done": np.asarray(epochs_done, np.int64),
                     "train_time_s": np.asarray(train_time + time.perf_counter() - segment_start)})

  with StopRequest() as stop:
    while epochs_done < k * num_epochs:
      if config.max_steps and step >= config.max_steps:
        break
      fold, epoch = divmod(epochs_done, num_epochs)
      train_idx, test_idx = folds[fold]
      if epoch == 0:  # a new fold starts from its own initialisation
        state = fresh(fold)
      key = jax.random.fold_in(jax.random.PRNGKey(config.seed + 1), fold)
      sums = []
      for batch in batches(dataset, train_idx, config, _fold_seed(config, fold), epoch, True):
        step += 1
        state, m = train_fns[steps_per_epoch[fold]](state, batch, key, step)
        sums.append(m)
      sums = jax.device_get(sums)
      for m in sums:
        if not (math.isfinite(float(m["loss"])) and math.isfinite(float(m["grad_norm"]))):
          ckpt.wait()
          raise NonFiniteError(
              f"non-finite loss or gradient norm in fold {fold}, epoch {epoch + 1} (step {step}: "
              f"loss sum={float(m['loss'])}, grad_norm={float(m['grad_norm'])}); training stopped."
              f" The last good checkpoint (step {ckpt.latest_step()}) is kept in "
              f"{ckpt.directory}; lower learning_rate={config.learning_rate}")
      count = sum(float(m["count"]) for m in sums)
      train_m = {"loss": sum(float(m["loss"]) for m in sums) / count,
                 "accuracy": sum(float(m["correct"]) for m in sums) / count}
      test_sums = [eval_fn(state["params"], b)
                   for b in batches(dataset, test_idx, config, 0, 0, False)]
      test_sums = jax.device_get(test_sums)
      count = sum(float(m["count"]) for m in test_sums)
      test_m = {"loss": sum(float(m["loss"]) for m in test_sums) / count,
                "accuracy": sum(float(m["correct"]) for m in test_sums) / count}
      for split, m in (("train", train_m), ("test", test_m)):
        history[f"{split}_loss"][fold, epoch] = m["loss"]
        history[f"{split}_accuracy"][fold, epoch] = m["accuracy"]
        writer.write(step, split, {**m, "fold": fold, "epoch": epoch + 1})
      epochs_done += 1
      fold_end = epoch + 1 == num_epochs
      if fold_end or (step // config.log_every_steps > (step - len(sums)) //
                      config.log_every_steps):
        rate = progress.rate(step)
        eta = time.strftime("%H:%M:%S", time.gmtime(
            (schedule_steps - step) * config.batch_size / max(rate, 1e-9)))
        logging.info("step %d/%d  fold %d/%d  epoch %d/%d  loss %.4f  acc %.2f%%  test loss %.4f"
                     "  test acc %.2f%%  %s graphs/s  ETA %s", step, schedule_steps, fold + 1, k,
                     epoch + 1, num_epochs, train_m["loss"], 100 * train_m["accuracy"],
                     test_m["loss"], 100 * test_m["accuracy"], f"{rate:,.0f}", eta)
      capped = bool(config.max_steps) and step >= config.max_steps
      if (fold_end or capped or stop.requested or epochs_done == k * num_epochs or
          step // config.checkpoint_every_steps > last_saved // config.checkpoint_every_steps):
        save()
        last_saved = step
      if stop.requested:
        close_preempted(step, ckpt, writer)
        return None
  train_time += time.perf_counter() - segment_start
  ckpt.wait()
  writer.close()
  ckpt.close()

  # ------------------------------------------------------------------ summaries
  done = epochs_done // num_epochs  # complete folds
  final = history["test_accuracy"][:done, -1] if done else np.zeros(0)
  mean_curve = history["test_accuracy"][:done].mean(0) if done else np.zeros(num_epochs)
  best_epoch = int(np.argmax(mean_curve))
  results = {
      "experiment": config.experiment, "model": config.model, "dataset": dataset.name,
      "folds": k, "folds_completed": done, "epochs_per_fold": num_epochs,
      "test_accuracy": float(final.mean()) if done else None,
      "test_accuracy_std": float(final.std()) if done else None,
      "test_accuracy_per_fold": [float(v) for v in final],
      "gin_protocol": {
          "note": "epoch with the best test accuracy averaged over folds (Xu et al. 2019); "
                  "selected on the test folds, so optimistic",
          "epoch": best_epoch + 1,
          "test_accuracy": float(mean_curve[best_epoch]),
          "test_accuracy_std": float(history["test_accuracy"][:done, best_epoch].std())
                               if done else None},
      "train_accuracy_final": float(history["train_accuracy"][:done, -1].mean()) if done else None,
      "steps": step, "param_count": n_params, "train_time_s": train_time,
      "batch_size": config.batch_size, "seed": config.seed,
      "platform": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
      "versions": versions(), "config": config.to_dict(),
  }
  if epochs_done < k * num_epochs:
    logging.info("stopped at max_steps=%d after %d of %d epochs", config.max_steps, epochs_done,
                 k * num_epochs)
  (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
  if done:
    title = (f"{config.experiment}: {100 * final.mean():.1f} +- {100 * final.std():.1f}% "
             f"({k}-fold, last epoch)")
    _plot(history["test_accuracy"][:done], run_dir / "learning_curves.png", title)
    logging.info("%d-fold test accuracy %.2f +- %.2f%% (last epoch); GIN protocol: %.2f +- "
                 "%.2f%% at epoch %d (%s)", k, 100 * final.mean(), 100 * final.std(),
                 100 * mean_curve[best_epoch],
                 100 * history["test_accuracy"][:done, best_epoch].std(), best_epoch + 1,
                 run_dir / "results.json")
  return results
