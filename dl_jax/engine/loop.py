"""`run(config, workdir)`: the one training loop of every task.

Sections: config checks, workdir, state (restore or init), the loop (advance, progress, guard,
evaluation, checkpoints, preemption), the end (the task's final evaluation, results.json, figures).

Resume order: the latest checkpoint in the workdir, else a fresh initialization. The checkpoint
holds the task's state, the step and the training time; data order and step randomness are pure
functions of (seed, step) in every task, so a resumed run ends where an uninterrupted one would.
An event with cadence `every` is due after a chunk that took the run from step a to step b when
b // every > a // every (one rule for one-step and many-step chunks).
"""

import importlib
import json
import platform
import signal
import threading
import time

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from dl_jax import plots
from dl_jax.engine import checks, sharding, workdir as workdir_lib, writers
from dl_jax.errors import CheckpointError, ConfigError, NonFiniteError

# config.task -> "module:class" of the task (imported only when it runs).
TASKS = {
    "image_classification": "dl_jax.tasks.image_classification:ImageClassification",
    "node_classification": "dl_jax.tasks.node_classification:NodeClassification",
    "graph_classification": "dl_jax.tasks.graph_classification:GraphClassification",
    "word_embeddings": "dl_jax.tasks.word_embeddings:WordEmbeddings",
    "nbody": "dl_jax.tasks.nbody:NBody",
    "autoencoding": "dl_jax.tasks.autoencoding:Autoencoding",
    "vae": "dl_jax.tasks.vae:VAE",
    "autoregressive": "dl_jax.tasks.pixelcnn:Autoregressive",
    "metric_learning": "dl_jax.tasks.metric_learning:MetricLearning",
    "localization": "dl_jax.tasks.localization:Localization",
    "segmentation": "dl_jax.tasks.segmentation:Segmentation",
    "denoising": "dl_jax.tasks.denoising:Denoising",
    "style_transfer": "dl_jax.tasks.style_transfer:StyleTransfer",
    "sequence_classification": "dl_jax.tasks.sequence_classification:SequenceClassification",
    "language_model": "dl_jax.tasks.language_model:LanguageModel",
    "gan": "dl_jax.tasks.gan:GAN",
}

# The engine's own config keys.
CHECKS = {
    "experiment": checks.string,
    "task": checks.one_of(*TASKS),
    "seed": checks.seed,
    "data_dir": checks.string,
    "max_steps": checks.nonnegative_int("no cap"),
    "log_every_steps": checks.positive_int,
    "checkpoint_every_steps": checks.positive_int,
    "keep_checkpoints": checks.positive_int,
}


def task_class(name: str):
  if name not in TASKS:
    raise ConfigError(f"task={name!r} is not accepted; accepted: {', '.join(TASKS)}")
  module, cls = TASKS[name].split(":")
  return getattr(importlib.import_module(module), cls)


def all_checks(config: ml_collections.ConfigDict) -> dict:
  """The engine's checks and those of `config.task`."""
  checks.validate(config, {"task": CHECKS["task"]})
  return {**CHECKS, **task_class(config.task).CHECKS}


def validate(config: ml_collections.ConfigDict) -> None:
  """Every check of the engine and of the task, and the task's own cross-key checks, before
  anything is loaded or written."""
  checks.validate(config, all_checks(config))
  cls = task_class(config.task)
  if cls.SINGLE_PROCESS and jax.process_count() > 1:
    raise ConfigError(f"task={config.task!r} runs in one process only ({cls.SINGLE_PROCESS}), "
                      f"not as {jax.process_count()}; accepted: the task without --multihost, "
                      "on the devices of one process")
  cls.validate(config)


def crossed(old: int, new: int, every: int) -> bool:
  return bool(every) and new // every > old // every


class StopRequest:
  """Context manager: `requested()` turns True when a SIGTERM asks the run to save and stop.

  One process: a handler (main thread only) sets a flag, read at the next step. Several
  processes (`jax.distributed`): jax's preemption notifier catches the SIGTERM on whichever
  process receives it, and `multihost_utils.reached_preemption_sync_point` turns True on every
  process at the same step, so that all of them save that step together (a flag of one process
  would leave it in a collective save while the others train on). The sync point counts calls,
  one by one from 0 on every process: it is given the number of the call, not the training step,
  which `advance` moves by several at once.
  """

  def __init__(self):
    self._requested = False
    self._previous = None
    self._synchronized = jax.process_count() > 1
    self._calls = 0

  def __enter__(self):
    if not self._synchronized and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self._requested = True

  def requested(self) -> bool:
    """Called once after every `advance`, as often on every process."""
    if self._synchronized and not self._requested:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      self._requested = multihost_utils.reached_preemption_sync_point(self._calls)
      self._calls += 1
    return self._requested

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def versions() -> dict:
  """Versions of the stack, recorded in results.json."""
  return {"python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
          "optax": optax.__version__, "orbax_checkpoint": getattr(ocp, "__version__", "unknown")}


def _rows(value, n: int) -> np.ndarray:
  """A logged array as [steps of the chunk, everything else]."""
  return np.asarray(value, np.float64).reshape(n, -1)


def prepare_workdir(workdir: str, config: dict):
  """`workdir_lib.prepare_workdir` on process 0 first (it alone checks and marks the workdir),
  then, once it accepted the workdir, on the others; its refusal stops every process instead of
  leaving them waiting for it."""
  if jax.process_count() == 1:
    return workdir_lib.prepare_workdir(workdir, config)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  path, refusal = None, None
  if jax.process_index() == 0:
    try:
      path = workdir_lib.prepare_workdir(workdir, config)
    except CheckpointError as e:
      refusal = e
  if not multihost_utils.broadcast_one_to_all(np.int32(refusal is None)):
    if refusal is not None:
      raise refusal
    raise CheckpointError(f"process 0 refused workdir {workdir!r} (its log says why)")
  return path or workdir_lib.prepare_workdir(workdir, config, check_owner=False)


def _finiteness_check(start_state):
  """A jitted `state -> bool`: whether every floating-point array that is finite in
  `start_state` (the initial or restored state) still is. Arrays a task starts at +-inf on
  purpose (a best validation loss not yet set) are left out."""
  floating = [i for i, x in enumerate(jax.tree.leaves(start_state))
              if jnp.issubdtype(x.dtype, jnp.inexact)]
  finite_now = jax.device_get(jax.jit(lambda leaves: [jnp.all(jnp.isfinite(x)) for x in leaves])(
      [jax.tree.leaves(start_state)[i] for i in floating]))
  watched = [i for i, finite in zip(floating, finite_now) if finite]

  @jax.jit
  def still_finite(state) -> jax.Array:
    leaves = jax.tree.leaves(state)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaves[i])) for i in watched]
                             or [jnp.bool_(True)]))
  return still_finite


def _finished_results(run_dir, step: int, total: int) -> dict | None:
  """The results of a run that already ended at `step` (the same command run again), or None.
  Every process takes process 0's answer."""
  results = None
  if step >= total and jax.process_index() == 0:
    try:
      results = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
      results = None  # missing, or cut off by a kill: the final evaluation runs again
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    if not multihost_utils.broadcast_one_to_all(np.int32(results is not None)):
      return None
    return results or json.loads((run_dir / "results.json").read_text())
  return results


def run(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """Trains `config.task` as `config` says, resuming from `workdir` if it holds a checkpoint.

  Returns the results (also `<workdir>/results.json`), or None when a SIGTERM stopped the run
  after saving a checkpoint. Run again after it ended, it returns the saved results.
  """
  # ------------------------------------------------------------------ config and workdir
  validate(config)
  mesh = sharding.make_mesh()
  is_chief = jax.process_index() == 0
  run_dir = prepare_workdir(workdir, config.to_dict())
  task = task_class(config.task)(config, mesh)
  plan = task.plan()
  total = min(plan.total_steps, config.max_steps) if config.max_steps else plan.total_steps
  if is_chief:  # the task is built: its data loaded, its config accepted
    workdir_lib.mark(run_dir, config.to_dict())

  # ------------------------------------------------------------------ state: restore or init
  key = jax.random.key(config.seed, impl=config.get("rng_impl", "threefry2x32"))
  replicated = sharding.replicated(mesh)
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                          jax.eval_shape(task.init, key))
  ckpt = workdir_lib.Checkpointer(run_dir, config.keep_checkpoints)
  latest = ckpt.latest_step()
  if latest is None:
    state = jax.jit(task.init, out_shardings=replicated)(key)
    step, train_time = 0, 0.0
  else:
    restored = ckpt.restore(latest, {"state": abstract,
                                     "step": jax.ShapeDtypeStruct((), np.int64),
                                     "train_time_s": jax.ShapeDtypeStruct((), np.float64)})
    state, step = restored["state"], int(restored["step"])
    train_time = float(restored["train_time_s"])
    logging.info("resumed from %s at step %d", ckpt.directory / str(latest), step)
    finished = _finished_results(run_dir, step, total)
    if finished is not None:
      ckpt.close()
      logging.info("%s finished already at step %d: %s (delete it to evaluate again)",
                   config.experiment, step, run_dir / "results.json")
      return finished
  start_step = step
  logging.info("%s (task %s): %d steps (%s per epoch, %s %s per step) on %d device(s) (%s), "
               "workdir %s", config.experiment, config.task, total, f"{plan.steps_per_epoch:g}",
               f"{plan.units_per_step:g}", plan.unit, mesh.devices.size,
               jax.devices()[0].device_kind, run_dir)

  # ------------------------------------------------------------------ the loop
  writer = writers.MetricWriter(run_dir, start_step, enabled=is_chief)
  progress = writers.Progress(start_step, total, plan.unit, plan.units_per_step)
  pending = []  # (first step, last step, logs still on the device)
  steady = {"units": 0.0, "seconds": 0.0}  # throughput without the window that compiled
  segment_start = time.perf_counter()

  def stop_non_finite(what: str):
    ckpt.wait()
    good = ckpt.latest_step()
    kept = (f"the last good checkpoint (step {good}) is kept in {ckpt.directory}"
            if good is not None else
            f"no checkpoint had been saved yet (checkpoint_every_steps="
            f"{config.checkpoint_every_steps})")
    hint = (f"; lower learning_rate={config.learning_rate} or change the optimizer"
            if "learning_rate" in config else "")
    raise NonFiniteError(f"{what}; training stopped: {kept}{hint}")

  still_finite = _finiteness_check(state)

  def save(at: int):
    if not bool(still_finite(state)):  # an update can overflow from a finite loss and gradient
      stop_non_finite(f"non-finite parameters or optimizer state after step {at} (its loss and "
                      "gradient norm were finite)")
    ckpt.save(at, {"state": state, "step": np.asarray(at, np.int64),
                   "train_time_s": np.asarray(train_time + time.perf_counter() - segment_start)})

  def guard(first: int, last: int, train: dict):
    """Stops on the first non-finite loss or gradient norm, naming the step."""
    loss, grad_norm = (_rows(train[k], last - first) for k in ("loss", "grad_norm"))
    bad_rows = ~(np.isfinite(loss).all(1) & np.isfinite(grad_norm).all(1))
    if bad_rows.any():
      i = int(np.argmax(bad_rows))
      stop_non_finite(f"non-finite loss or gradient norm at step {first + i + 1} (loss="
                      f"{loss[i].tolist()}, grad_norm={grad_norm[i].tolist()})")

  def flush(at: int, log: bool):
    """Reads the pending logs back: guard, train record, other splits, progress line."""
    nonlocal pending
    host = jax.device_get([logs for _, _, logs in pending])
    for (first, last, _), logs in zip(pending, host):
      guard(first, last, logs["train"])
    means = {k: float(np.mean(np.concatenate([_rows(logs["train"][k], last - first).ravel()
                                              for (first, last, _), logs in zip(pending, host)])))
             for k in host[0]["train"]}
    rate = progress.rate(at)
    if pending[0][0] > start_step:
      steps = at - pending[0][0]
      steady["units"] += steps * plan.units_per_step
      steady["seconds"] += steps * plan.units_per_step / max(rate, 1e-12)
    writer.write(at, "train", {**means, f"{plan.unit}_per_s": rate})
    latest = {}  # split -> accuracy at the window's last record, for the progress line
    for (_, last, _), logs in zip(pending, host):
      for split, values in logs.items():
        if split != "train":
          record = {k: float(np.mean(v)) for k, v in values.items()}
          writer.write(last, split, record)
          if "accuracy" in record:
            latest[split] = record["accuracy"]
    pending = []
    if log:
      extra = "".join(f"  {split} acc {100 * a:.2f}%" for split, a in latest.items())
      logging.info(progress.line(at, task.position(at), means, rate, extra))

  with StopRequest() as stop:
    while step < total:
      old = step
      state, step, logs = task.advance(state, step, total)
      pending.append((old, step, logs))
      done = step >= total
      log_due = crossed(old, step, config.log_every_steps) or done
      eval_due = crossed(old, step, plan.eval_every_steps)
      checkpoint_due = crossed(old, step, config.checkpoint_every_steps) or done
      stopping = stop.requested()
      if log_due or eval_due or checkpoint_due or stopping:
        flush(step, log_due)
      if eval_due:
        state, records = task.evaluate(state, step)
        for split, values in records.items():
          writer.write(step, split, values)
          logging.info("step %d  %s  %s", step, split, "  ".join(
              f"{k} {100 * v:.2f}%" if k == "accuracy" else f"{k} {v:.4g}"
              for k, v in values.items()))
      if checkpoint_due or stopping:
        save(step)
      if stopping:
        ckpt.wait()
        logging.warning("SIGTERM: saved checkpoint at step %d in %s; run the same command to "
                        "resume", step, ckpt.directory)
        writer.close()
        ckpt.close()
        return None
  train_time += time.perf_counter() - segment_start
  ckpt.wait()

  # ------------------------------------------------------------------ the end
  summary, records, headline = task.finish(state, step, run_dir if is_chief else None)
  for split, values in records.items():
    writer.write(step, split, values)
  writer.close()
  ckpt.close()
  results = {
      "experiment": config.experiment, "task": config.task, "model": config.get("model"),
      "steps": step, "epochs": step / plan.steps_per_epoch, "train_time_s": train_time,
      "train_time_per_epoch_s": train_time / max(step / plan.steps_per_epoch, 1e-9),
      f"train_{plan.unit}_per_s": (steady["units"] / steady["seconds"] if steady["seconds"]
                                   else None),
      "seed": config.seed, "platform": jax.default_backend(),
      "device_kind": jax.devices()[0].device_kind, "num_devices": mesh.devices.size,
      "num_processes": jax.process_count(), **summary,
      "versions": versions(), "config": config.to_dict(),
  }
  if is_chief:
    workdir_lib.write_atomic(run_dir / "results.json",
                             json.dumps(results, indent=2, default=str))
    plots.learning_curves(writers.read_metrics(run_dir / "metrics.jsonl"),
                          run_dir / "learning_curves.png", f"{config.experiment}: {headline}")
  logging.info("%s  (%s)", headline, run_dir / "results.json")
  return results
