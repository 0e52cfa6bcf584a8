"""Errors the user can act on: each message names the bad value and what is accepted."""


class DlJaxError(Exception):
  """Base class: entry points print the message alone and exit with status 2."""


class ConfigError(DlJaxError):
  """A flag or config value is invalid."""


class DataError(DlJaxError):
  """A dataset could not be fetched, or a cached file does not match its checksum."""


class CheckpointError(DlJaxError):
  """A workdir or checkpoint cannot be used for this run."""


def require(condition: bool, message: str, error=ConfigError) -> None:
  if not condition:
    raise error(message)


def require_positive_int(config, key: str, prefix: str = "") -> None:
  """`config[key]` is an int > 0 (not a bool), else ConfigError naming `prefix + key`."""
  value = config[key]
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ConfigError(f"{prefix}{key}={value!r} must be a positive integer")


class NonFiniteError(DlJaxError):
  """The loss or the gradient norm stopped being finite; the last good checkpoint is kept."""
  exit_code = 1
