"""`train_and_evaluate`: the one training loop every image-classification experiment runs.

Sections: config checks, data, state (init or resume), the loop (steps, progress, validation,
checkpoints, preemption), final evaluation and outputs.
"""

import functools
import json
import math
import platform
import signal
import threading
import time

import flax
import jax
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from dl_jax.data import mnist, pipeline
from dl_jax.errors import ConfigError, DlJaxError, require_positive_int
from dl_jax.models import registry
from dl_jax.train import checkpoint, metrics, optimizers, sharding
from dl_jax.train.state import create_train_state, eval_step, param_count, train_step


class NonFiniteError(DlJaxError):
  """The loss or the gradient norm stopped being finite."""
  exit_code = 1


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails on the first bad value with a message naming it and what is accepted."""
  for key in ("batch_size", "num_epochs", "log_every_steps", "checkpoint_every_steps",
              "keep_checkpoints", "eval_batch_size"):
    require_positive_int(config, key)
  if not isinstance(config.max_steps, int) or config.max_steps < 0:
    raise ConfigError(f"max_steps={config.max_steps!r} must be 0 (no cap) or a positive integer")
  for key in ("weight_l1", "weight_l2"):
    if not isinstance(config[key], (int, float)) or not config[key] >= 0:
      raise ConfigError(f"{key}={config[key]!r} must be a number >= 0")
  if config.dataset not in mnist.NAMES:
    raise ConfigError(f"unknown dataset {config.dataset!r}; accepted: {', '.join(mnist.NAMES)}")
  registry.get(config.model)
  optimizers.make_optimizer(config.optimizer, config.learning_rate, config.lr_schedule)


# ---------------------------------------------------------------------------------------------
# Preemption: SIGTERM asks the loop to checkpoint and return at the next step boundary.

class StopRequest:
  """Context manager: `requested` turns True on SIGTERM (handled in the main thread only)."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def close_preempted(step: int, ckpt: checkpoint.Checkpointer,
                    writer: metrics.MetricWriter) -> None:
  """After the save that a SIGTERM asked for: waits for it, says how to resume, closes outputs."""
  ckpt.wait()
  logging.warning("SIGTERM: saved checkpoint at step %d in %s; run the same command to resume",
                  step, ckpt.directory)
  writer.close()
  ckpt.close()


def _evaluate(state, split, batch_size, mesh, eval_fn) -> dict:
  sums = {"loss": 0.0, "correct": 0.0, "count": 0.0}
  for batch in pipeline.eval_batches(split, batch_size, jax.process_index(), jax.process_count()):
    out = jax.device_get(eval_fn(state, sharding.shard_batch(batch, mesh)))
    for k in sums:
      sums[k] += float(out[k])
  return {"loss": sums["loss"] / sums["count"], "accuracy": sums["correct"] / sums["count"]}


def versions() -> dict:
  """Versions of the stack, recorded in results.json."""
  return {"python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
          "optax": optax.__version__, "orbax_checkpoint": getattr(ocp, "__version__", "unknown")}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """Trains `config.model` on `config.dataset`, resuming from `workdir` if it holds a checkpoint.

  Returns the final results (also written to `<workdir>/results.json`), or None when a SIGTERM
  stopped the run after saving a checkpoint.
  """
  # ------------------------------------------------------------------ config and devices
  validate_config(config)
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh)
  is_chief = jax.process_index() == 0
  run_dir = checkpoint.prepare_workdir(workdir, config.to_dict())

  # ------------------------------------------------------------------ data
  raw = mnist.load(config.dataset, config.data_dir or None)
  train, val, test = pipeline.train_val_test(raw, config.val_size, config.split_seed,
                                             config.train_subset)
  steps_per_epoch = len(train) // config.batch_size
  if steps_per_epoch == 0:
    raise ConfigError(f"batch_size={config.batch_size} exceeds the {len(train)} training examples")
  schedule_steps = config.num_epochs * steps_per_epoch
  total_steps = min(schedule_steps, config.max_steps) if config.max_steps else schedule_steps

  # ------------------------------------------------------------------ state: resume or init
  model = registry.build(config.model, **config.model_kwargs.to_dict())
  tx = optimizers.make_optimizer(config.optimizer, config.learning_rate, config.lr_schedule,
                                 schedule_steps, config.warmup_steps)
  spec = registry.get(config.model)
  state = create_train_state(model, tx, jax.random.PRNGKey(config.seed), spec.input_shape)
  state = sharding.replicate(state, mesh)
  ckpt = checkpoint.Checkpointer(run_dir, config.keep_checkpoints)
  train_time = 0.0
  latest = ckpt.latest_step()
  if latest is not None:
    restored = ckpt.restore(latest, {"state": state.checkpointable(),
                                     "train_time_s": np.zeros((), np.float64)})
    state = state.replace_from(restored["state"])
    train_time = float(restored["train_time_s"])
    logging.info("resumed from %s at step %d", ckpt.directory / str(latest), latest)
  start_step = int(jax.device_get(state.step))
  n_params = param_count(state.params)
  logging.info("%s: %s parameters, %d device(s) (%s), %d steps (%d per epoch), workdir %s",
               config.model, f"{n_params:,}", mesh.devices.size, jax.devices()[0].device_kind,
               total_steps, steps_per_epoch, run_dir)

  # ------------------------------------------------------------------ training loop
  train_fn = jax.jit(functools.partial(train_step, weight_l1=config.weight_l1,
                                       weight_l2=config.weight_l2), donate_argnums=0)
  eval_fn = jax.jit(eval_step)
  writer = metrics.MetricWriter(run_dir, start_step, enabled=is_chief)
  progress = metrics.Progress(start_step, total_steps, steps_per_epoch, config.batch_size)
  stream = pipeline.train_batches(train, config.batch_size, config.seed, start_step,
                                  jax.process_index(), jax.process_count())
  pending = []  # (step, device metrics) not yet read back
  steady = {"examples": 0, "seconds": 0.0}
  segment_start = time.perf_counter()

  def save(step):
    ckpt.save(step, {"state": state.checkpointable(),
                     "train_time_s": np.asarray(train_time + time.perf_counter() - segment_start)})

  def flush(step):
    nonlocal pending
    host = jax.device_get([m for _, m in pending])
    for (s, _), m in zip(pending, host):
      bad = [k for k in ("loss", "grad_norm") if not math.isfinite(float(m[k]))]
      if bad:
        ckpt.wait()
        raise NonFiniteError(
            f"non-finite {' and '.join(bad)} at step {s} (loss={float(m['loss'])}, grad_norm="
            f"{float(m['grad_norm'])}); training stopped. The last good checkpoint "
            f"(step {ckpt.latest_step()}) is kept in {ckpt.directory}; lower learning_rate="
            f"{config.learning_rate} or change the optimizer")
    mean = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
    rate = progress.rate(step)
    if step - start_step > len(pending):  # not the window that includes compilation
      steady["examples"] += len(pending) * config.batch_size
      steady["seconds"] += len(pending) * config.batch_size / rate
    writer.write(step, "train", {**mean, "examples_per_s": rate})
    pending = []
    return mean, rate

  with StopRequest() as stop:
    for step in range(start_step + 1, total_steps + 1):
      batch = sharding.shard_batch(next(stream), mesh)
      state, step_metrics = train_fn(state, batch)
      pending.append((step, step_metrics))
      epoch_end = step % steps_per_epoch == 0
      checkpoint_now = step % config.checkpoint_every_steps == 0 or step == total_steps
      if step % config.log_every_steps == 0 or epoch_end or checkpoint_now or stop.requested:
        mean, rate = flush(step)
        if step % config.log_every_steps == 0 or step == total_steps:
          logging.info(progress.line(step, mean["loss"], mean["accuracy"], rate))
      if epoch_end and len(val):
        val_metrics = _evaluate(state, val, config.eval_batch_size, mesh, eval_fn)
        writer.write(step, "val", val_metrics)
        logging.info("epoch %d  val loss %.4f  val acc %.2f%%", step // steps_per_epoch,
                     val_metrics["loss"], 100 * val_metrics["accuracy"])
      if checkpoint_now or stop.requested:
        save(step)
      if stop.requested:
        close_preempted(step, ckpt, writer)
        return None
  train_time += time.perf_counter() - segment_start
  ckpt.wait()

  # ------------------------------------------------------------------ final evaluation
  test_metrics = _evaluate(state, test, config.eval_batch_size, mesh, eval_fn)
  val_metrics = _evaluate(state, val, config.eval_batch_size, mesh, eval_fn) if len(val) else {}
  writer.write(total_steps, "test", test_metrics)
  writer.close()
  ckpt.close()
  results = {
      "experiment": config.experiment, "model": config.model, "dataset": config.dataset,
      "test_accuracy": test_metrics["accuracy"], "test_loss": test_metrics["loss"],
      "val_accuracy": val_metrics.get("accuracy"), "val_loss": val_metrics.get("loss"),
      "steps": total_steps, "epochs": total_steps / steps_per_epoch, "param_count": n_params,
      "train_time_s": train_time,
      "train_examples_per_s": (steady["examples"] / steady["seconds"] if steady["seconds"]
                               else None),
      "batch_size": config.batch_size, "seed": config.seed,
      "platform": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
      "num_devices": mesh.devices.size, "num_processes": jax.process_count(),
      "versions": versions(), "config": config.to_dict(),
  }
  if is_chief:
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    metrics.plot_learning_curves(run_dir / "metrics.jsonl", run_dir / "learning_curves.png",
                                 f"{config.experiment}: test accuracy "
                                 f"{100 * test_metrics['accuracy']:.2f}%")
  logging.info("test loss %.4f  test accuracy %.2f%%  (%s)", test_metrics["loss"],
               100 * test_metrics["accuracy"], run_dir / "results.json")
  return results
