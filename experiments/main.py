"""Entry point of the config-driven experiments (images, word embeddings, graphs).

  python -m experiments.main --config=experiments/configs/mnist_cnn.py --workdir=runs/mnist_cnn \
      [--config.num_epochs=3 ...] [--show-config]

or, equivalently, `./launch.sh mnist_cnn [--config.num_epochs=3 ...]`. Running the same command
again resumes from the latest checkpoint in the workdir. `--config.<key>=<value>` overrides any
key of the config file, parsed by the type of its value; `--config.model=...` is applied first,
and `model_kwargs` then holds every hyper-parameter of that registered model with its default,
so each can be overridden. `--show-config` prints the resolved config and exits.
"""

import logging as std_logging
import os
import pathlib
import sys

from absl import app, flags, logging

from experiments import overrides

flags.DEFINE_string("workdir", None, "Run directory (default: runs/<experiment>): checkpoints, "
                    "metrics, plots, results.json. An existing run there is resumed.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (multi-host GPU or "
                  "TPU pod; the cluster is detected from the environment: dl_jax.engine.cluster).")
flags.DEFINE_string("compilation_cache", os.path.expanduser("~/.cache/dl_jax/jax_cache"),
                    "Persistent XLA compilation cache directory ('' disables it).")
flags.DEFINE_bool("show_config", False, "Print the resolved config, one key per line, and exit.")
FLAGS = flags.FLAGS

# Hyper-parameters a task derives from its data, never taken from model_kwargs defaults.
DATA_DEFINED = ("num_classes",)


class _OnlyWarningsFromLibraries(std_logging.Filter):
  """Keeps orbax's per-save INFO chatter out of the progress log."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def fill_model_kwargs(config) -> None:
  """Adds every hyper-parameter of `config.model` missing from `config.model_kwargs`, with the
  registry's default, so that `--config.model_kwargs.<name>=...` is typed and checked."""
  if "model" not in config or "model_kwargs" not in config:
    return
  from dl_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from dl_jax.models import registry  # pylint: disable=g-import-not-at-top
  try:
    defaults = registry.get(config.model).defaults
  except ConfigError:
    return  # the task's checks name the unknown model
  with config.unlocked():
    for name, value in defaults.items():
      if name not in config.model_kwargs and name not in DATA_DEFINED:
        config.model_kwargs[name] = value


def resolve_config(config_path, config_overrides):
  """The config file with the command line's overrides applied, locked."""
  from dl_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  if config_path is None:
    raise ConfigError("--config is required; accepted: --config=experiments/configs/<name>.py")
  config = overrides.load_config_file(config_path)
  config = overrides.apply_overrides(config, config_overrides, on_first=fill_model_kwargs)
  config.lock()
  return config


def main(argv, config_path=None, config_overrides=()):
  del argv  # `parse_flags` accepted no positional argument
  logging.get_absl_handler().addFilter(_OnlyWarningsFromLibraries())
  from dl_jax.errors import DlJaxError  # pylint: disable=g-import-not-at-top
  try:
    config = resolve_config(config_path, config_overrides)
    if FLAGS.show_config:
      print("\n".join(overrides.config_lines(config)))
      return
    import jax  # pylint: disable=g-import-not-at-top
    if FLAGS.multihost:
      from dl_jax.engine import cluster  # pylint: disable=g-import-not-at-top
      logging.info("multihost: %s", cluster.initialize().describe())
    if FLAGS.compilation_cache:
      jax.config.update("jax_compilation_cache_dir", FLAGS.compilation_cache)
      jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
      jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    workdir = FLAGS.workdir or str(pathlib.Path("runs") / config.experiment)
    from dl_jax import engine  # pylint: disable=g-import-not-at-top
    if not FLAGS.multihost or jax.process_count() == 1:
      engine.run(config, workdir)
      return
    checkpoints = str(pathlib.Path(workdir) / "checkpoints")
    with cluster.collective_errors_in_one_line(), cluster.PeerWatch(checkpoints) as watch:
      try:
        engine.run(config, workdir)
      except Exception as e:  # pylint: disable=broad-except  (re-raised unless a process died)
        message = None if isinstance(e, DlJaxError) else cluster.collective_failure(e, checkpoints)
        if message is None:
          raise
        cluster.exit_with_failure(message)
      watch.finish()
  except DlJaxError as e:
    logging.flush()
    print(f"error: {e}", file=sys.stderr)
    sys.exit(getattr(e, "exit_code", 2))


ACCEPTED_FLAGS = ("--config=<file>, --config.<key>=<value>, --workdir=<dir>, --multihost, "
                  "--compilation_cache=<dir>, --show-config")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with one `error:` line (exit 2) for a bad flag or a stray argument."""
  try:
    rest = FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}; accepted: {ACCEPTED_FLAGS}", file=sys.stderr)
    sys.exit(2)
  if len(rest) > 1:
    print(f"error: unexpected argument {rest[1]!r}; accepted: {ACCEPTED_FLAGS}", file=sys.stderr)
    sys.exit(2)
  return rest


def run_from_command_line():
  from dl_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  try:
    config_path, config_overrides, rest = overrides.split_argv(sys.argv)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  rest = ["--show_config" if a == "--show-config" else a for a in rest]
  app.run(lambda argv: main(argv, config_path, config_overrides), argv=rest,
          flags_parser=parse_flags)


if __name__ == "__main__":
  run_from_command_line()
