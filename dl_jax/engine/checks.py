"""Declarative config checks: every key a run reads has one, so every bad value is refused at
start with a message naming the key, the value and what is accepted.

A check is a callable `value -> None` that raises `ValueError("what is accepted")`; `validate`
turns that into one ConfigError naming the dotted key. `unchecked_numeric_keys` lists the numeric
config values no check covers (the engine test requires none for every task's config).
"""

import math
from typing import Any, Callable, Iterable

from dl_jax.errors import ConfigError

Check = Callable[[Any], None]


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(value) -> None:
  if not (_is_int(value) and value > 0):
    raise ValueError("must be a positive integer")


def nonnegative_int(zero_means: str) -> Check:
  """An int >= 0, where 0 means `zero_means` (e.g. "no cap")."""
  def check(value):
    if not (_is_int(value) and value >= 0):
      raise ValueError(f"must be 0 ({zero_means}) or a positive integer")
  return check


def int_at_least(low: int) -> Check:
  def check(value):
    if not (_is_int(value) and value >= low):
      raise ValueError(f"must be an integer >= {low}")
  return check


def seed(value) -> None:
  """A seed as numpy and jax.random.key both take it: 0 <= seed < 2**32 (numpy refuses negative
  seeds; jax would reduce larger ones modulo 2**32, so that seed 2**32 trained as seed 0)."""
  if not (_is_int(value) and 0 <= value < 2 ** 32):
    raise ValueError(f"must be an integer in [0, {2 ** 32 - 1}]")


def number(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
           high_open: bool = False) -> Check:
  """A finite number in the interval [low, high] (open ends where asked)."""
  if high == math.inf:
    accepted = f"{'>' if low_open else '>='} {low:g}"
  elif low == -math.inf:
    accepted = f"{'<' if high_open else '<='} {high:g}"
  else:
    accepted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

  def check(value):
    ok = _is_number(value) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
      raise ValueError(f"must be a finite number {accepted}")
  return check


positive_number = number(0.0, low_open=True)
nonnegative_number = number(0.0)
probability = number(0.0, 1.0, high_open=True)  # dropout rates, subsampling thresholds


class BadEntry(ValueError):
  """One entry of a dict-valued key is bad: the message names `key.entry`."""

  def __init__(self, entry: str, value, accepted: str):
    super().__init__(accepted)
    self.entry, self.value = entry, value


class NotAChoice(ValueError):
  """A value outside a fixed set of choices (the message reads `unknown key 'value'; ...`)."""


def one_of(*accepted) -> Check:
  def check(value):
    if isinstance(value, bool) or value not in accepted:
      raise NotAChoice(f"accepted: {', '.join(map(str, accepted))}")
  return check


def boolean(value) -> None:
  if not isinstance(value, bool):
    raise ValueError("must be True or False")


def string(value) -> None:
  if not isinstance(value, str):
    raise ValueError("must be a string")


def int_tuple(low: int = 1, min_length: int = 1) -> Check:
  """A tuple of >= `min_length` ints, each >= `low` (e.g. sampling fan-outs)."""
  def check(value):
    if not (isinstance(value, (tuple, list)) and len(value) >= min_length
            and all(_is_int(v) and v >= low for v in value)):
      raise ValueError(f"must be {min_length} or more integers >= {low}, e.g. (25, 10)")
  return check


def string_tuple(value) -> None:
  """A tuple (possibly empty) of strings, e.g. layer names."""
  if isinstance(value, str) or not isinstance(value, (tuple, list)) or not all(
      isinstance(v, str) for v in value):
    raise ValueError("must be a tuple of names, e.g. ('Conv_0', 'Dense_0')")


def names(accepted: Iterable[str]) -> Check:
  """A non-empty tuple of names from `accepted` (e.g. corpora)."""
  accepted = tuple(accepted)

  def check(value):
    if isinstance(value, str) or not value or any(v not in accepted for v in value):
      raise ValueError(f"must be a non-empty tuple of names from: {', '.join(accepted)}")
  return check


def hyper_parameters(value) -> None:
  """Model hyper-parameters (`model_kwargs`; names and types are the model registry's): rates
  (names with "dropout" or "rate") in [0, 1), other numbers finite, sizes (ints, tuples of
  ints) >= 1, indices (tuple entries) >= 0."""
  for name, v in dict(value).items():
    if isinstance(v, bool) or isinstance(v, str) or v is None:
      continue
    if ("dropout" in name or "rate" in name) and _is_number(v):
      if not (math.isfinite(v) and 0 <= v < 1):
        raise BadEntry(name, v, "must be a rate in [0, 1)")
    elif _is_int(v) and v < 1:
      raise BadEntry(name, v, "must be an integer >= 1")
    elif _is_number(v) and not math.isfinite(v):
      raise BadEntry(name, v, "must be a finite number")
    elif isinstance(v, (tuple, list)) and not all(_is_int(x) and x >= 0 for x in v):
      raise BadEntry(name, v, "must be integers >= 0")


def anything(value) -> None:
  del value


def lookup(config, dotted: str):
  node = config
  for part in dotted.split("."):
    node = node[part]
  return node


def validate(config, checks: dict[str, Check]) -> None:
  """Runs every check on its key (dotted paths reach into nested configs); the first failure
  raises ConfigError `key=value must be ...`."""
  for key, check in checks.items():
    try:
      value = lookup(config, key)
    except (KeyError, AttributeError):
      raise ConfigError(f"the config has no key {key!r}, which this experiment needs; add it to "
                        "the config file") from None
    try:
      check(value)
    except BadEntry as e:
      raise ConfigError(f"{key}.{e.entry}={e.value!r} {e}") from None
    except NotAChoice as e:
      raise ConfigError(f"unknown {key} {value!r}; {e}") from None
    except ValueError as e:
      raise ConfigError(f"{key}={value!r} {e}") from None


def leaves(config, prefix: str = "") -> dict[str, Any]:
  """Dotted key -> value of every non-dict value of a (nested) config."""
  out = {}
  for key, value in config.items():
    path = f"{prefix}{key}"
    if hasattr(value, "items"):
      out.update(leaves(value, path + "."))
    else:
      out[path] = value
  return out


def unchecked_numeric_keys(config, checks: dict[str, Check]) -> list[str]:
  """Numeric leaves of `config` (numbers and tuples of numbers) without a check."""
  out = []
  for key, value in leaves(config).items():
    numeric = _is_number(value) or (isinstance(value, (tuple, list)) and value and
                                    all(_is_number(v) for v in value))
    if numeric and key not in checks and not any(key.startswith(p + ".") for p in checks):
      out.append(key)
  return out
