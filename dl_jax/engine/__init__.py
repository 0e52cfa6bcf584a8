"""The one training engine: `run(config, workdir)` trains any task of `dl_jax.tasks`.

The engine owns what every run has in common (config checks of its keys, the workdir, restore or
init, cadence, preemption, the non-finite guard, metrics, progress, results); a task
(`dl_jax.engine.task.Task`) owns its data, its step and its evaluation.
"""

from dl_jax.engine.loop import TASKS, all_checks, run, task_class, validate
from dl_jax.engine.task import Plan, Task
