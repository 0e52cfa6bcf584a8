"""Image classification (chapters 2 and 5): MNIST or Fashion-MNIST, any registered image model.

The training state and the pure train and eval steps (also used by the studies of chapter 2),
and the task: one step per `advance`, validation every epoch, test at the end.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from dl_jax import optim
from dl_jax.data.images import mnist, pipeline
from dl_jax.engine import checks, sharding
from dl_jax.engine.task import Plan, Task, jit_step
from dl_jax.errors import ConfigError
from dl_jax.models import registry
from dl_jax.nn import regularizers


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
                       input_shape: tuple[int, ...]) -> TrainState:
  """Initializes parameters from `rng` (explicit key; no global state)."""
  init_rng, train_rng = jax.random.split(rng)
  variables = model.init(init_rng, jnp.zeros((1, *input_shape), jnp.float32), train=False)
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
               weight_l2: float = 0.0) -> tuple[TrainState, dict]:
  """One gradient step on the mean loss of `batch`; returns the new state and step metrics.

  The loss is the mean cross-entropy, plus weight_l1 * sum|w| + weight_l2 * sum w^2 over the
  kernels, plus whatever the model sows into the "losses" collection (activity penalties,
  section 2.5.4). Bind the coefficients with functools.partial before jitting.
  """
  step_rng = jax.random.fold_in(state.rng, state.step)
  mutable = ["batch_stats", regularizers.LOSSES]

  def loss_fn(params):
    logits, updates = state.apply_fn(_variables(state, params), batch["image"], train=True,
                                     rngs={"dropout": step_rng}, mutable=mutable)
    data_loss = cross_entropy(logits, batch["label"]).mean()
    penalty = regularizers.sown_penalty(updates)
    if weight_l1:
      penalty += weight_l1 * regularizers.l1_penalty(params)
    if weight_l2:
      penalty += weight_l2 * regularizers.l2_penalty(params)
    return data_loss + penalty, (data_loss, logits, updates)

  (_, (loss, logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(
      step=state.step + 1, params=optax.apply_updates(state.params, param_updates),
      batch_stats=updates.get("batch_stats", state.batch_stats), opt_state=opt_state)
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


def evaluate_split(state: TrainState, split: pipeline.Split, batch_size: int, mesh,
                   eval_fn) -> dict:
  """Mean loss and accuracy over a whole split (padding masked out)."""
  sums = {"loss": 0.0, "correct": 0.0, "count": 0.0}
  for batch in pipeline.eval_batches(split, batch_size, jax.process_index(), jax.process_count()):
    out = jax.device_get(eval_fn(state, sharding.shard_batch(batch, mesh)))
    for k in sums:
      sums[k] += float(out[k])
  return {"loss": sums["loss"] / sums["count"], "accuracy": sums["correct"] / sums["count"]}


class ImageClassification(Task):
  """`config.model` (a registered image model) on `config.dataset`; 5,000 training images held out
  for validation (section 2.5.1), the official test set at the end."""

  CHECKS = {
      "model": checks.string,
      "model_kwargs": checks.hyper_parameters,  # names and types: the model registry
      "dataset": checks.one_of(*mnist.NAMES),
      "val_size": checks.nonnegative_int("no validation split"),
      "split_seed": checks.any_int,
      "train_subset": checks.nonnegative_int("all training images"),
      "batch_size": checks.positive_int,
      "eval_batch_size": checks.positive_int,
      "num_epochs": checks.positive_int,
      "optimizer": checks.one_of(*optim.OPTIMIZERS),
      "learning_rate": checks.positive_number,
      "lr_schedule": checks.one_of(*optim.SCHEDULES),
      "warmup_steps": checks.nonnegative_int("no warm-up"),
      "weight_l1": checks.nonnegative_number,
      "weight_l2": checks.nonnegative_number,
  }

  @classmethod
  def validate(cls, config):
    registry.get(config.model, family="image")
    registry.build(config.model, **config.model_kwargs.to_dict())

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.spec = registry.get(config.model, family="image")
    self.model = registry.build(config.model, **config.model_kwargs.to_dict())
    for key in ("batch_size", "eval_batch_size"):
      sharding.check_batch_size(config[key], mesh, key)
    raw = mnist.load(config.dataset, config.data_dir or None)
    self.train, self.val, self.test = pipeline.train_val_test(
        raw, config.val_size, config.split_seed, config.train_subset)
    self.steps_per_epoch = len(self.train) // config.batch_size
    if self.steps_per_epoch == 0:
      raise ConfigError(f"batch_size={config.batch_size} exceeds the {len(self.train)} training "
                        "examples")
    self.schedule_steps = config.num_epochs * self.steps_per_epoch
    if config.warmup_steps >= self.schedule_steps and config.lr_schedule != "constant":
      raise ConfigError(f"warmup_steps={config.warmup_steps} must be smaller than the "
                        f"{self.schedule_steps} steps of the schedule")
    self.tx = optim.make_optimizer(config.optimizer, config.learning_rate, config.lr_schedule,
                                   self.schedule_steps, config.warmup_steps)
    self._train_step = jit_step(functools.partial(
        train_step, weight_l1=config.weight_l1, weight_l2=config.weight_l2), donate_argnums=0)
    self._eval_step = jax.jit(eval_step)
    self._stream, self._next_step = None, None

  def plan(self) -> Plan:
    return Plan(self.schedule_steps, self.steps_per_epoch, "examples", self.config.batch_size,
                eval_every_steps=self.steps_per_epoch if len(self.val) else 0)

  def init(self, key) -> TrainState:
    return create_train_state(self.model, self.tx, jax.random.key_data(key),
                              self.spec.input_shape)

  def advance(self, state, step, stop):
    del stop
    if self._next_step != step:  # (re)start the stream: batches are pure in (seed, step)
      self._stream = pipeline.train_batches(self.train, self.config.batch_size, self.config.seed,
                                            step, jax.process_index(), jax.process_count())
    state, metrics = self._train_step(state, sharding.shard_batch(next(self._stream), self.mesh))
    self._next_step = step + 1
    return state, step + 1, {"train": metrics}

  def _eval(self, state, split):
    return evaluate_split(state, split, self.config.eval_batch_size, self.mesh, self._eval_step)

  def evaluate(self, state, step):
    return state, {"val": self._eval(state, self.val)}

  def finish(self, state, step, out_dir):
    del out_dir
    test = self._eval(state, self.test)
    val = self._eval(state, self.val) if len(self.val) else {}
    summary = {"dataset": self.config.dataset, "test_accuracy": test["accuracy"],
               "test_loss": test["loss"], "val_accuracy": val.get("accuracy"),
               "val_loss": val.get("loss"), "param_count": param_count(state.params),
               "batch_size": self.config.batch_size}
    return (summary, {"test": test},
            f"test loss {test['loss']:.4f}  test accuracy {100 * test['accuracy']:.2f}%")
