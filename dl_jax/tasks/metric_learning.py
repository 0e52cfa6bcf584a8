"""Metric learning and one-shot classification of section 5.5.2, a task of the engine: a
registered "embedding" model f trained so that ||f(x1) - f(x2)||^2 (eq. 5.32) is small within a
class and large across classes, then used on classes it never saw.

Training batches hold `classes_per_batch` training classes with `examples_per_class` images
each (P x K batches, Hermans et al. 2017), drawn as a pure function of (seed, step). The loss:

- "contrastive": the siamese network (eq. 5.30-5.32) on every pair of the batch
  (`dl_jax.representation.mining.contrastive_loss`);
- "triplet": the triplet loss (eq. 5.37) with margin alpha over the triplets of the batch that
  `mining` selects (d squared as in the notes, or Euclidean: `triplet_distance`): all, easy
  (eq. 5.38), semi-hard (eq. 5.40), hard (eq. 5.39) or batch-hard;
  every step logs the share of active triplets (positive loss), the share of each category and
  the collapse measure (mean pairwise distance over the margin's scale, sqrt(alpha) for squared
  d and alpha for Euclidean d: near 0, f(x) has collapsed to one point);
- "classifier": a plain softmax classifier over the training classes on top of f, the baseline
  of one-shot learning (f is then the network without its last layer).

Evaluation on the held-out classes (`held_out_classes` of MNIST / Fashion-MNIST: their test
images; kanji: every drawing of the 20 % of characters held out): k-nearest-neighbour accuracy
(leave one out), recall@1 and @5, N-way K-shot episodes classified by the nearest support
embedding and by class prototypes, beside chance and the same episodes on raw pixels; pair
verification with the threshold tau of eq. 5.30-5.31 chosen on validation pairs of the training
classes.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl_jax import optim, plots
from dl_jax.data.images import kanji, mnist, pipeline
from dl_jax.engine import checks, sharding
from dl_jax.engine.task import Plan, Task, jit_step
from dl_jax.errors import ConfigError
from dl_jax.models import registry
from dl_jax.models.spec import count_params
from dl_jax.representation import linear, mining, retrieval
from dl_jax.tasks import image_classification as classification

DATASETS = ("mnist", "fashion_mnist", "kanji")
LOSSES = ("contrastive", "triplet", "classifier")
METHODS = ("nearest", "prototype")


def load_data(config) -> dict:
  """{"images": float32 [N, 28, 28, 1] in [-1, 1], "labels", "train"/"eval" masks...}: the
  training pool (training classes) and the evaluation set (held-out classes), see `split`."""
  if config.dataset == "kanji":
    data = kanji.load(config.data_dir or None, num_classes=config.kanji_characters,
                      drawings=config.kanji_drawings)
    _, held_out = kanji.train_test_classes(config.kanji_characters, config.held_out_fraction)
    images, labels = pipeline.normalize(data["images"]), data["labels"].astype(np.int32)
    held = np.isin(labels, held_out)
    return {"train_images": images[~held], "train_labels": labels[~held],
            "eval_images": images[held], "eval_labels": labels[held]}
  raw = mnist.load(config.dataset, config.data_dir or None)
  held_out = np.asarray(config.held_out_classes, np.int32)
  train_keep = ~np.isin(raw["train_labels"], held_out)
  eval_keep = np.isin(raw["test_labels"], held_out) if len(held_out) else np.ones(
      len(raw["test_labels"]), bool)
  return {"train_images": pipeline.normalize(raw["train_images"][train_keep]),
          "train_labels": raw["train_labels"][train_keep].astype(np.int32),
          "eval_images": pipeline.normalize(raw["test_images"][eval_keep]),
          "eval_labels": raw["test_labels"][eval_keep].astype(np.int32)}


def class_batch_ids(by_class: list[np.ndarray], classes_per_batch: int,
                    examples_per_class: int, seed: int, step: int) -> np.ndarray:
  """The example ids of step `step`'s P x K batch, a pure function of (seed, step): P classes
  without replacement, K examples of each without replacement, grouped by class."""
  rng = np.random.default_rng([seed, step])
  classes = rng.choice(len(by_class), classes_per_batch, replace=False)
  return np.concatenate([rng.choice(by_class[c], examples_per_class, replace=False)
                         for c in np.sort(classes)])


def batch_loss(params, apply_fn, batch: dict, loss: str, margin: float, strategy: str,
               distance: str):
  """(loss, stats) of a batch; `params` = {"encoder": f's, "head": the classifier's (loss
  "classifier" only)}."""
  emb = apply_fn({"params": params["encoder"]}, batch["image"]).astype(jnp.float32)
  if loss == "triplet":
    return mining.triplet_loss(emb, batch["label"], margin, strategy, distance)
  if loss == "contrastive":
    return mining.contrastive_loss(emb, batch["label"], margin)
  logits = emb @ params["head"]["kernel"] + params["head"]["bias"]
  # what the classifier does to the metric: the triplet statistics of its embedding
  _, stats = mining.triplet_loss(emb, batch["label"], margin, "all", distance)
  stats["accuracy"] = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
  return classification.cross_entropy(logits, batch["label"]).mean(), stats


def train_step(state, batch: dict, **loss_kwargs):
  """One gradient step on `batch_loss`."""
  loss_fn = functools.partial(batch_loss, apply_fn=state.apply_fn, batch=batch, **loss_kwargs)
  (value, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, opt_state=opt_state,
                            params=optax.apply_updates(state.params, updates))
  return new_state, {"loss": value, "grad_norm": optax.tree.norm(grads), **stats}


class MetricLearning(Task):
  """`config.model` (an embedding) trained on the training classes of `config.dataset` with
  `config.loss`, evaluated on the held-out classes."""

  CHECKS = {
      "model": checks.string,
      "model_kwargs": checks.hyper_parameters,
      "dataset": checks.one_of(*DATASETS),
      "held_out_classes": checks.int_tuple(low=0, min_length=0),
      "held_out_fraction": checks.number(0.0, 1.0, low_open=True, high_open=True),
      "kanji_characters": checks.int_at_least(10),
      "kanji_drawings": checks.int_at_least(2),
      "val_size": checks.nonnegative_int("no validation split"),
      "split_seed": checks.seed,
      "loss": checks.one_of(*LOSSES),
      "mining": checks.one_of(*mining.STRATEGIES),
      "triplet_distance": checks.one_of(*mining.DISTANCES),
      "margin": checks.positive_number,
      "classes_per_batch": checks.int_at_least(2),
      "examples_per_class": checks.int_at_least(2),
      "num_steps": checks.positive_int,
      "eval_every_steps": checks.nonnegative_int("no periodic evaluation"),
      "eval_batch_size": checks.positive_int,
      "optimizer": checks.one_of(*optim.OPTIMIZERS),
      "learning_rate": checks.positive_number,
      "lr_schedule": checks.one_of(*optim.SCHEDULES),
      "warmup_steps": checks.nonnegative_int("no warm-up"),
      "ways": checks.int_tuple(low=2),
      "shots": checks.int_tuple(low=1),
      "queries": checks.positive_int,
      "episodes": checks.positive_int,
      "verification_pairs": checks.int_at_least(2),
  }

  @classmethod
  def validate(cls, config):
    registry.get(config.model, family="embedding")
    registry.check_output_shape(config.model, config.model_kwargs.to_dict(),
                                "hyper-parameters that embed 28x28 images (at most 4 pooling "
                                "blocks)")
    if config.warmup_steps >= config.num_steps and config.lr_schedule != "constant":
      raise ConfigError(f"warmup_steps={config.warmup_steps} must be smaller than "
                        f"num_steps={config.num_steps}")
    if config.kanji_characters > kanji.NUM_CHARACTERS:
      raise ConfigError(f"kanji_characters={config.kanji_characters} exceeds the "
                        f"{kanji.NUM_CHARACTERS} characters of the stroke data; accepted: "
                        f"10..{kanji.NUM_CHARACTERS}")
    held = tuple(config.held_out_classes)
    if config.dataset == "kanji":
      if held:
        raise ConfigError(f"held_out_classes={held!r} is for MNIST and Fashion-MNIST; kanji "
                          "holds out held_out_fraction of its characters (set held_out_classes=())")
      return
    if len(set(held)) != len(held) or (held and max(held) >= mnist.NUM_CLASSES):
      raise ConfigError(f"held_out_classes={held!r} must be distinct class ids in "
                        f"0..{mnist.NUM_CLASSES - 1} (or () for none)")
    if mnist.NUM_CLASSES - len(held) < 2:
      raise ConfigError(f"held_out_classes={held!r} leaves fewer than 2 training classes")

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.model = registry.build(config.model, **config.model_kwargs.to_dict())
    self.batch_size = config.classes_per_batch * config.examples_per_class
    sharding.check_batch_size(self.batch_size, mesh, "classes_per_batch * examples_per_class")
    sharding.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
    data = load_data(config)
    classes = np.unique(data["train_labels"])
    relabel = np.full(int(classes.max()) + 1, -1, np.int32)
    relabel[classes] = np.arange(len(classes))
    order = np.random.default_rng(config.split_seed).permutation(len(data["train_labels"]))
    if not 0 <= config.val_size < len(order):
      raise ConfigError(f"val_size={config.val_size} is out of range; accepted: 0 <= val_size "
                        f"< {len(order)}")
    val_ids, train_ids = np.sort(order[:config.val_size]), np.sort(order[config.val_size:])
    images, labels = data["train_images"], relabel[data["train_labels"]]
    self.train = pipeline.Split(images[train_ids], labels[train_ids])
    self.val = pipeline.Split(images[val_ids], labels[val_ids])
    self.eval = pipeline.Split(data["eval_images"], data["eval_labels"])
    self.num_train_classes = len(classes)
    self.by_class = [np.flatnonzero(self.train.labels == c) for c in range(len(classes))]
    self._check_sizes()
    self.tx = optim.make_optimizer(config.optimizer, config.learning_rate, config.lr_schedule,
                                   config.num_steps, config.warmup_steps)
    self.loss_kwargs = dict(loss=config.loss, margin=float(config.margin),
                            strategy=config.mining, distance=config.triplet_distance)
    self._train_step = jit_step(functools.partial(train_step, **self.loss_kwargs),
                                donate_argnums=0)
    self._batch_stats = jax.jit(lambda params, batch: batch_loss(
        params, self.model.apply, batch, **self.loss_kwargs)[1])
    self._embed = jax.jit(lambda params, x: self.model.apply({"params": params}, x))

  def _check_sizes(self):
    config = self.config
    if config.classes_per_batch > self.num_train_classes:
      raise ConfigError(f"classes_per_batch={config.classes_per_batch} exceeds the "
                        f"{self.num_train_classes} training classes")
    smallest = min(len(ids) for ids in self.by_class)
    if config.examples_per_class > smallest:
      raise ConfigError(f"examples_per_class={config.examples_per_class} exceeds the {smallest} "
                        "training images of the smallest training class")
    counts = np.unique(self.eval.labels, return_counts=True)[1]
    eval_classes, fewest = len(counts), int(counts.min())
    for ways in config.ways:
      if ways > eval_classes:
        raise ConfigError(f"ways={tuple(config.ways)!r}: {ways}-way episodes need {ways} "
                          f"evaluation classes, there are {eval_classes}")
    for shots in config.shots:
      if shots + config.queries > fewest:
        raise ConfigError(f"shots={tuple(config.shots)!r} with queries={config.queries}: an "
                          f"evaluation class has only {fewest} images")

  def plan(self) -> Plan:
    per_epoch = max(len(self.train) / self.batch_size, 1.0)
    return Plan(self.config.num_steps, per_epoch, "examples", self.batch_size,
                eval_every_steps=self.config.eval_every_steps if len(self.val) else 0)

  def init(self, key):
    init_key, train_key = jax.random.split(key)
    variables = self.model.init(init_key, jnp.zeros((1, *self.train.images.shape[1:])))
    params = {"encoder": variables["params"]}
    if self.config.loss == "classifier":
      dim = self.model.embed_dim
      params["head"] = {"kernel": jax.random.normal(jax.random.fold_in(init_key, 1),
                                                    (dim, self.num_train_classes)) / np.sqrt(dim),
                        "bias": jnp.zeros((self.num_train_classes,))}
    return classification.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
        opt_state=self.tx.init(params), rng=jax.random.key_data(train_key),
        apply_fn=self.model.apply, tx=self.tx)

  def _batch(self, step: int) -> dict:
    ids = class_batch_ids(self.by_class, self.config.classes_per_batch,
                          self.config.examples_per_class, self.config.seed, step)
    local = len(ids) // jax.process_count()
    ids = ids[jax.process_index() * local:(jax.process_index() + 1) * local]
    batch = {"image": self.train.images[ids], "label": self.train.labels[ids]}
    return sharding.shard_batch(batch, self.mesh)

  def advance(self, state, step, stop):
    del stop
    state, metrics = self._train_step(state, self._batch(step))
    return state, step + 1, {"train": metrics}

  def end_statistics(self, params, step: int, batches: int = 20) -> dict:
    """The loss statistics (active-triplet share, collapse ratio, ...) of the trained f,
    averaged over the `batches` training batches that would follow `step`."""
    stats = [jax.device_get(self._batch_stats(params, self._batch(step + i)))
             for i in range(batches)]
    return {f"end_{k}": float(np.mean([s[k] for s in stats])) for k in stats[0]}

  def embed(self, params, images: np.ndarray) -> np.ndarray:
    """f(x) in batches: float32 [N, embed_dim]."""
    if not len(images):
      return np.zeros((0, self.model.embed_dim), np.float32)
    return pipeline.map_batches(functools.partial(self._embed, params), images,
                                self.config.eval_batch_size)

  def _verification(self, emb, labels, seed: int, tau: float | None = None):
    i, j, same = retrieval.verification_pairs(labels, self.config.verification_pairs, seed)
    sq = np.sum(np.square(emb[i] - emb[j]), -1)
    tau = retrieval.best_threshold(sq, same) if tau is None else tau
    return retrieval.verification_accuracy(sq, same, tau), tau

  def evaluate(self, state, step):
    """On the validation images: tau fitted on one set of pairs and scored on another, and
    the leave-one-out kNN accuracy."""
    emb = self.embed(state.params["encoder"], self.val.images)
    _, tau = self._verification(emb, self.val.labels, self.config.seed)
    accuracy, _ = self._verification(emb, self.val.labels, self.config.seed + 2, tau)
    return state, {"val": {"verification_accuracy": accuracy, "tau": tau,
                           "knn_accuracy": retrieval.knn_accuracy(emb, self.val.labels, 1)}}

  def finish(self, state, step, out_dir):
    config = self.config
    params = state.params["encoder"]
    eval_emb = self.embed(params, self.eval.images)
    pixels = self.eval.images.reshape(len(self.eval), -1)
    metrics = {"knn_accuracy": retrieval.knn_accuracy(eval_emb, self.eval.labels, 1)}
    for k, v in retrieval.recall_at_k(eval_emb, self.eval.labels, (1, 5)).items():
      metrics[f"recall_at_{k}"] = v
    if len(self.val):
      _, tau = self._verification(self.embed(params, self.val.images), self.val.labels,
                                  config.seed)
      metrics["tau"] = tau
      metrics["verification_accuracy"], _ = self._verification(
          eval_emb, self.eval.labels, config.seed + 1, tau)
    for ways in config.ways:
      for shots in config.shots:
        episode = dict(n_way=ways, k_shot=shots, n_query=config.queries,
                       episodes=config.episodes, seed=config.seed)
        name = f"{ways}way_{shots}shot"
        for method in METHODS:
          mean, half = retrieval.few_shot_accuracy(eval_emb, self.eval.labels, method=method,
                                                   **episode)
          metrics[f"{name}_{method}"], metrics[f"{name}_{method}_ci95"] = mean, half
        metrics[f"{name}_pixels"], _ = retrieval.few_shot_accuracy(pixels, self.eval.labels,
                                                                   **episode)
        metrics[f"{name}_chance"] = 1.0 / ways
    if out_dir is not None:
      shown = np.isin(self.eval.labels, np.unique(self.eval.labels)[:10])
      mean, components, _ = linear.pca_fit(eval_emb[shown], 2)
      plots.embedding_2d(linear.pca_encode(eval_emb[shown], mean, components),
                         self.eval.labels[shown], out_dir / "embedding_2d.png",
                         f"{config.experiment}: held-out classes, first two principal axes")
    summary = {"dataset": config.dataset, "loss": config.loss,
               "mining": config.mining if config.loss == "triplet" else None,
               "triplet_distance": config.triplet_distance if config.loss == "triplet" else None,
               "margin": config.margin, "param_count": count_params(params),
               "eval_classes": int(len(np.unique(self.eval.labels))),
               "eval_size": len(self.eval), **self.end_statistics(state.params, step),
               **{f"test_{k}": v for k, v in metrics.items()}}
    first = f"{config.ways[0]}way_{config.shots[0]}shot"
    headline = (f"held-out kNN {100 * metrics['knn_accuracy']:.2f}%, {first} "
                f"{100 * metrics[first + '_nearest']:.2f}% (pixels "
                f"{100 * metrics[first + '_pixels']:.2f}%)")
    return summary, {"test": metrics}, headline
