"""Run outputs: metrics as JSONL and TensorBoard events, a progress line, learning-curve plots."""

import json
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from absl import logging


class MetricWriter:
  """Appends `{"step": s, "split": name, ...}` records to metrics.jsonl and TensorBoard.

  On resume from step s, records after s (written after the last checkpoint) are dropped, so the
  log reads as if the run had never stopped.
  """

  def __init__(self, workdir: pathlib.Path, resume_step: int, enabled: bool = True):
    self.path = workdir / "metrics.jsonl"
    self.enabled = enabled
    self._tb = None
    if not enabled:
      return
    if self.path.exists():
      kept = [line for line in self.path.read_text().splitlines()
              if line.strip() and json.loads(line)["step"] <= resume_step]
      tmp = self.path.with_suffix(".tmp")
      tmp.write_text("".join(line + "\n" for line in kept))
      tmp.replace(self.path)
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
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Progress:
  """Logs 'step a/b  epoch e  loss  acc  examples/s  ETA' lines."""

  def __init__(self, start_step: int, total_steps: int, steps_per_epoch: int, batch_size: int):
    self.start_step, self.total_steps = start_step, total_steps
    self.steps_per_epoch, self.batch_size = steps_per_epoch, batch_size
    self.t0 = self.t_last = time.perf_counter()
    self.step_last = start_step

  def rate(self, step: int) -> float:
    """Examples per second since the previous call (excluding nothing but compilation of step 1)."""
    now = time.perf_counter()
    rate = (step - self.step_last) * self.batch_size / max(now - self.t_last, 1e-9)
    self.t_last, self.step_last = now, step
    return rate

  def line(self, step: int, loss: float, accuracy: float, examples_per_s: float) -> str:
    remaining = (self.total_steps - step) * self.batch_size / max(examples_per_s, 1e-9)
    eta = time.strftime("%H:%M:%S", time.gmtime(remaining))
    return (f"step {step}/{self.total_steps}  epoch {step / self.steps_per_epoch:.2f}  "
            f"loss {loss:.4f}  acc {100 * accuracy:.2f}%  {examples_per_s:,.0f} ex/s  ETA {eta}")


def plot_learning_curves(metrics_path: pathlib.Path, out_path: pathlib.Path, title: str) -> None:
  records = read_metrics(metrics_path)
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for split in ("train", "val"):
    rows = [r for r in records if r["split"] == split]
    if not rows:
      continue
    steps = [r["step"] for r in rows]
    axes[0].plot(steps, [r["loss"] for r in rows], label=split, marker="o" if split == "val" else None)
    axes[1].plot(steps, [100 * r["accuracy"] for r in rows], label=split,
                 marker="o" if split == "val" else None)
  for ax, name in zip(axes, ("cross-entropy loss", "accuracy (%)")):
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend()
  axes[0].set_yscale("log")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(out_path, dpi=120)
  plt.close(fig)
  logging.info("wrote %s", out_path)
