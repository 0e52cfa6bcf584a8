"""Classification of images (chapters 2 and 5: MNIST, Fashion-MNIST) and 1-D signals (MNIST-1D)
by any registered model of the dataset's family.

The training state and the pure train and eval steps (also used by the studies of chapter 2),
and the task: one step per `advance`, validation every epoch, test at the end. The task also
does what section 5.3.2 and 5.4 need: augmentation inside the jitted step (random crop with
padding, flip, rotation, random erasing; pure in (seed, step)), the auxiliary classifiers'
loss (GoogLeNet), a subset of the classes (relabelled 0..k-1), and transfer learning: start from
the variables a finished run saved (`init_from`), re-initialize some layers, freeze others.
"""

import functools
import pathlib
from typing import Any, Callable

import flax.linen as nn
import flax.serialization
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl_jax import optim
from dl_jax.data.images import augment, mnist, pipeline
from dl_jax.engine import checks, sharding
from dl_jax.engine.task import Plan, Task, jit_step
from dl_jax.errors import ConfigError, DataError
from dl_jax.models import registry
from dl_jax.models.spec import AUX_LOGITS
from dl_jax.nn import regularizers

VARIABLES_FILE = "variables.msgpack"  # the trained variables of a finished run, for `init_from`


def _load_signals(name: str, data_dir: str | None) -> dict:
  from dl_jax.data.signals import mnist1d  # pylint: disable=g-import-not-at-top
  return mnist1d.load(data_dir, shuffled=name == "mnist1d_shuffled")


# dataset -> (model family, loader(name, data_dir) -> {train,test}_{images,labels})
DATASETS = {
    "mnist": ("image", mnist.load),
    "fashion_mnist": ("image", mnist.load),
    "mnist1d": ("signal", _load_signals),
    "mnist1d_shuffled": ("signal", _load_signals),
}


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue: checkpointing this pytree and the step is a resume."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key; step randomness is fold_in(rng, step)
  apply_fn: Callable = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
                       input_shape: tuple[int, ...],
                       transferred: dict | None = None) -> TrainState:
  """Initializes parameters from `rng` (explicit key; no global state).

  `transferred` ({"params": {layer: subtree}, "batch_stats": {layer: subtree}}) replaces the
  initial values of those top-level layers (transfer learning, section 5.4).
  """
  init_rng, train_rng = jax.random.split(rng)
  variables = model.init(init_rng, jnp.zeros((1, *input_shape), jnp.float32), train=False)
  variables = {k: dict(v) for k, v in variables.items()}
  for collection, layers in (transferred or {}).items():
    for layer, subtree in layers.items():
      variables[collection][layer] = jax.tree.map(jnp.asarray, subtree)
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                    rng=train_rng, apply_fn=model.apply, tx=tx)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example categorical cross-entropy -log softmax(v)_y (eq. 2.60-2.63), in log-space."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _variables(state: TrainState, params) -> dict:
  variables = {"params": params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  return variables


def train_step(state: TrainState, batch: dict, weight_l1: float = 0.0,
               weight_l2: float = 0.0, aux_loss_weight: float = 0.3,
               augment_fn: Callable | None = None,
               frozen: tuple[str, ...] = ()) -> tuple[TrainState, dict]:
  """One gradient step on the mean loss of `batch`; returns the new state and step metrics.

  The loss is the mean cross-entropy, plus aux_loss_weight times the cross-entropy of each
  auxiliary classifier the model sows in training (GoogLeNet: 0.3, Szegedy et al. 2014), plus
  weight_l1 * sum|w| + weight_l2 * sum w^2 over the kernels, plus whatever the model sows into
  the "losses" collection (activity penalties, section 2.5.4). `augment_fn(key, images)`
  transforms the batch first, with a key folded from the step's. The top-level layers named in
  `frozen` get no gradient (`lax.stop_gradient`, so backpropagation below the lowest trained
  layer is not computed) and keep their batch statistics; the optimizer must also leave them
  alone (`freeze_optimizer`). Bind these with functools.partial before jitting.
  """
  step_rng = jax.random.fold_in(state.rng, state.step)
  mutable = ["batch_stats", regularizers.LOSSES, AUX_LOGITS]
  images = batch["image"]
  if augment_fn is not None:
    images = augment_fn(jax.random.fold_in(step_rng, 1), images)

  def loss_fn(params):
    if frozen:
      params = {k: jax.lax.stop_gradient(v) if k in frozen else v for k, v in params.items()}
    logits, updates = state.apply_fn(_variables(state, params), images, train=True,
                                     rngs={"dropout": step_rng}, mutable=mutable)
    data_loss = cross_entropy(logits, batch["label"]).mean()
    penalty = regularizers.sown_penalty(updates)
    for aux in jax.tree.leaves(updates.get(AUX_LOGITS, {})):
      penalty += aux_loss_weight * cross_entropy(aux, batch["label"]).mean()
    if weight_l1:
      penalty += weight_l1 * regularizers.l1_penalty(params)
    if weight_l2:
      penalty += weight_l2 * regularizers.l2_penalty(params)
    return data_loss + penalty, (data_loss, logits, updates)

  (_, (loss, logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  batch_stats = updates.get("batch_stats", state.batch_stats)
  if frozen and batch_stats:
    batch_stats = {k: state.batch_stats[k] if k in frozen else v for k, v in batch_stats.items()}
  new_state = state.replace(
      step=state.step + 1, params=optax.apply_updates(state.params, param_updates),
      batch_stats=batch_stats, opt_state=opt_state)
  metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
             "grad_norm": optax.tree.norm(grads)}
  return new_state, metrics


def eval_step(state: TrainState, batch: dict) -> dict:
  """Masked sums over `batch` (padding rows have mask 0): loss, correct predictions, count."""
  logits = state.apply_fn(_variables(state, state.params), batch["image"], train=False)
  mask = batch["mask"]
  return {"loss": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
          "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
          "count": jnp.sum(mask)}


def param_count(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


def freeze_optimizer(tx: optax.GradientTransformation, params,
                     frozen: tuple[str, ...]) -> optax.GradientTransformation:
  """`tx` for the trained layers, `optax.set_to_zero()` for the top-level layers in `frozen`
  (their updates are exactly 0, so they stay bitwise unchanged; no optimizer state for them)."""
  if not frozen:
    return tx
  labels = {k: jax.tree.map(lambda _, k=k: "frozen" if k in frozen else "trained", v)
            for k, v in params.items()}
  return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)


def make_augment(config, family: str) -> Callable | None:
  """augment_fn(key, images) for the `augment_*` keys of `config`, or None when all are off."""
  affine = augment.AugmentConfig(
      max_shift=float(config.augment_crop_padding), integer_shift=True,
      max_rotation=float(config.augment_max_rotation), flip=config.augment_flip,
      order=1 if config.augment_max_rotation else 0, mode="constant", fill=-1.0)
  use_affine = affine != augment.AugmentConfig(order=affine.order, fill=-1.0)
  erasing = float(config.augment_random_erasing)
  if not use_affine and not erasing:
    return None
  if family != "image":
    raise ConfigError(f"augment_*: augmentation is for images; dataset {config.dataset!r} "
                      "holds 1-D signals (set augment_crop_padding=0, augment_flip=False, "
                      "augment_max_rotation=0, augment_random_erasing=0)")

  def augment_fn(key, images):
    k_affine, k_erase = jax.random.split(key)
    if use_affine:  # background -1: the padding of a random crop is black (eq. 2.58)
      images = augment.augment(k_affine, images, affine)
    if erasing:
      images = augment.random_erasing(k_erase, images, erasing)
    return images
  return augment_fn


def select_classes(raw: dict, classes: tuple[int, ...]) -> dict:
  """Only the examples of `classes`, relabelled 0..len(classes)-1 in that order."""
  if not classes:
    return raw
  out = {}
  for split in ("train", "test"):
    labels = raw[f"{split}_labels"]
    keep = np.isin(labels, classes)
    relabel = np.full(max(int(labels.max()), max(classes)) + 1, -1, np.int32)
    relabel[list(classes)] = np.arange(len(classes))
    out[f"{split}_images"] = raw[f"{split}_images"][keep]
    out[f"{split}_labels"] = relabel[labels[keep]]
  return out


def load_variables(workdir: str) -> dict:
  """The variables a finished classification run saved in `workdir` (host arrays)."""
  path = pathlib.Path(workdir) / VARIABLES_FILE
  if not path.is_file():
    raise ConfigError(f"init_from={workdir!r} holds no {VARIABLES_FILE}; accepted: the workdir "
                      "of a finished image_classification run")
  try:
    variables = flax.serialization.msgpack_restore(path.read_bytes())
  except Exception as e:  # msgpack raises several unrelated types on a damaged file
    raise DataError(f"{path} is not a variables file ({type(e).__name__}: {e}); run the "
                    "source experiment again to rewrite it") from None
  if not isinstance(variables, dict) or "params" not in variables:
    raise DataError(f"{path} holds no 'params'; run the source experiment again")
  return variables


def transferred_layers(source: dict, target_shapes: dict, reinit: tuple[str, ...],
                       where: str) -> dict:
  """The layers of `source` to copy into a model whose variables have `target_shapes`: every
  top-level parameter layer but those in `reinit` (empty: the output layer, the last one)."""
  layers = list(target_shapes["params"])
  reinit = reinit or (layers[-1],)
  unknown = [name for name in reinit if name not in layers]
  if unknown:
    raise ConfigError(f"reinit_layers: no layer {unknown[0]!r}; accepted: {', '.join(layers)}")
  out = {}
  for collection, shapes in target_shapes.items():
    for layer in shapes:
      if layer in reinit:
        continue
      if layer not in source.get(collection, {}):
        raise ConfigError(f"init_from={where!r} has no {collection} layer {layer!r} (it has "
                          f"{', '.join(source.get(collection, {})) or 'none'}); list the layers "
                          "to initialize afresh in reinit_layers")
      got = jax.tree.map(np.shape, source[collection][layer])
      want = jax.tree.map(lambda s: tuple(s.shape), shapes[layer])
      if got != want:
        raise ConfigError(f"init_from={where!r}: {collection} of layer {layer!r} have shapes "
                          f"{got}, this model needs {want}; list it in reinit_layers")
      out.setdefault(collection, {})[layer] = source[collection][layer]
  return out


def image_splits(raw: dict, config) -> tuple[pipeline.Split, pipeline.Split, pipeline.Split]:
  """Train, validation (`val_size` held out by `split_seed`, `train_subset`) and test splits;
  `test_subset` > 0 keeps the first test images only (trial runs)."""
  train, val, test = pipeline.train_val_test(raw, config.val_size, config.split_seed,
                                             config.train_subset)
  if config.test_subset:  # trials only: the results use the whole test set
    test = pipeline.Split(test.images[:config.test_subset], test.labels[:config.test_subset])
  return train, val, test


def epoch_schedule(train_size: int, config) -> tuple[int, int]:
  """(steps per epoch, schedule steps) of `num_epochs` epochs of `batch_size`, the last
  incomplete batch of an epoch dropped; ConfigError when no batch or the warm-up does not fit."""
  steps_per_epoch = train_size // config.batch_size
  if steps_per_epoch == 0:
    raise ConfigError(f"batch_size={config.batch_size} exceeds the {train_size} training "
                      "examples")
  schedule_steps = config.num_epochs * steps_per_epoch
  if config.warmup_steps >= schedule_steps and config.lr_schedule != "constant":
    raise ConfigError(f"warmup_steps={config.warmup_steps} must be smaller than the "
                      f"{schedule_steps} steps of the schedule")
  return steps_per_epoch, schedule_steps


def evaluate_split(state: TrainState, split: pipeline.Split, batch_size: int, mesh,
                   eval_fn) -> dict:
  """Mean loss and accuracy over a whole split (padding masked out)."""
  sums = {"loss": 0.0, "correct": 0.0, "count": 0.0}
  for batch in pipeline.eval_batches(split, batch_size, jax.process_index(), jax.process_count()):
    out = jax.device_get(eval_fn(state, sharding.shard_batch(batch, mesh)))
    for k in sums:
      sums[k] += float(out[k])
  return {"loss": sums["loss"] / sums["count"], "accuracy": sums["correct"] / sums["count"]}


class EpochTask(Task):
  """A task trained on epochs of batches of `self.train` (a `pipeline.Split`), one jitted step
  per batch, validated every epoch where there is a validation split: the plan, the train state
  and the step that its subclasses share. They set model, tx, train, val, steps_per_epoch,
  schedule_steps, _train_step (state, batch -> state, metrics) and _batches (step -> batch).
  CHECKS: the config keys of the split, the batches and the optimizer, which they share."""

  CHECKS = {
      "model": checks.string,
      "model_kwargs": checks.hyper_parameters,  # names and types: the model registry
      "val_size": checks.nonnegative_int("no validation split"),
      "split_seed": checks.seed,
      "train_subset": checks.nonnegative_int("all training images"),
      "test_subset": checks.nonnegative_int("the whole test set"),
      "batch_size": checks.positive_int,
      "eval_batch_size": checks.positive_int,
      "num_epochs": checks.positive_int,
      "optimizer": checks.one_of(*optim.OPTIMIZERS),
      "learning_rate": checks.positive_number,
      "lr_schedule": checks.one_of(*optim.SCHEDULES),
      "warmup_steps": checks.nonnegative_int("no warm-up"),
  }

  def _epochs_over_train(self) -> None:
    """The epochs over `self.train`: steps_per_epoch, schedule_steps, tx (the config's optimizer
    and schedule) and _batches (this process's slice of the batch of each step)."""
    config = self.config
    self.steps_per_epoch, self.schedule_steps = epoch_schedule(len(self.train), config)
    self.tx = optim.make_optimizer(config.optimizer, config.learning_rate, config.lr_schedule,
                                   self.schedule_steps, config.warmup_steps)
    self._batches = pipeline.StepBatches(self.train, config.batch_size, config.seed,
                                         jax.process_index(), jax.process_count())

  def plan(self) -> Plan:
    return Plan(self.schedule_steps, self.steps_per_epoch, "examples", self.config.batch_size,
                eval_every_steps=self.steps_per_epoch if len(self.val) else 0)

  def init(self, key) -> TrainState:
    return create_train_state(self.model, self.tx, jax.random.key_data(key),
                              self.train.images.shape[1:])

  def advance(self, state, step, stop):
    del stop
    state, metrics = self._train_step(state, sharding.shard_batch(self._batches(step),
                                                                  self.mesh))
    return state, step + 1, {"train": metrics}


class ImageClassification(EpochTask):
  """`config.model` (a registered model of the dataset's family) on `config.dataset`; `val_size`
  training examples held out for validation (section 2.5.1), the official test set at the end."""

  CHECKS = {
      **EpochTask.CHECKS,
      "dataset": checks.one_of(*DATASETS),
      "classes": checks.int_tuple(low=0, min_length=0),
      "weight_l1": checks.nonnegative_number,
      "weight_l2": checks.nonnegative_number,
      "aux_loss_weight": checks.nonnegative_number,
      "augment_crop_padding": checks.nonnegative_int("no random crop"),
      "augment_flip": checks.boolean,
      "augment_max_rotation": checks.number(0, 180),
      "augment_random_erasing": checks.number(0.0, 1.0),
      "init_from": checks.string,
      "reinit_layers": checks.string_tuple,  # layer names: checked against the model
      "freeze_layers": checks.string_tuple,
  }

  @classmethod
  def validate(cls, config):
    family = DATASETS[config.dataset][0]
    registry.get(config.model, family=family)
    registry.build(config.model, **cls.model_kwargs(config))
    if len(set(config.classes)) != len(config.classes) or (
        config.classes and max(config.classes) >= mnist.NUM_CLASSES):
      raise ConfigError(f"classes={tuple(config.classes)!r} must be distinct class ids in "
                        f"0..{mnist.NUM_CLASSES - 1} (or () for all)")
    if (config.reinit_layers or "transferred" in config.freeze_layers) and not config.init_from:
      raise ConfigError("reinit_layers and freeze_layers=('transferred',) need init_from (the "
                        "workdir of a finished run)")

  @staticmethod
  def model_kwargs(config) -> dict:
    """`config.model_kwargs`, with num_classes the number of classes when it is not set."""
    kwargs = config.model_kwargs.to_dict()
    num_classes = len(config.classes) or mnist.NUM_CLASSES
    if kwargs.setdefault("num_classes", num_classes) != num_classes:
      raise ConfigError(f"model_kwargs.num_classes={kwargs['num_classes']} but the data has "
                        f"{num_classes} classes (classes={tuple(config.classes)!r})")
    return kwargs

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.family = DATASETS[config.dataset][0]
    self.spec = registry.get(config.model, family=self.family)
    self.model = registry.build(config.model, **self.model_kwargs(config))
    for key in ("batch_size", "eval_batch_size"):
      sharding.check_batch_size(config[key], mesh, key)
    raw = DATASETS[config.dataset][1](config.dataset, config.data_dir or None)
    raw = select_classes(raw, tuple(config.classes))
    self.train, self.val, self.test = image_splits(raw, config)
    self.steps_per_epoch, self.schedule_steps = epoch_schedule(len(self.train), config)
    self.input_shape = self.train.images.shape[1:]
    shapes = jax.eval_shape(functools.partial(self.model.init, train=False),
                            jax.random.PRNGKey(0), jnp.zeros((1, *self.input_shape)))
    self.transferred = (transferred_layers(load_variables(config.init_from), shapes,
                                           tuple(config.reinit_layers), config.init_from)
                        if config.init_from else None)
    self.frozen = self._frozen_layers(tuple(config.freeze_layers), list(shapes["params"]))
    tx = optim.make_optimizer(config.optimizer, config.learning_rate, config.lr_schedule,
                              self.schedule_steps, config.warmup_steps)
    self.tx = freeze_optimizer(tx, shapes["params"], self.frozen)
    self._train_step = jit_step(functools.partial(
        train_step, weight_l1=config.weight_l1, weight_l2=config.weight_l2,
        aux_loss_weight=config.aux_loss_weight, augment_fn=make_augment(config, self.family),
        frozen=self.frozen), donate_argnums=0)
    self._eval_step = jax.jit(eval_step)
    self._batches = pipeline.StepBatches(self.train, config.batch_size, config.seed,
                                         jax.process_index(), jax.process_count())

  def _frozen_layers(self, names: tuple[str, ...], layers: list[str]) -> tuple[str, ...]:
    """`freeze_layers` as layer names; 'transferred' stands for every layer copied."""
    frozen = []
    for name in names:
      if name == "transferred":
        frozen += list(self.transferred["params"])
      elif name in layers:
        frozen.append(name)
      else:
        raise ConfigError(f"freeze_layers: no layer {name!r}; accepted: 'transferred', "
                          f"{', '.join(layers)}")
    return tuple(dict.fromkeys(frozen))

  def init(self, key) -> TrainState:
    return create_train_state(self.model, self.tx, jax.random.key_data(key), self.input_shape,
                              self.transferred)

  def _eval(self, state, split):
    return evaluate_split(state, split, self.config.eval_batch_size, self.mesh, self._eval_step)

  def evaluate(self, state, step):
    return state, {"val": self._eval(state, self.val)}

  def finish(self, state, step, out_dir):
    test = self._eval(state, self.test)
    val = self._eval(state, self.val) if len(self.val) else {}
    if out_dir is not None:  # the trained variables, for `init_from` of another run
      variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
      (pathlib.Path(out_dir) / VARIABLES_FILE).write_bytes(
          flax.serialization.msgpack_serialize(variables))
    summary = {"dataset": self.config.dataset, "test_accuracy": test["accuracy"],
               "test_size": len(self.test),
               "test_loss": test["loss"], "val_accuracy": val.get("accuracy"),
               "val_loss": val.get("loss"), "param_count": param_count(state.params),
               "trained_param_count": param_count(
                   {k: v for k, v in state.params.items() if k not in self.frozen}),
               "batch_size": self.config.batch_size}
    return (summary, {"test": test},
            f"test loss {test['loss']:.4f}  test accuracy {100 * test['accuracy']:.2f}%")
