"""What a task supplies to the engine: its data, its step (or chunk of steps), its evaluation.

A task is one class in one file of `dl_jax/tasks`. The engine constructs it after checking the
config (the engine's keys and the task's `CHECKS`), then calls

    validate(config)                cross-key checks, before anything is loaded (classmethod)
    plan()                          once: schedule length, epoch length, progress unit
    init(key)                       pure; the engine traces it with jax.eval_shape and runs it
                                    jitted with replicated output shardings, or restores a
                                    checkpoint into its abstract shapes instead
    advance(state, step, stop)      runs steps step+1 .. new_step (new_step <= stop, except a task
                                    whose chunk is an epoch may finish it): returns
                                    (state, new_step, logs)
    evaluate(state, step)           at every `Plan.eval_every_steps` crossed: (state, {split: m})
    finish(state, step, out_dir)    after the last step: (summary, {split: metrics}); writes its
                                    own artifacts into out_dir (None on processes other than 0)

`logs` maps a split ("train", and e.g. "val" for a task that evaluates inside its step) to
{metric: array}; an array's leading axis is the chunk's steps (a scalar for a one-step chunk),
further axes (seeds) are averaged. The "train" split must hold "loss" and "grad_norm": the engine
stops on the first non-finite value of either. Arrays may stay on the device: the engine reads
them back only when it logs, evaluates or checkpoints.
"""

import abc
import dataclasses
from typing import Any

import jax
import ml_collections

from dl_jax.engine import checks as checks_lib


@dataclasses.dataclass(frozen=True)
class Plan:
  total_steps: int  # the schedule's length; `max_steps` may stop a run earlier
  steps_per_epoch: float
  unit: str  # what one step processes, e.g. "examples", "nodes", "graphs", "centers"
  units_per_step: float
  eval_every_steps: int = 0  # 0: no periodic evaluation


class Task(abc.ABC):
  """Base class of the tasks; subclasses set CHECKS and implement the abstract methods (a task
  missing one cannot be constructed)."""

  # The task's own config keys -> their checks (dl_jax.engine.checks).
  CHECKS: dict[str, checks_lib.Check] = {}
  # Why the task runs in one process only, or None: its batches are split over the processes
  # of a multi-process run (`--multihost`), each process reading its slice.
  SINGLE_PROCESS: str | None = None

  @classmethod
  def validate(cls, config: ml_collections.ConfigDict) -> None:
    """Checks across keys (after CHECKS, before any data is loaded); ConfigError on failure."""

  def __init__(self, config: ml_collections.ConfigDict, mesh):
    self.config, self.mesh = config, mesh

  @abc.abstractmethod
  def plan(self) -> Plan:
    """See the module docstring."""

  @abc.abstractmethod
  def init(self, key) -> Any:
    """See the module docstring."""

  @abc.abstractmethod
  def advance(self, state, step: int, stop: int):
    """See the module docstring."""

  def evaluate(self, state, step: int):
    return state, {}

  @abc.abstractmethod
  def finish(self, state, step: int, out_dir):
    """See the module docstring."""

  def position(self, step: int) -> str:
    """Where `step` is, for the progress line (default: the epoch)."""
    return f"epoch {step / self.plan().steps_per_epoch:.2f}"


class RetraceError(AssertionError):
  """A task's jitted step was traced more often than it allows."""


def jit_step(fn, max_traces: int = 1, **jit_kwargs):
  """`jax.jit(fn)` that fails when this jitted function is traced more than `max_traces` times:
  a task's step must not recompile per epoch, fold or call. The check of chex.assert_max_traces,
  counted per jitted function (chex counts per place of definition, which would count the runs
  of a study made in one process together)."""
  name = getattr(fn, "__name__", getattr(getattr(fn, "func", None), "__name__", "step"))
  traces = [0]

  def step(*args, **kwargs):
    traces[0] += 1
    if traces[0] > max_traces:
      raise RetraceError(f"{name} was traced {traces[0]} times (at most {max_traces} allowed): "
                         "an argument changed shape, dtype, weak type or sharding")
    return fn(*args, **kwargs)
  step.__name__ = name
  jitted = jax.jit(step, **jit_kwargs)
  jitted.traces = lambda: traces[0]
  return jitted
