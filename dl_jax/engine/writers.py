"""Run outputs: metrics as JSONL and TensorBoard events (process 0 only), and the progress line."""

import json
import pathlib
import time


class MetricWriter:
  """Appends `{"step": s, "split": name, ...}` records to metrics.jsonl and TensorBoard.

  On resume from step s, records after s (written after the last checkpoint) are dropped, so the
  log reads as if the run had never stopped, but for one record: a SIGTERM between two logging
  steps writes the train mean of the steps since the last record at its own step, and the next
  record then averages the steps after it.
  """

  def __init__(self, workdir: pathlib.Path, resume_step: int, enabled: bool = True):
    self.path = workdir / "metrics.jsonl"
    self.enabled = enabled
    self._tb = None
    if not enabled:
      return
    if self.path.exists():
      kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
      from dl_jax.engine import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
      workdir_lib.write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._tb = SummaryWriter(str(workdir / "tensorboard"), purge_step=resume_step + 1)

  def write(self, step: int, split: str, values: dict) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "split": split, **{k: float(v) for k, v in values.items()}}
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")
    for k, v in values.items():
      self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(path: pathlib.Path) -> list[dict]:
  """The records of a metrics.jsonl; a last line cut off by a kill mid-write is left out."""
  lines = [line for line in path.read_text().splitlines() if line.strip()]
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except ValueError:
      if i < len(lines) - 1:
        raise
  return records


class Progress:
  """'step a/b  <position>  loss  acc  <rate> <unit>/s  ETA' lines in the task's own unit."""

  def __init__(self, start_step: int, total_steps: int, unit: str, units_per_step: float):
    self.total_steps, self.unit, self.units_per_step = total_steps, unit, units_per_step
    self.t_last, self.step_last = time.perf_counter(), start_step

  def rate(self, step: int) -> float:
    """Units per second since the previous call."""
    now = time.perf_counter()
    rate = (step - self.step_last) * self.units_per_step / max(now - self.t_last, 1e-9)
    self.t_last, self.step_last = now, step
    return rate

  def line(self, step: int, position: str, means: dict, rate: float, extra: str = "") -> str:
    remaining = max(self.total_steps - step, 0) * self.units_per_step / max(rate, 1e-9)
    eta = time.strftime("%H:%M:%S", time.gmtime(min(remaining, 86400 * 365)))
    shown = f"  loss {means['loss']:.4f}" if "loss" in means else ""
    if "accuracy" in means:
      shown += f"  acc {100 * means['accuracy']:.2f}%"
    return (f"step {step}/{self.total_steps}  {position}{shown}{extra}  "
            f"{rate:,.0f} {self.unit}/s  ETA {eta}")
