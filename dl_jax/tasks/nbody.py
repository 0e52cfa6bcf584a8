"""Charged N-body dynamics (Satorras, Hoogeboom and Welling 2021, section 5.1), a task of the
engine: from the positions, velocities and charges of 5 particles predict their positions one
time unit later (`dl_jax.data.physics.nbody`, simulated by dl_jax: 3000 training, 2000
validation and 2000 test systems).

The loss (train, val and test) is the mean squared error over all coordinates, as the paper
reports it; Adam with the paper's learning rate 5e-4 and its weight decay 1e-12 (added to the
gradient, as torch's Adam does), constant or decayed to 0 on a cosine over the run
(`lr_schedule`), batches of 100 systems, the last incomplete batch of an epoch dropped. One
`advance` is one epoch, scanned in one jitted call; the batch order is a pure function of
(seed, epoch), and each batch is split over the devices of the mesh. Every `eval_every_epochs`
the validation and test MSE are measured, and the parameters and test MSE of the epoch of the
lowest validation MSE are kept (the paper's protocol; that selection is part of the
checkpointed state). `finish` adds the 95 % bootstrap interval of that test MSE over the test
systems.

`finish` also measures what the selected model does under the group: the largest error of
f(g.x) against g.f(x) on 100 test systems, in float64, for rotations, reflections, translations
and relabellings of the particles separately (`dl_jax.symmetry.euclidean`). An E(3)-equivariant
model has errors at rounding level; the GNN baseline, which sees raw coordinates, does not.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl_jax import optim, plots
from dl_jax.data.physics import nbody as nbody_data
from dl_jax.engine import checks, sharding
from dl_jax.engine.task import Plan, Task, jit_step
from dl_jax.errors import ConfigError
from dl_jax.models import registry
from dl_jax.models.spec import count_params
from dl_jax.symmetry import check as check_lib
from dl_jax.symmetry import euclidean

INPUT_KEYS = ("positions", "velocities", "charges")
# component -> the action that checks it alone (`equivariance_errors`)
COMPONENTS = {
    "rotation": dict(rotations=True, translations=False),
    "reflection": dict(rotations=False, reflection_probability=1.0, translations=False),
    "translation": dict(rotations=False, translations=True),
    "permutation": dict(rotations=False, translations=False, permutations=True),
}
SYMMETRY_CHECK_SYSTEMS = 100


def system_errors(model, params, batch) -> jax.Array:
  """The squared error of each system, averaged over its particles and coordinates: [S]."""
  prediction = model.apply({"params": params}, {k: batch[k] for k in INPUT_KEYS})
  return jnp.mean((prediction - batch["target"]) ** 2, axis=(1, 2))


def mse(model, params, batch) -> jax.Array:
  return jnp.mean(system_errors(model, params, batch))


def bootstrap_interval(errors: np.ndarray, seed: int = 0, resamples: int = 2000
                       ) -> tuple[float, float]:
  """The 95 % percentile-bootstrap interval of the mean of `errors` (systems resampled with
  replacement): how much the test MSE owes to which 2,000 systems were drawn."""
  rng = np.random.default_rng(seed)
  means = np.asarray(errors, np.float64)[rng.integers(0, len(errors), (resamples,
                                                                        len(errors)))].mean(1)
  low, high = np.percentile(means, [2.5, 97.5])
  return float(low), float(high)


def make_epoch(model, tx, batch_sharding=None):
  """epoch(state, data, order) -> (state, per-step logs): one pass over `data` (the training
  arrays, replicated) in the batches of `order` ([steps, batch] indices), scanned in one call.
  Each batch is split over `batch_sharding`'s devices (data parallelism: XLA sums the
  per-device gradients)."""
  def epoch(state, data, order):
    def step(state, indices):
      batch = jax.tree.map(lambda a: a[indices], data)
      if batch_sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
      loss, grads = jax.value_and_grad(functools.partial(mse, model))(state["params"], batch)
      updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
      return ({"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state},
              {"loss": loss, "grad_norm": optax.tree.norm(grads)})
    return jax.lax.scan(step, state, order)
  return epoch


def equivariance_errors(model, params, cloud: dict) -> dict[str, dict[str, float]]:
  """{component: {"max_abs_error", "relative_error"}} of the model under each component of
  E(3) x S_n alone, in float64 (3 random elements each; relative: max error / max |output|)."""
  out = {}
  with jax.enable_x64(True):
    model64 = model.clone(dtype=jnp.float64)
    params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    x64 = {k: jnp.asarray(v, jnp.float64) for k, v in cloud.items()}
    f = jax.jit(lambda x: model64.apply({"params": params64}, x))
    n = x64["positions"].shape[1]
    for i, (name, components) in enumerate(COMPONENTS.items()):
      action = euclidean.EuclideanAction(n, **components)
      report = check_lib.check_equivariant(f, x64, action, jax.random.PRNGKey(100 + i),
                                           atol=0.0, rtol=0.0, n_samples=3,
                                           raise_on_failure=False)
      out[name] = {"max_abs_error": report.max_abs_error,
                   "relative_error": report.max_abs_error / max(report.output_scale, 1e-300)}
  return out


class NBody(Task):
  """`config.model` (a registered point_cloud model) on the simulated charged N-body system."""

  CHECKS = {
      "model": checks.string,
      "model_kwargs": checks.hyper_parameters,
      "dataset": checks.one_of("charged5"),
      "train_size": checks.positive_int,
      "batch_size": checks.positive_int,
      "num_epochs": checks.positive_int,
      "eval_every_epochs": checks.positive_int,
      "optimizer": checks.one_of("adam"),
      "lr_schedule": checks.one_of(*optim.SCHEDULES),
      "learning_rate": checks.positive_number,
      "weight_decay": checks.nonnegative_number,
  }

  @classmethod
  def validate(cls, config):
    registry.get(config.model, family="point_cloud")
    registry.build(config.model, **config.model_kwargs.to_dict())
    available = nbody_data.SPLITS["train"][0]
    if config.train_size > available:
      raise ConfigError(f"train_size={config.train_size} exceeds the {available} training "
                        f"systems; accepted: 1..{available}")
    if config.batch_size > config.train_size:
      raise ConfigError(f"batch_size={config.batch_size} exceeds train_size="
                        f"{config.train_size}")

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    sharding.check_batch_size(config.batch_size, mesh)
    self.model = registry.build(config.model, **config.model_kwargs.to_dict())
    splits = nbody_data.load(config.data_dir or None)
    self.train = {k: v[:config.train_size] for k, v in splits["train"].items()}
    self.val, self.test = splits["val"], splits["test"]
    self.steps_per_epoch = config.train_size // config.batch_size
    schedule = optim.make_schedule(config.lr_schedule, config.learning_rate,
                                   config.num_epochs * self.steps_per_epoch)
    self.tx = optax.chain(optax.add_decayed_weights(config.weight_decay), optax.adam(schedule))
    self._epoch = jit_step(make_epoch(self.model, self.tx, sharding.batch_sharding(mesh)),
                           donate_argnums=0)
    self._mse = jax.jit(functools.partial(mse, self.model))
    self._train_device = sharding.replicate(self.train, mesh)

  def plan(self) -> Plan:
    total = self.config.num_epochs * self.steps_per_epoch
    return Plan(total, self.steps_per_epoch, "systems", self.config.batch_size,
                eval_every_steps=self.config.eval_every_epochs * self.steps_per_epoch)

  def init(self, key):
    example = {k: v[:1] for k, v in self.train.items() if k in INPUT_KEYS}
    params = self.model.init(key, example)["params"]
    return {"params": params, "opt_state": self.tx.init(params),
            "best": {"val_mse": jnp.asarray(jnp.inf, jnp.float32),
                     "test_mse": jnp.asarray(jnp.inf, jnp.float32),
                     "epoch": jnp.zeros((), jnp.int32),
                     "params": jax.tree.map(jnp.zeros_like, params)}}  # set at the 1st eval

  def order(self, epoch: int) -> np.ndarray:
    """The batches of epoch `epoch` (0-based): [steps, batch_size] training indices."""
    rng = np.random.default_rng([self.config.seed, epoch])
    perm = rng.permutation(self.config.train_size)[:self.steps_per_epoch * self.config.batch_size]
    return perm.reshape(self.steps_per_epoch, self.config.batch_size).astype(np.int32)

  def advance(self, state, step, stop):
    del stop
    epoch = step // self.steps_per_epoch
    trained, logs = self._epoch({"params": state["params"], "opt_state": state["opt_state"]},
                                self._train_device, sharding.replicate(self.order(epoch),
                                                                       self.mesh))
    return {**trained, "best": state["best"]}, step + self.steps_per_epoch, {"train": logs}

  def _split_mse(self, params, split: dict) -> float:
    return float(self._mse(params, split))

  def evaluate(self, state, step):
    val, test = self._split_mse(state["params"], self.val), self._split_mse(state["params"],
                                                                            self.test)
    best = state["best"]
    if val < float(best["val_mse"]):
      best = {"val_mse": np.asarray(val, np.float32), "test_mse": np.asarray(test, np.float32),
              "epoch": np.asarray(step // self.steps_per_epoch, np.int32),
              "params": jax.tree.map(jnp.array, state["params"])}  # a copy: the step donates
    return {**state, "best": best}, {"val": {"loss": val}, "test": {"loss": test}}

  def finish(self, state, step, out_dir):
    params = state["params"]
    val, test = self._split_mse(params, self.val), self._split_mse(params, self.test)
    best = jax.device_get(state["best"])
    if not np.isfinite(best["val_mse"]) or val < best["val_mse"]:
      best = {"val_mse": val, "test_mse": test, "epoch": step // self.steps_per_epoch,
              "params": params}
    params = best["params"]  # the model the paper's protocol selects
    interval = bootstrap_interval(jax.device_get(
        jax.jit(functools.partial(system_errors, self.model))(params, self.test)))
    probe = {k: v[:SYMMETRY_CHECK_SYSTEMS] for k, v in self.test.items() if k in INPUT_KEYS}
    errors = equivariance_errors(self.model, jax.device_get(params), probe)
    summary = {
        "dataset": self.config.dataset, "train_size": self.config.train_size,
        "epochs": step // self.steps_per_epoch, "test_mse": float(best["test_mse"]),
        "test_mse_interval95": interval,
        "val_mse": float(best["val_mse"]), "best_epoch": int(best["epoch"]),
        "final_test_mse": test, "final_val_mse": val,
        "equivariance_errors_float64": errors,
        "param_count": count_params(params), "batch_size": self.config.batch_size}
    if out_dir is not None:
      prediction = np.asarray(self.model.apply({"params": params}, probe))
      plots.nbody_predictions(probe["positions"], np.asarray(self.test["target"][:4]),
                              prediction[:4], out_dir / "predictions.png",
                              f"{self.config.experiment} (epoch {int(best['epoch'])}): test MSE "
                              f"{float(best['test_mse']):.4f}")
    headline = (f"test MSE {float(best['test_mse']):.5f} (at the best validation epoch "
                f"{int(best['epoch'])}; last epoch {test:.5f}); float64 equivariance errors: "
                + ", ".join(f"{k} {v['max_abs_error']:.1e}" for k, v in errors.items()))
    return summary, {"test": {"loss": test}, "val": {"loss": val}}, headline
