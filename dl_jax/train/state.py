"""The training state and the pure, jitted train and eval steps."""

from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

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

  def checkpointable(self) -> dict:
    return {"step": self.step, "params": self.params, "batch_stats": self.batch_stats,
            "opt_state": self.opt_state, "rng": self.rng}

  def replace_from(self, tree: dict) -> "TrainState":
    return self.replace(**tree)


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
