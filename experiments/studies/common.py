"""What the studies share: one training per sub-workdir (done once), the --quick sizes, tables.

A study is many trainings, each in its own directory under `<workdir>/runs/`. A run whose
`results.json` (or `diverged.json`) holds the same configuration is read back instead of trained
again, and an interrupted one resumes from its checkpoint, so running the same command again
after an interruption only does what is missing.
"""

import json
import logging as std_logging
import math
import os
import pathlib
import platform
import sys
import time

import flax
import jax
import ml_collections
import optax
from absl import app, flags, logging

from dl_jax.errors import ConfigError, DlJaxError
from experiments.configs import base

COMPILATION_CACHE = os.path.expanduser("~/.cache/dl_jax/jax_cache")


class StudyStopped(DlJaxError):
  """A SIGTERM stopped a training after its checkpoint was saved."""
  exit_code = 1


def study_config(**overrides) -> ml_collections.ConfigDict:
  """`base_config()` with what every study run shares: constant learning rate, the MLP, one
  checkpoint at the end (runs are short), then `overrides` (`model_kwargs` as a dict)."""
  config = base.base_config()
  config.model = "mnist_mlp"
  config.lr_schedule = "constant"
  config.checkpoint_every_steps = 100_000
  config.keep_checkpoints = 1
  config.log_every_steps = 20
  model_kwargs = overrides.pop("model_kwargs", {})
  for key, value in overrides.items():
    config[key] = value
  for key, value in model_kwargs.items():
    config.model_kwargs[key] = value
  return config


def as_json(value):
  """`value` as it reads back from JSON (tuples become lists)."""
  return json.loads(json.dumps(value, default=str))


def train_once(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict:
  """`engine.run(config, workdir)`, unless `workdir` holds the finished run already.

  Returns its results. A run that stops on a non-finite loss (too large a learning rate) returns
  {"diverged": message, "config": ...}, also written to `diverged.json` so it is not retried.
  """
  from dl_jax import engine  # pylint: disable=g-import-not-at-top
  from dl_jax.errors import NonFiniteError  # pylint: disable=g-import-not-at-top

  wanted = as_json(config.to_dict())
  for name in ("results.json", "diverged.json"):
    path = workdir / name
    if path.exists():
      saved = json.loads(path.read_text())
      if saved.get("config") == wanted:
        logging.info("done already: %s", path)
        return saved
  try:
    results = engine.run(config, str(workdir))
  except NonFiniteError as e:
    logging.warning("%s: %s", workdir, e)
    diverged = {"diverged": str(e), "config": wanted}
    (workdir / "diverged.json").write_text(json.dumps(diverged, indent=2))
    return diverged
  if results is None:
    raise StudyStopped(f"SIGTERM: the run in {workdir} saved a checkpoint and stopped; run the "
                       "same command to resume the study")
  return results


def read_metrics(workdir: pathlib.Path, split: str) -> list[dict]:
  """The `split` records ("train", "val", "test") of a run's metrics.jsonl, in step order."""
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [r for r in map(json.loads, filter(str.strip, lines)) if r["split"] == split]


def sizes(flag_values: flags.FlagValues, quick: dict) -> dict:
  """The size flags' values; with --quick, `quick` replaces those not given on the command line."""
  out = {name: flag_values[name].value for name in quick}
  if flag_values.quick:
    out.update({k: v for k, v in quick.items() if not flag_values[k].present})
  return out


def workdir(flag_values: flags.FlagValues, name: str) -> pathlib.Path:
  """--workdir, by default runs/study_<name> (runs/study_<name>_quick with --quick)."""
  if flag_values.workdir:
    return pathlib.Path(flag_values.workdir)
  return pathlib.Path("runs") / f"study_{name}{'_quick' if flag_values.quick else ''}"


def setup(compilation_cache: str) -> None:
  """Keeps orbax's per-save INFO lines out of the log; turns on the persistent XLA cache."""

  class _OnlyWarningsFromOrbax(std_logging.Filter):

    def filter(self, record):
      return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname

  logging.get_absl_handler().addFilter(_OnlyWarningsFromOrbax())
  if compilation_cache:
    jax.config.update("jax_compilation_cache_dir", compilation_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def int_list(name: str, values: list[str]) -> list[int]:
  """A list flag of positive integers, or a ConfigError naming the flag."""
  try:
    out = [int(v) for v in values]
  except ValueError:
    out = []
  if not out or min(out) <= 0:
    raise ConfigError(f"--{name}={','.join(values)} must be a comma-separated list of positive "
                      "integers")
  return out


def markdown_table(header: list[str], rows: list[list], caption: str = "") -> str:
  lines = ([caption, ""] if caption else []) + [
      "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def percent(x: float | None, digits: int = 2) -> str:
  return "-" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f} %"


def environment() -> dict:
  """The fields experiments/report.py reads besides the metrics: where and with what it ran."""
  return {"platform": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
          "num_devices": jax.device_count(),
          "versions": {"python": platform.python_version(), "jax": jax.__version__,
                       "flax": flax.__version__, "optax": optax.__version__}}


def write_outputs(out: pathlib.Path, results: dict, table: str) -> None:
  (out / "table.md").write_text(table)
  (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
  logging.info("wrote %s, %s\n%s", out / "table.md", out / "results.json", table)


class Timer:
  """Wall seconds since creation."""

  def __init__(self):
    self.start = time.perf_counter()

  def __call__(self) -> float:
    return time.perf_counter() - self.start


def run_main(argv: list[str], quick: dict, study) -> None:
  """A study's entry point: compilation cache, sizes (full or --quick), and bad input reported as
  one `error: ...` line with exit status 2."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  setup(flags.FLAGS.compilation_cache)
  try:
    study(sizes(flags.FLAGS, quick))
  except DlJaxError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(getattr(e, "exit_code", 2))
