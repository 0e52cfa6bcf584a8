"""A task driven in this process as the engine drives it (no workdir, no subprocess): for the
short real trainings of the task tests, which look at the state and metrics between steps."""

import jax

from dl_jax import engine
from dl_jax.engine import sharding


def start(config, seed: int = 0):
  """Validates `config` as the engine does, builds its task on this process's devices and
  returns it with its initial train state (replicated over the mesh, as the engine places it)."""
  engine.validate(config)
  mesh = sharding.make_mesh()
  task = engine.task_class(config.task)(config, mesh)
  state = jax.jit(task.init, out_shardings=sharding.replicated(mesh))(jax.random.key(seed))
  return task, state


def train(task, state, evaluate_every: int = 0):
  """Runs every step of the task's plan, one `advance` a step, and `evaluate` every
  `evaluate_every` steps (0: never). Returns the final state, each step's train metrics as
  floats, and the last evaluation's records (None without one)."""
  logs, records = [], None
  for step in range(task.plan().total_steps):
    state, _, out = task.advance(state, step, step + 1)
    logs.append({k: float(v) for k, v in out["train"].items()})
    if evaluate_every and (step + 1) % evaluate_every == 0:
      state, records = task.evaluate(state, step + 1)
  return state, logs, records
