"""`train_and_evaluate` for node classification (section 6.5, the Cora setting).

Two modes, chosen by `config.sampling.enabled`:

- full batch (small graphs: WordNet "cora", karate, CSBM): one step is one epoch, a forward
  pass over the whole graph with the loss on the training nodes (Kipf & Welling 2017);
- mini-batch with GraphSAGE neighbour sampling (section 6.5.1, the full WordNet graph): one step
  is `sampling.batch_size` seed nodes and their sampled `sampling.fanouts` neighbourhood
  (`dl_jax.graph.sampling`), the loss on the seeds only.

Several seeds in one run: `config.seeds` models (initialisation and dropout from
`fold_in(PRNGKey(seed), s)`) are trained at once, `jax.vmap` over the parameters and optimizer
states, so one jitted step trains all of them. Model selection is by validation accuracy (ties:
lower validation loss): the reported test accuracy is each seed's at its best-validation epoch,
next to the final-epoch one, as mean and std over the seeds. With sampling, all seeds see the same
mini-batches and samples (a function of (`seed`, step)); their initialisations and dropout differ.
Evaluation with sampling is by sampled inference over the validation and test nodes (fixed
samples, the same at every epoch), or `sampling.eval="full"` for one pass over the whole graph
(its first layer gathers [edges, features]: 221,636 x 1,000 floats on the full WordNet graph).

Optional unsupervised term (`config.unsupervised_weight` > 0, full batch only): GraphSAGE's
neighbour-similarity loss (Hamilton et al. 2017, eq. 1; section 6.5.1, "adjacent nodes should have
a similar representation") on the L2-normalised hidden embeddings z (the input of the last layer),
added to the cross-entropy with that weight; see `unsupervised_loss`.

Sections: config checks, data, state (init or resume), the loop (steps, progress, evaluation,
checkpoints, preemption), outputs.
"""

import functools
import json
import math
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from dl_jax.data import graphs as graph_data
from dl_jax.errors import ConfigError, require_positive_int
from dl_jax.graph import models, sampling
from dl_jax.graph.graphs import masked_mean
from dl_jax.train import checkpoint, metrics, optimizers
from dl_jax.train.loop import NonFiniteError, StopRequest, close_preempted, versions

DATASETS = ("wordnet_cora", "wordnet_full", "karate", "csbm")
EVAL_MODES = ("sampled", "full")
# PRNG of dropout and sampling order: "rbg" draws dropout masks about twice as fast as
# "threefry2x32" on the CPU (dropout on the 3,006 x 1,433 input dominates a GCN step).
RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
# Sample streams: training step t draws from (seed, t); evaluation batch i from
# (seed, _EVAL_STREAM + i), the same at every evaluation.
_EVAL_STREAM = 2 ** 31


# ---------------------------------------------------------------------------------------------
# Config checks.

def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails on the first bad value with a message naming it and what is accepted."""
  if config.model not in models.NODE_MODELS:
    raise ConfigError(f"unknown node model {config.model!r}; accepted: "
                      f"{', '.join(models.NODE_MODELS)}")
  if config.dataset not in DATASETS:
    raise ConfigError(f"unknown dataset {config.dataset!r}; accepted: {', '.join(DATASETS)}")
  for key in ("seeds", "num_epochs", "log_every_steps", "checkpoint_every_steps",
              "keep_checkpoints"):
    require_positive_int(config, key)
  if not isinstance(config.max_steps, int) or config.max_steps < 0:
    raise ConfigError(f"max_steps={config.max_steps!r} must be 0 (no cap) or a positive integer")
  if not isinstance(config.weight_decay, (int, float)) or not config.weight_decay >= 0:
    raise ConfigError(f"weight_decay={config.weight_decay!r} must be a number >= 0")
  optimizers.make_optimizer(config.optimizer, config.learning_rate)
  s = config.sampling
  if s.enabled:
    for key in ("batch_size", "eval_batch_size"):
      require_positive_int(s, key, prefix="sampling.")
    fanouts = tuple(s.fanouts)
    if not fanouts or not all(isinstance(f, int) and f >= 1 for f in fanouts):
      raise ConfigError(f"sampling.fanouts={fanouts!r}; accepted: one or more ints >= 1, "
                        "one per layer, e.g. (25, 10)")
    if not isinstance(s.eval_subset, int) or s.eval_subset < 0:
      raise ConfigError(f"sampling.eval_subset={s.eval_subset!r} must be 0 (all validation and "
                        "test nodes) or a positive integer")
    if s.eval not in EVAL_MODES:
      raise ConfigError(f"sampling.eval={s.eval!r}; accepted: {', '.join(EVAL_MODES)}")
  weight = config.get("unsupervised_weight", 0.0)
  if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight >= 0:
    raise ConfigError(f"unsupervised_weight={weight!r} must be a number >= 0 (0: off)")
  if weight:
    if s.enabled:
      raise ConfigError(f"unsupervised_weight={weight!r} needs full-batch training; accepted "
                        "with sampling.enabled=True: only unsupervised_weight=0")
    for key in ("unsupervised_negatives", "unsupervised_edges"):
      require_positive_int(config, key)
    layers = config.model_kwargs.get("num_layers", 2)
    if config.model != "ggnn" and layers < 2:
      raise ConfigError(f"unsupervised_weight={weight!r} needs hidden embeddings: "
                        f"model_kwargs.num_layers={layers!r}; accepted: >= 2")
  if config.rng_impl not in RNG_IMPLS:
    raise ConfigError(f"rng_impl={config.rng_impl!r}; accepted: {', '.join(RNG_IMPLS)}")


def load_dataset(config: ml_collections.ConfigDict) -> graph_data.NodeDataset:
  """The NodeDataset named by `config.dataset` (split from `config.split_seed`)."""
  data_dir = config.data_dir or None
  if config.dataset == "wordnet_cora":
    return graph_data.load_wordnet("cora", config.split_seed, data_dir)
  if config.dataset == "wordnet_full":
    return graph_data.load_wordnet("full", config.split_seed, data_dir)
  if config.dataset == "karate":
    return graph_data.load_karate()
  return graph_data.csbm(seed=config.split_seed)


# ---------------------------------------------------------------------------------------------
# Pure per-seed functions; `jax.vmap` maps them over the seed axis of the state.

def make_optimizer(config) -> optax.GradientTransformation:
  """`config.optimizer` with L2 weight decay added to the gradient (as PyTorch's Adam
  `weight_decay` and Kipf & Welling do): g <- g + weight_decay * theta."""
  tx = optimizers.make_optimizer(config.optimizer, config.learning_rate)
  if config.weight_decay:
    tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
  return tx


def _rngs(key):
  k_drop, k_order = jax.random.split(key)
  return {"dropout": k_drop, "neighbours": k_order}  # "neighbours": GraphSAGE-LSTM's order


def _loss_and_accuracy(logits, labels, mask):
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return masked_mean(ce, mask), masked_mean(correct, mask)


def unsupervised_loss(z, u, v, negatives):
  """GraphSAGE's unsupervised loss (Hamilton et al. 2017, eq. 1), the mean over the pairs k of

      J_k = -log sigma(z_u . z_v) - sum_{q=1..Q} log sigma(-z_u . z_{n_q}),

  the sum over Q negatives n_q ~ P_n being Q times the sample mean, i.e. the eq.-1 estimate of
  Q E_{v_n ~ P_n} log sigma(-z_u . z_{v_n}).

  Args:
    z: node embeddings [N, F] (used as given; the trainer L2-normalises them first).
    u, v: int [B], the positive pairs (here the two ends of an edge).
    negatives: int [B, Q], the negative nodes of each pair.
  """
  zu = z[u]
  positive = jnp.sum(zu * z[v], -1)  # [B]
  negative = jnp.einsum("bf,bqf->bq", zu, z[negatives])  # [B, Q]
  return jnp.mean(-jax.nn.log_sigmoid(positive)
                  - jnp.sum(jax.nn.log_sigmoid(-negative), -1))


def sample_unsupervised(key, senders, receivers, num_nodes: int, num_edges: int,
                        num_negatives: int):
  """Positive pairs and negatives of `unsupervised_loss`: `num_edges` edges (u, v) = (sender,
  receiver) uniformly with replacement, and `num_negatives` nodes per edge from the noise
  distribution P_n(v) ~ degree(v)^0.75 (degree: edges sent; nodes without edges never drawn).

  Returns:
    (u [B], v [B], negatives [B, Q]), int32.
  """
  k_edges, k_negatives = jax.random.split(key)
  index = jax.random.randint(k_edges, (num_edges,), 0, senders.shape[0])
  degree = jax.ops.segment_sum(jnp.ones(senders.shape, jnp.float32), senders, num_nodes)
  logits = jnp.where(degree > 0, 0.75 * jnp.log(jnp.maximum(degree, 1.0)), -jnp.inf)
  negatives = jax.random.categorical(k_negatives, logits, shape=(num_edges, num_negatives))
  return (jnp.asarray(senders, jnp.int32)[index], jnp.asarray(receivers, jnp.int32)[index],
          negatives.astype(jnp.int32))


def _unsupervised_options(config) -> dict | None:
  """(weight, negatives, edges) of the unsupervised term, or None when it is off."""
  weight = float(config.get("unsupervised_weight", 0.0))
  if not weight:
    return None
  return {"weight": weight, "negatives": config.unsupervised_negatives,
          "edges": config.unsupervised_edges}


def train_step_one(model, tx, rng_impl, params, opt_state, key, step, batch, unsupervised=None):
  """One optimizer step of one seed: cross-entropy (eq. 5.22) on `batch["mask"]` nodes, dropout
  and neighbour order from fold_in(key, step) (`key`: raw key data of the `rng_impl` PRNG).

  With `unsupervised` ({"weight", "negatives", "edges"}; full graph, no padding), the loss is
  cross-entropy + weight * `unsupervised_loss` on the L2-normalised hidden embeddings, the
  edges and negatives drawn from fold_in(fold_in(key, step), 1)."""
  key = jax.random.wrap_key_data(key, impl=rng_impl)
  step_key = jax.random.fold_in(key, step)
  rngs = _rngs(step_key)

  if unsupervised is None:
    def loss_fn(p):
      logits = model.apply({"params": p}, batch["graph"], deterministic=False, rngs=rngs)
      loss, accuracy = _loss_and_accuracy(logits, batch["labels"], batch["mask"])
      return loss, (loss, accuracy, {})
  else:
    graph = batch["graph"]
    u, v, negatives = sample_unsupervised(
        jax.random.fold_in(step_key, 1), graph.senders, graph.receivers, graph.nodes.shape[0],
        unsupervised["edges"], unsupervised["negatives"])

    def loss_fn(p):
      logits, hidden = model.apply({"params": p}, graph, deterministic=False, rngs=rngs,
                                   return_hidden=True)
      loss, accuracy = _loss_and_accuracy(logits, batch["labels"], batch["mask"])
      z = hidden * jax.lax.rsqrt(jnp.maximum(jnp.sum(hidden * hidden, -1, keepdims=True),
                                             1e-12))
      unsup = unsupervised_loss(z, u, v, negatives)
      return loss + unsupervised["weight"] * unsup, (loss, accuracy,
                                                     {"unsupervised_loss": unsup})

  (_, (loss, accuracy, extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  return params, opt_state, {"loss": loss, "accuracy": accuracy,
                             "grad_norm": optax.tree.norm(grads), **extra}


def eval_one(model, params, batch):
  """Loss and accuracy sums (and count) over the val and test nodes, dropout off."""
  logits = model.apply({"params": params}, batch["graph"], deterministic=True)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
  correct = (jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32)
  out = {}
  for split in ("val", "test"):
    m = batch[f"{split}_mask"]
    out[split] = {"loss": jnp.sum(jnp.where(m, ce, 0.0)),
                  "correct": jnp.sum(jnp.where(m, correct, 0.0)),
                  "count": jnp.sum(m).astype(jnp.float32)}
  return out


def update_best(best, val, test, step):
  """Model selection of one seed: keeps the test metrics of the epoch with the best validation
  accuracy (ties: lower validation loss)."""
  better = (val["accuracy"] > best["val_accuracy"]) | (
      (val["accuracy"] == best["val_accuracy"]) & (val["loss"] < best["val_loss"]))
  pick = lambda new, old: jnp.where(better, new, old)
  return {"val_accuracy": pick(val["accuracy"], best["val_accuracy"]),
          "val_loss": pick(val["loss"], best["val_loss"]),
          "test_accuracy": pick(test["accuracy"], best["test_accuracy"]),
          "test_loss": pick(test["loss"], best["test_loss"]),
          "step": pick(jnp.asarray(step, jnp.int32), best["step"])}


def _means(sums):
  return {"loss": sums["loss"] / jnp.maximum(sums["count"], 1),
          "accuracy": sums["correct"] / jnp.maximum(sums["count"], 1)}


def full_batch_step(model, tx, rng_impl, state, data, unsupervised=None):
  """One epoch of every seed on the whole graph, then evaluation and model selection
  (`unsupervised`: see `train_step_one`)."""
  step = state["step"] + 1
  train_batch = {"graph": data["graph"], "labels": data["labels"], "mask": data["train_mask"]}
  params, opt_state, m = jax.vmap(functools.partial(train_step_one, model, tx, rng_impl,
                                                    unsupervised=unsupervised),
                                  in_axes=(0, 0, 0, None, None))(
      state["params"], state["opt_state"], state["key"], step, train_batch)
  sums = jax.vmap(functools.partial(eval_one, model), in_axes=(0, None))(params, data)
  val, test = _means(sums["val"]), _means(sums["test"])
  best = jax.vmap(update_best, in_axes=(0, 0, 0, None))(state["best"], val, test, step)
  new_state = {**state, "params": params, "opt_state": opt_state, "step": step, "best": best}
  return new_state, {"train": m, "val": val, "test": test}


def sampled_step(model, tx, rng_impl, state, batch):
  """One mini-batch step of every seed on a sampled subgraph (loss on the seed nodes)."""
  step = state["step"] + 1
  params, opt_state, m = jax.vmap(functools.partial(train_step_one, model, tx, rng_impl),
                                  in_axes=(0, 0, 0, None, None))(
      state["params"], state["opt_state"], state["key"], step, batch)
  return {**state, "params": params, "opt_state": opt_state, "step": step}, m


def _initial_best(seeds: int):
  return {"val_accuracy": jnp.full((seeds,), -1.0), "val_loss": jnp.full((seeds,), jnp.inf),
          "test_accuracy": jnp.zeros((seeds,)), "test_loss": jnp.zeros((seeds,)),
          "step": jnp.zeros((seeds,), jnp.int32)}


def init_state(model, tx, seed: int, seeds: int, graph, rng_impl: str = "threefry2x32"
               ) -> dict:
  """Parameters and optimizer states of `seeds` models, stacked on a leading axis; seed s
  starts from fold_in(key(seed), s)."""
  def one(s):
    key = jax.random.fold_in(jax.random.key(seed, impl=rng_impl), s)
    k_init, k_rest = jax.random.split(key)
    params = model.init({"params": k_init, **_rngs(k_init)}, graph)["params"]
    return params, tx.init(params), jax.random.key_data(k_rest)


  params, opt_state, train_keys = jax.jit(jax.vmap(one))(jnp.arange(seeds))
  return {"params": params, "opt_state": opt_state, "key": train_keys,
          "step": jnp.zeros((), jnp.int32), "best": _initial_best(seeds)}


# ---------------------------------------------------------------------------------------------
# Sampled mini-batches (host side, numpy).

class _Sampler:
  """Seed batches and GraphSAGE samples of the full graph, as pure functions of (seed, step)."""

  def __init__(self, dataset, config):
    s = config.sampling
    self.dataset, self.seed = dataset, config.seed
    self.fanouts, self.batch_size = tuple(s.fanouts), s.batch_size
    self.csr = sampling.build_csr(dataset.senders, dataset.receivers, dataset.num_nodes)
    self.train_nodes = np.flatnonzero(dataset.train_mask)
    if self.train_nodes.size == 0:
      raise ConfigError(f"dataset {config.dataset!r} has no training nodes")
    self.steps_per_epoch = math.ceil(self.train_nodes.size / self.batch_size)
    self.budget = sampling.fit_budget(self.csr, self.train_nodes, self.batch_size, self.fanouts,
                                      seed=config.seed)
    self.eval_batch_size = s.eval_batch_size
    self.val_mask, self.test_mask = dataset.val_mask, dataset.test_mask
    if s.eval_subset:  # a fixed random subset of each split (quick runs)
      rng = np.random.default_rng(config.split_seed)
      self.val_mask, self.test_mask = (
          _subset(m, s.eval_subset, rng) for m in (dataset.val_mask, dataset.test_mask))
    eval_nodes = np.flatnonzero(self.val_mask | self.test_mask)
    self.eval_budget = sampling.fit_budget(self.csr, eval_nodes, self.eval_batch_size,
                                           self.fanouts, seed=config.seed)

  def _batch(self, seeds, rng, batch_size, budget, masks):
    sample = sampling.sample_subgraph(self.csr, seeds, self.fanouts, rng, batch_size,
                                      budget[0], budget[1], on_overflow="truncate")
    ids = sample.nodes["node_ids"]
    seed_mask = sample.nodes["seed_mask"]
    graph = sampling.with_features(sample, self.dataset.features)
    graph = graph._replace(edges=None)
    out = {"graph": graph, "labels": self.dataset.labels[ids]}
    for name, m in masks.items():
      out[name] = seed_mask & (m[ids] if m is not None else True)
    return out

  def train_batch(self, step: int) -> dict:
    """The batch of step `step` (1-based): epoch e = (step - 1) // steps_per_epoch."""
    epoch, index = divmod(step - 1, self.steps_per_epoch)
    seeds = sampling.seed_batches(self.train_nodes, self.batch_size, self.seed, epoch)[index]
    return self._batch(seeds, (self.seed, step), self.batch_size, self.budget, {"mask": None})

  def eval_batches(self):
    nodes = np.flatnonzero(self.val_mask | self.test_mask)
    for i, start in enumerate(range(0, nodes.size, self.eval_batch_size)):
      yield self._batch(nodes[start:start + self.eval_batch_size], (self.seed, _EVAL_STREAM + i),
                        self.eval_batch_size, self.eval_budget,
                        {"val_mask": self.val_mask, "test_mask": self.test_mask})


def _subset(mask: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
  chosen = rng.permutation(np.flatnonzero(mask))[:size]
  out = np.zeros_like(mask)
  out[chosen] = True
  return out


def _full_data(dataset) -> dict:
  return {"graph": dataset.graph(), "labels": dataset.labels, "train_mask": dataset.train_mask,
          "val_mask": dataset.val_mask, "test_mask": dataset.test_mask}


# ---------------------------------------------------------------------------------------------
# The run.

def _stats(values) -> dict:
  values = np.asarray(values, np.float64)
  return {"mean": float(values.mean()), "std": float(values.std()),
          "per_seed": [float(v) for v in values]}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """Trains `config.seeds` copies of `config.model` on `config.dataset`, resuming from
  `workdir` if it holds a checkpoint.

  Returns the final results (also written to `<workdir>/results.json`), or None when a SIGTERM
  stopped the run after saving a checkpoint.
  """
  # ------------------------------------------------------------------ config and data
  validate_config(config)
  run_dir = checkpoint.prepare_workdir(workdir, config.to_dict())
  dataset = load_dataset(config)
  sampled = bool(config.sampling.enabled)
  model = models.build(config.model, num_classes=dataset.num_classes,
                       **config.model_kwargs.to_dict())
  tx = make_optimizer(config)
  if sampled:
    sampler = _Sampler(dataset, config)
    steps_per_epoch, batch_nodes = sampler.steps_per_epoch, config.sampling.batch_size
    example_graph = sampler.train_batch(1)["graph"]
  else:
    full = jax.device_put(_full_data(dataset))
    steps_per_epoch, batch_nodes = 1, int(dataset.train_mask.sum())
    example_graph = full["graph"]
  schedule_steps = config.num_epochs * steps_per_epoch
  total_steps = min(schedule_steps, config.max_steps) if config.max_steps else schedule_steps

  # ------------------------------------------------------------------ state: resume or init
  state = init_state(model, tx, config.seed, config.seeds, example_graph, config.rng_impl)
  ckpt = checkpoint.Checkpointer(run_dir, config.keep_checkpoints)
  train_time = 0.0
  latest = ckpt.latest_step()
  if latest is not None:
    restored = ckpt.restore(latest, {"state": state, "train_time_s": np.zeros((), np.float64)})
    state, train_time = restored["state"], float(restored["train_time_s"])
    logging.info("resumed from %s at step %d", ckpt.directory / str(latest), latest)
  start_step = int(state["step"])
  n_params = models.count_params(jax.tree.map(lambda x: x[0], state["params"]))
  logging.info("%s on %s: %s parameters per seed, %d seeds trained at once, %d nodes, %d edges, "
               "%d steps (%d per epoch, %s), workdir %s", config.model, dataset.name,
               f"{n_params:,}", config.seeds, dataset.num_nodes, dataset.num_edges, total_steps,
               steps_per_epoch, f"sampled {tuple(config.sampling.fanouts)}, budget "
               f"{sampler.budget}" if sampled else "full batch", run_dir)

  # ------------------------------------------------------------------ step functions
  if sampled:
    step_fn = jax.jit(functools.partial(sampled_step, model, tx, config.rng_impl), donate_argnums=0)
    eval_fn = jax.jit(jax.vmap(functools.partial(eval_one, model), in_axes=(0, None)))
    best_fn = jax.jit(jax.vmap(update_best, in_axes=(0, 0, 0, None)))
  else:
    step_fn = jax.jit(functools.partial(full_batch_step, model, tx, config.rng_impl,
                                        unsupervised=_unsupervised_options(config)),
                      donate_argnums=0)

  def evaluate(params) -> tuple[dict, dict]:
    """Val and test metrics per seed [S] in sampled mode."""
    if config.sampling.eval == "full":
      batches = [_full_data(dataset)]
    else:
      batches = sampler.eval_batches()
    total = None
    for batch in batches:
      out = eval_fn(params, batch)
      total = out if total is None else jax.tree.map(jnp.add, total, out)
    return _means(total["val"]), _means(total["test"])

  writer = metrics.MetricWriter(run_dir, start_step)
  progress = metrics.Progress(start_step, total_steps, steps_per_epoch, batch_nodes)
  pending = []  # (step, device metrics) not yet read back
  steady = {"nodes": 0, "seconds": 0.0}
  last_eval = {}
  segment_start = time.perf_counter()

  def save(step):
    ckpt.save(step, {"state": state,
                     "train_time_s": np.asarray(train_time + time.perf_counter() - segment_start)})

  def flush(step):
    nonlocal pending
    host = jax.device_get([m for _, m in pending])
    for (s, _), m in zip(pending, host):
      train = m["train"] if "train" in m else m
      bad = [k for k in ("loss", "grad_norm") if not np.all(np.isfinite(train[k]))]
      if bad:
        ckpt.wait()
        raise NonFiniteError(
            f"non-finite {' and '.join(bad)} at step {s} (loss per seed={train['loss']}, "
            f"grad_norm per seed={train['grad_norm']}); training stopped. The last good "
            f"checkpoint (step {ckpt.latest_step()}) is kept in {ckpt.directory}; lower "
            f"learning_rate={config.learning_rate} or change the optimizer")
    trains = [m["train"] if "train" in m else m for m in host]
    mean = {k: float(np.mean([t[k] for t in trains])) for k in trains[0]}
    rate = progress.rate(step)
    if step - start_step > len(pending):  # not the window that includes compilation
      steady["nodes"] += len(pending) * batch_nodes
      steady["seconds"] += len(pending) * batch_nodes / rate
    writer.write(step, "train", {**mean, "nodes_per_s": rate})
    for (s, _), m in zip(pending, host):
      if "val" in m:  # full batch: evaluation of every epoch
        for split in ("val", "test"):
          writer.write(s, split, {k: float(np.mean(v)) for k, v in m[split].items()})
        last_eval.update(val=m["val"], test=m["test"])
    pending = []
    return mean, rate

  # ------------------------------------------------------------------ training loop
  with StopRequest() as stop:
    for step in range(start_step + 1, total_steps + 1):
      if sampled:
        state, step_metrics = step_fn(state, sampler.train_batch(step))
      else:
        state, step_metrics = step_fn(state, full)
      pending.append((step, step_metrics))
      epoch_end = step % steps_per_epoch == 0
      checkpoint_now = step % config.checkpoint_every_steps == 0 or step == total_steps
      log_now = step % config.log_every_steps == 0 or step == total_steps
      if log_now or checkpoint_now or stop.requested or (sampled and epoch_end):
        mean, rate = flush(step)
        if log_now:
          line = progress.line(step, mean["loss"], mean["accuracy"], rate)
          if not sampled:
            line += (f"  val acc {100 * np.mean(last_eval['val']['accuracy']):.2f}%  "
                     f"test acc {100 * np.mean(last_eval['test']['accuracy']):.2f}% "
                     f"(mean of {config.seeds})")
          logging.info(line.replace("ex/s", "nodes/s"))
      if sampled and (epoch_end or step == total_steps):
        val, test = evaluate(state["params"])
        state = {**state, "best": best_fn(state["best"], val, test, step)}
        val, test = jax.device_get((val, test))
        for split, m in (("val", val), ("test", test)):
          writer.write(step, split, {k: float(np.mean(v)) for k, v in m.items()})
        last_eval.update(val=val, test=test)
        logging.info("epoch %.2f  val acc %.2f%%  test acc %.2f%% (mean of %d seeds)",
                     step / steps_per_epoch, 100 * np.mean(val["accuracy"]),
                     100 * np.mean(test["accuracy"]), config.seeds)
      if checkpoint_now or stop.requested:
        save(step)
      if stop.requested:
        close_preempted(step, ckpt, writer)
        return None
  train_time += time.perf_counter() - segment_start
  ckpt.wait()

  # ------------------------------------------------------------------ final evaluation
  if sampled:
    val, test = (last_eval["val"], last_eval["test"]) if last_eval else jax.device_get(
        evaluate(state["params"]))
  else:
    sums = jax.device_get(jax.jit(jax.vmap(functools.partial(eval_one, model),
                                           in_axes=(0, None)))(state["params"], full))
    val, test = jax.device_get((_means(sums["val"]), _means(sums["test"])))
  best = jax.device_get(state["best"])
  writer.close()
  ckpt.close()
  at_best = _stats(best["test_accuracy"])
  final = _stats(test["accuracy"])
  results = {
      "experiment": config.experiment, "model": config.model, "dataset": dataset.name,
      "seeds": config.seeds,
      "test_accuracy": at_best["mean"], "test_accuracy_std": at_best["std"],
      "test_accuracy_at_best_val": at_best,
      "test_accuracy_final": final,
      "val_accuracy_best": _stats(best["val_accuracy"]),
      "val_accuracy_final": _stats(val["accuracy"]),
      "best_epoch": [int(s) / steps_per_epoch for s in best["step"]],
      "test_loss_final": _stats(test["loss"]),
      "num_nodes": dataset.num_nodes, "num_edges": dataset.num_edges,
      "num_classes": dataset.num_classes,
      "train_nodes": int(dataset.train_mask.sum()), "val_nodes": int(dataset.val_mask.sum()),
      "test_nodes": int(dataset.test_mask.sum()),
      "eval_nodes": ({"val": int(sampler.val_mask.sum()), "test": int(sampler.test_mask.sum())}
                     if sampled else None),
      "steps": total_steps, "epochs": total_steps / steps_per_epoch,
      "param_count_per_seed": n_params, "train_time_s": train_time,
      "train_time_per_epoch_s": train_time / max(total_steps / steps_per_epoch, 1e-9),
      "train_nodes_per_s": steady["nodes"] / steady["seconds"] if steady["seconds"] else None,
      "sampling": ({"fanouts": list(config.sampling.fanouts),
                    "batch_size": config.sampling.batch_size,
                    "budget_nodes_edges": list(sampler.budget), "eval": config.sampling.eval}
                   if sampled else None),
      "platform": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
      "versions": versions(), "config": config.to_dict(),
  }
  (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
  metrics.plot_learning_curves(
      run_dir / "metrics.jsonl", run_dir / "learning_curves.png",
      f"{config.experiment}: test accuracy {100 * at_best['mean']:.1f} +- "
      f"{100 * at_best['std']:.1f}% ({config.seeds} seeds)")
  logging.info("test accuracy at best validation %.2f +- %.2f%%, final %.2f +- %.2f%% over %d "
               "seeds (%s)", 100 * at_best["mean"], 100 * at_best["std"], 100 * final["mean"],
               100 * final["std"], config.seeds, run_dir / "results.json")
  return results
