"""The run directory: ownership checks, and orbax checkpoints with resume.

Resume order: the latest checkpoint in the workdir, else a fresh initialization. A workdir belongs
to one run: it is marked by `run_config.json`, and a run whose configuration differs from the saved
one (outside `RESUMABLE_CHANGES`) is refused instead of mixing its checkpoints with the old ones.
"""

import json
import pathlib
import tempfile

import jax
import numpy as np
import orbax.checkpoint as ocp

from dl_jax.engine import cluster
from dl_jax.errors import CheckpointError

RUN_MARKER = "run_config.json"
LAUNCH_SUBDIR = "launch"  # batch scripts and their logs (experiments/launch.py), before the run
# Config keys that may change between a run and its resumption without changing its results.
RESUMABLE_CHANGES = frozenset({"log_every_steps", "checkpoint_every_steps",
                               "keep_checkpoints", "data_dir", "max_steps"})


def write_atomic(path: pathlib.Path, text: str) -> None:
  """Writes `path` whole or not at all (a kill mid-write leaves the old file or none)."""
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  tmp.replace(path)


def _writable_dir(workdir: str) -> pathlib.Path:
  path = pathlib.Path(workdir).expanduser().resolve()
  try:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path):
      pass
  except OSError as e:
    raise CheckpointError(f"workdir {str(path)!r} is not writable ({e.strerror}); "
                          "choose a writable --workdir") from None
  return path


def prepare_workdir(workdir: str, config: dict, check_owner: bool = True) -> pathlib.Path:
  """Creates `workdir` or checks that it holds a run of this very configuration. Nothing is
  written to it: `mark` records the run once its task is built, so that a run refused while
  loading its data leaves the workdir free for the corrected command. `check_owner=False` (the
  processes other than 0, once process 0 accepted the workdir) checks only that it is writable."""
  path = _writable_dir(workdir)
  if not check_owner:
    return path
  config = json.loads(json.dumps(config, default=str))  # as saved: tuples become lists
  marker = path / RUN_MARKER
  ignored = {LAUNCH_SUBDIR, RUN_MARKER + ".tmp"}
  entries = sorted(p.name for p in path.iterdir() if p.name not in ignored)
  if not marker.exists():
    if entries:
      raise CheckpointError(
          f"workdir {str(path)!r} is not empty and holds no dl_jax run ({RUN_MARKER} missing; "
          f"found {', '.join(entries[:5])}{', ...' if len(entries) > 5 else ''}); "
          "choose an empty or new --workdir, or the workdir of an earlier run of this experiment")
    return path
  try:
    saved = json.loads(marker.read_text())
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{str(marker)!r} cannot be read ({e}); the workdir was left as is; "
                          "choose another --workdir") from None
  for key in sorted(set(saved) | set(config)):
    if key in RESUMABLE_CHANGES or saved.get(key) == config.get(key):
      continue
    raise CheckpointError(
        f"workdir {str(path)!r} holds a run with {key}={saved.get(key)!r}, but this run has "
        f"{key}={config.get(key)!r}; resuming would mix two runs. Use a new --workdir, or the "
        f"saved value (only {', '.join(sorted(RESUMABLE_CHANGES))} may change on resume)")
  return path


def mark(path: pathlib.Path, config: dict) -> None:
  """Records the run's configuration in its workdir (process 0), resumable changes included."""
  write_atomic(path / RUN_MARKER, json.dumps(json.loads(json.dumps(config, default=str)),
                                             indent=2, sort_keys=True))


class Checkpointer:
  """orbax CheckpointManager over `<workdir>/checkpoints`, keeping the last `keep` steps."""

  def __init__(self, workdir: pathlib.Path, keep: int):
    self.directory = workdir / "checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, tree: dict) -> None:
    if self.latest_step() is not None and step <= self.latest_step():
      return  # orbax would skip it silently; a step is never saved twice
    self._manager.save(step, args=ocp.args.StandardSave(tree))

  def restore(self, step: int, target: dict) -> dict:
    """Restores `step` into the structure, shapes, dtypes and shardings of `target` (arrays or
    jax.ShapeDtypeStruct)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax raises many types for unreadable or mismatched checkpoints
      if jax.process_count() > 1 and cluster.is_collective_error(e):
        raise  # another process died: not the checkpoint's fault (experiments/main.py)
      reason = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
      raise CheckpointError(
          f"checkpoint {str(self.directory / str(step))!r} cannot be restored ({reason}); it was "
          "left as is: move it out of the way to resume from an earlier checkpoint, or use a new "
          "--workdir") from None

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def to_host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))
