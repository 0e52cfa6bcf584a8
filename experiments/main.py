"""Entry point of the config-driven experiments (images, word embeddings, graphs).

  python -m experiments.main --config=experiments/configs/mnist_cnn.py --workdir=runs/mnist_cnn \
      [--config.num_epochs=3 ...]

or, equivalently, `./launch.sh mnist_cnn [--config.num_epochs=3 ...]`. Running the same command
again resumes from the latest checkpoint in the workdir.
"""

import importlib
import logging as std_logging
import os
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Experiment config file (experiments/configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (default: runs/<experiment>): checkpoints, "
                    "metrics, plots, results.json. An existing run there is resumed.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (multi-host GPU or "
                  "TPU pod; the cluster is detected from the environment).")
flags.DEFINE_string("compilation_cache", os.path.expanduser("~/.cache/dl_jax/jax_cache"),
                    "Persistent XLA compilation cache directory ('' disables it).")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS

# config.trainer -> the module whose `train_and_evaluate(config, workdir)` runs it.
TRAINERS = {
    "classification": "dl_jax.train.loop",  # images (chapters 2 and 5)
    "word2vec": "dl_jax.text.train",  # word embeddings (chapter 3)
    "node_classification": "dl_jax.graph.train",  # graphs (chapter 6)
    "graph_classification": "dl_jax.graph.train_graphs",
}


class _OnlyWarningsFromLibraries(std_logging.Filter):
  """Keeps orbax's per-save INFO chatter out of the progress log."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; flags look like --config.x=value")
  logging.get_absl_handler().addFilter(_OnlyWarningsFromLibraries())
  import jax  # pylint: disable=g-import-not-at-top

  from dl_jax.errors import ConfigError, DlJaxError  # pylint: disable=g-import-not-at-top

  if FLAGS.multihost:
    jax.distributed.initialize()
  if FLAGS.compilation_cache:
    jax.config.update("jax_compilation_cache_dir", FLAGS.compilation_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  config = FLAGS.config
  workdir = FLAGS.workdir or str(pathlib.Path("runs") / config.experiment)
  try:
    trainer = config.get("trainer", "classification")
    if trainer not in TRAINERS:
      raise ConfigError(f"unknown trainer {trainer!r} in the config; accepted: "
                        f"{', '.join(sorted(TRAINERS))}")
    importlib.import_module(TRAINERS[trainer]).train_and_evaluate(config, workdir)
  except DlJaxError as e:
    logging.flush()
    print(f"error: {e}", file=sys.stderr)
    sys.exit(getattr(e, "exit_code", 2))


if __name__ == "__main__":
  app.run(main)
