"""Node classification (section 6.5, the Cora setting), a task of the engine.

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

Sections: pure per-seed functions, sampled mini-batches, the task.
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from dl_jax import optim
from dl_jax.data import graphs as graph_data
from dl_jax.engine import checks, sharding
from dl_jax.engine.task import Plan, Task, jit_step
from dl_jax.errors import ConfigError
from dl_jax.graph import sampling
from dl_jax.models import registry
from dl_jax.models.spec import count_params
from dl_jax.graph.graphs import masked_mean

DATASETS = ("wordnet_cora", "wordnet_full", "karate", "csbm")
EVAL_MODES = ("sampled", "full")
# PRNG of dropout and sampling order: "rbg" draws dropout masks about twice as fast as
# "threefry2x32" on the CPU (dropout on the 3,006 x 1,433 input dominates a GCN step).
RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
# Sample streams: training step t draws from (seed, t); evaluation batch i from
# (seed, _EVAL_STREAM + i), the same at every evaluation.
_EVAL_STREAM = 2 ** 31


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
  tx = optim.make_optimizer(config.optimizer, config.learning_rate)
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


def full_batch_step(model, tx, rng_impl, state, data, step, unsupervised=None):
  """Step `step` (one epoch) of every seed on the whole graph, then evaluation and model
  selection (`unsupervised`: see `train_step_one`)."""
  train_batch = {"graph": data["graph"], "labels": data["labels"], "mask": data["train_mask"]}
  params, opt_state, m = jax.vmap(functools.partial(train_step_one, model, tx, rng_impl,
                                                    unsupervised=unsupervised),
                                  in_axes=(0, 0, 0, None, None))(
      state["params"], state["opt_state"], state["key"], step, train_batch)
  sums = jax.vmap(functools.partial(eval_one, model), in_axes=(0, None))(params, data)
  val, test = _means(sums["val"]), _means(sums["test"])
  best = jax.vmap(update_best, in_axes=(0, 0, 0, None))(state["best"], val, test, step)
  new_state = {**state, "params": params, "opt_state": opt_state, "best": best}
  return new_state, {"train": m, "val": val, "test": test}


def sampled_step(model, tx, rng_impl, state, batch, step):
  """Step `step`, one mini-batch of every seed on a sampled subgraph (loss on the seed nodes)."""
  params, opt_state, m = jax.vmap(functools.partial(train_step_one, model, tx, rng_impl),
                                  in_axes=(0, 0, 0, None, None))(
      state["params"], state["opt_state"], state["key"], step, batch)
  return {**state, "params": params, "opt_state": opt_state}, m


def _initial_best(seeds: int):
  f32 = jnp.float32
  return {"val_accuracy": jnp.full((seeds,), -1.0, f32),
          "val_loss": jnp.full((seeds,), jnp.inf, f32),
          "test_accuracy": jnp.zeros((seeds,), f32), "test_loss": jnp.zeros((seeds,), f32),
          "step": jnp.zeros((seeds,), jnp.int32)}


def init_state(model, tx, key, seeds: int, graph) -> dict:
  """Parameters and optimizer states of `seeds` models, stacked on a leading axis; seed s
  starts from fold_in(key, s) (`key`: the run's root key, of the `rng_impl` PRNG)."""
  def one(s):
    k_init, k_rest = jax.random.split(jax.random.fold_in(key, s))
    params = model.init({"params": k_init, **_rngs(k_init)}, graph)["params"]
    return params, tx.init(params), jax.random.key_data(k_rest)

  params, opt_state, train_keys = jax.vmap(one)(jnp.arange(seeds))
  return {"params": params, "opt_state": opt_state, "key": train_keys,
          "best": _initial_best(seeds)}


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
# The task.

def _stats(values) -> dict:
  values = np.asarray(values, np.float64)
  return {"mean": float(values.mean()), "std": float(values.std()),
          "per_seed": [float(v) for v in values]}


class NodeClassification(Task):
  """`config.seeds` copies of `config.model` on `config.dataset`, trained at once (vmap)."""

  SINGLE_PROCESS = ("a step is a pass over one whole graph or one sampled subgraph, held by one "
                    "process")
  CHECKS = {
      "model": checks.one_of(*registry.names("node")),
      "model_kwargs": checks.hyper_parameters,  # names and types: the model registry
      "dataset": checks.one_of(*DATASETS),
      "split_seed": checks.seed,
      "rng_impl": checks.one_of(*RNG_IMPLS),
      "seeds": checks.positive_int,
      "num_epochs": checks.positive_int,
      "optimizer": checks.one_of(*optim.OPTIMIZERS),
      "learning_rate": checks.positive_number,
      "weight_decay": checks.nonnegative_number,
      "sampling.enabled": checks.boolean,
      "sampling.fanouts": checks.int_tuple(),
      "sampling.batch_size": checks.positive_int,
      "sampling.eval_batch_size": checks.positive_int,
      "sampling.eval": checks.one_of(*EVAL_MODES),
      "sampling.eval_subset": checks.nonnegative_int("all validation and test nodes"),
      "unsupervised_weight": checks.nonnegative_number,
      "unsupervised_negatives": checks.positive_int,
      "unsupervised_edges": checks.positive_int,
  }

  @classmethod
  def validate(cls, config):
    weight = config.unsupervised_weight
    if weight and config.sampling.enabled:
      raise ConfigError(f"unsupervised_weight={weight!r} needs full-batch training; accepted "
                        "with sampling.enabled=True: only unsupervised_weight=0")
    layers = config.model_kwargs.get("num_layers", 2)
    if weight and config.model != "ggnn" and layers < 2:
      raise ConfigError(f"unsupervised_weight={weight!r} needs hidden embeddings: "
                        f"model_kwargs.num_layers={layers!r}; accepted: >= 2")

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.sampled = bool(config.sampling.enabled)
    self.dataset = dataset = load_dataset(config)
    self.model = registry.build(config.model, num_classes=dataset.num_classes,
                              **config.model_kwargs.to_dict())
    self.tx = make_optimizer(config)
    if self.sampled:
      self.sampler = _Sampler(dataset, config)
      self.steps_per_epoch, self.batch_nodes = self.sampler.steps_per_epoch, config.sampling.batch_size
      self.example_graph = self.sampler.train_batch(1)["graph"]
      self._step = jit_step(functools.partial(sampled_step, self.model, self.tx, config.rng_impl),
                            donate_argnums=0)
      self._eval = jax.jit(jax.vmap(functools.partial(eval_one, self.model), in_axes=(0, None)))
      self._best = jax.jit(jax.vmap(update_best, in_axes=(0, 0, 0, None)))
    else:
      self.full = jax.device_put(_full_data(dataset), sharding.replicated(mesh))
      self.steps_per_epoch, self.batch_nodes = 1, int(dataset.train_mask.sum())
      self.example_graph = self.full["graph"]
      self._step = jit_step(functools.partial(
          full_batch_step, self.model, self.tx, config.rng_impl,
          unsupervised=_unsupervised_options(config)), donate_argnums=0)
    logging.info("%s on %s: %d seeds trained at once, %d nodes, %d edges, %s", config.model,
                 dataset.name, config.seeds, dataset.num_nodes, dataset.num_edges,
                 f"sampled {tuple(config.sampling.fanouts)}, budget {self.sampler.budget}"
                 if self.sampled else "full batch")

  def plan(self) -> Plan:
    return Plan(self.config.num_epochs * self.steps_per_epoch, self.steps_per_epoch, "nodes",
                self.batch_nodes, eval_every_steps=self.steps_per_epoch if self.sampled else 0)

  def init(self, key):
    return init_state(self.model, self.tx, key, self.config.seeds, self.example_graph)

  def advance(self, state, step, stop):
    del stop
    if self.sampled:
      state, m = self._step(state, self.sampler.train_batch(step + 1), np.int32(step + 1))
      return state, step + 1, {"train": m}
    state, m = self._step(state, self.full, np.int32(step + 1))
    return state, step + 1, m

  def _evaluate(self, params) -> tuple[dict, dict]:
    """Val and test metrics per seed [S] with sampling (sampled or full-graph inference)."""
    batches = ([_full_data(self.dataset)] if self.config.sampling.eval == "full"
               else self.sampler.eval_batches())
    total = None
    for batch in batches:
      out = self._eval(params, batch)
      total = out if total is None else jax.tree.map(jnp.add, total, out)
    return _means(total["val"]), _means(total["test"])

  def evaluate(self, state, step):
    val, test = self._evaluate(state["params"])
    state = {**state, "best": self._best(state["best"], val, test, np.int32(step))}
    val, test = jax.device_get((val, test))
    return state, {split: {k: float(np.mean(v)) for k, v in m.items()}
                   for split, m in (("val", val), ("test", test))}

  def finish(self, state, step, out_dir):
    del out_dir
    config, dataset, spe = self.config, self.dataset, self.steps_per_epoch
    if self.sampled:
      if step % spe:  # the last evaluation of a run stopped inside an epoch
        state, _ = self.evaluate(state, step)
      val, test = jax.device_get(self._evaluate(state["params"]))
    else:
      sums = jax.device_get(jax.jit(jax.vmap(functools.partial(eval_one, self.model),
                                             in_axes=(0, None)))(state["params"], self.full))
      val, test = jax.device_get((_means(sums["val"]), _means(sums["test"])))
    best = jax.device_get(state["best"])
    at_best, final = _stats(best["test_accuracy"]), _stats(test["accuracy"])
    n_params = count_params(jax.tree.map(lambda x: x[0], state["params"]))
    sampler = self.sampler if self.sampled else None
    summary = {
        "dataset": dataset.name, "seeds": config.seeds,
        "test_accuracy": at_best["mean"], "test_accuracy_std": at_best["std"],
        "test_accuracy_at_best_val": at_best, "test_accuracy_final": final,
        "val_accuracy_best": _stats(best["val_accuracy"]),
        "val_accuracy_final": _stats(val["accuracy"]),
        "best_epoch": [int(s) / spe for s in best["step"]],
        "test_loss_final": _stats(test["loss"]),
        "num_nodes": dataset.num_nodes, "num_edges": dataset.num_edges,
        "num_classes": dataset.num_classes,
        "train_nodes": int(dataset.train_mask.sum()), "val_nodes": int(dataset.val_mask.sum()),
        "test_nodes": int(dataset.test_mask.sum()),
        "eval_nodes": ({"val": int(sampler.val_mask.sum()), "test": int(sampler.test_mask.sum())}
                       if sampler else None),
        "param_count_per_seed": n_params,
        "sampling": ({"fanouts": list(config.sampling.fanouts),
                      "batch_size": config.sampling.batch_size,
                      "budget_nodes_edges": list(sampler.budget), "eval": config.sampling.eval}
                     if sampler else None),
    }
    headline = (f"test accuracy at best validation {100 * at_best['mean']:.2f} +- "
                f"{100 * at_best['std']:.2f}%, final {100 * final['mean']:.2f} +- "
                f"{100 * final['std']:.2f}% over {config.seeds} seeds")
    return summary, {}, headline
