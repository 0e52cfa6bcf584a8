"""Command-line config handling for experiments/main.py: config files, `--config.<key>=<value>`
overrides parsed by the type of the value they replace, and one-line errors that name the key.

  config_path, overrides, rest = split_argv(sys.argv)
  config = load_config_file(config_path)
  config = apply_overrides(config, overrides, on_first=fill_model_defaults)
  print("\\n".join(config_lines(config)))   # --show-config

Every error is a `dl_jax.errors.ConfigError` with a one-line message.
"""

from __future__ import annotations

import ast
import copy
import difflib
import os
import pathlib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ml_collections

from dl_jax.errors import ConfigError

CONFIGS_DIR = pathlib.Path(__file__).resolve().parent / "configs"

_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")
_BOOL_WORDS = "true/false, yes/no, 1/0"
_PLURALS = {bool: "bools", int: "ints", float: "floats", str: "strings", tuple: "tuples",
            list: "lists"}
_FLAG_LIKE = re.compile(r"--?[A-Za-z_]")


# ----------------------------------------------------------------------------------- suggestions

def did_you_mean(word: str, choices: Iterable[str]) -> str:
  """"did you mean 'x'?" for the choice closest to `word` (difflib, case-insensitive), else ""."""
  match = _close_match(word, choices)
  return "" if match is None else f"did you mean {match!r}?"


def _close_match(word: str, choices: Iterable[str]) -> str | None:
  by_lower = {}
  for choice in choices:
    by_lower.setdefault(choice.lower(), choice)
  match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
  return by_lower[match[0]] if match else None


# ---------------------------------------------------------------------------------- command line

def split_argv(argv: Sequence[str]) -> tuple[str | None, list[tuple[str, str | None]], list[str]]:
  """Splits argv into (config path, overrides, the rest), each in command-line order.

  Taken out of argv:
    --config=PATH, --config PATH        the config file (given at most once);
    --config.KEY=VALUE                  an override (KEY dotted: sampling.fanouts);
    --config.KEY VALUE                  the same, when the next argument is not a flag (a
                                        negative number such as -1e-3 counts as a value);
    --config.KEY                        followed by a flag or nothing: value None, which
                                        `apply_overrides` reads as true for a bool key;
    --noconfig.KEY                      VALUE 'false' (absl's negation of a bool flag).
  Everything else (the program name, --workdir, --show-config, ...) goes to `rest`, as does
  everything from a bare `--` on.
  """
  config_path = None
  overrides: list[tuple[str, str | None]] = []
  rest: list[str] = []
  i = 0
  while i < len(argv):
    arg = argv[i]
    i += 1
    if arg == "--":
      rest.extend(argv[i - 1:])
      break
    name, eq, value = arg.partition("=")
    if name == "--config":
      if not eq:
        if i == len(argv) or _is_flag(argv[i]):
          raise ConfigError("--config takes a config file path, e.g. "
                            "--config=experiments/configs/mnist_cnn.py")
        value = argv[i]
        i += 1
      if not value:
        raise ConfigError("--config= is empty; it takes a config file path, e.g. "
                          "--config=experiments/configs/mnist_cnn.py")
      if config_path is not None:
        raise ConfigError(f"--config given twice ({config_path!r} and {value!r}); give one")
      config_path = value
    elif name.startswith("--config.") or name.startswith("--noconfig."):
      negated = name.startswith("--no")
      key = name.partition(".")[2]
      if not key:
        raise ConfigError(f"flag {arg!r} names no config key; flags look like "
                          "--config.<key>=<value>")
      if negated:
        if eq:
          raise ConfigError(f"flag {arg!r} takes no value; use --config.{key}={value}")
        overrides.append((key, "false"))
      elif eq:
        overrides.append((key, value))
      elif i < len(argv) and not _is_flag(argv[i]):
        overrides.append((key, argv[i]))
        i += 1
      else:
        overrides.append((key, None))
    else:
      rest.append(arg)
  return config_path, overrides, rest


def _is_flag(arg: str) -> bool:
  if arg == "--":
    return True
  if not _FLAG_LIKE.match(arg):
    return False
  try:
    float(arg)  # -inf, -nan
  except ValueError:
    return True
  return False


# ---------------------------------------------------------------------------------- config files

def load_config_file(path: str | os.PathLike) -> ml_collections.ConfigDict:
  """Executes the python file at `path` and returns its `get_config()`.

  A missing, unreadable or non-python file, a syntax or import error in it, no `get_config`, or
  a `get_config()` that returns no ConfigDict raise ConfigError. Other exceptions raised by the
  file's code propagate (they are bugs in the config).
  """
  shown = os.fspath(path)
  file = pathlib.Path(shown)
  accepted = _accepted_files(file)
  if not file.exists():
    raise ConfigError(f"config file {shown!r} not found; {_file_hint(file)}{accepted}")
  if not file.is_file():
    raise ConfigError(f"config file {shown!r} is not a file; {accepted}")
  if file.suffix != ".py":
    raise ConfigError(f"config file {shown!r} is not a python file; {_file_hint(file)}{accepted}")
  try:
    source = file.read_bytes()
  except OSError as e:
    reason = e.strerror or e
    raise ConfigError(f"cannot read config file {shown!r} ({reason}); {accepted}") from None
  try:
    code = compile(source, shown, "exec")
  except (SyntaxError, ValueError) as e:
    where = f" line {e.lineno}" if getattr(e, "lineno", None) else ""
    raise ConfigError(f"config file {shown!r}{where}: {getattr(e, 'msg', e)}") from None
  namespace = {"__name__": f"_dl_jax_config_{file.stem}", "__file__": str(file),
               "__builtins__": __builtins__}
  try:
    exec(code, namespace)  # pylint: disable=exec-used
  except ImportError as e:
    hint = "; run from the repository root" if (e.name or "").split(".")[0] == "experiments" else ""
    raise ConfigError(f"config file {shown!r} failed to import: {e}{hint}") from None
  get_config = namespace.get("get_config")
  if not callable(get_config):
    raise ConfigError(f"config file {shown!r} defines no get_config(); {accepted}")
  config = get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"get_config() in {shown!r} returned a {type(config).__name__}; accepted: "
                      "an ml_collections.ConfigDict")
  return config


def _config_names() -> list[str]:
  """Stems of the files in CONFIGS_DIR that define get_config()."""
  names = []
  for file in sorted(CONFIGS_DIR.glob("*.py")):
    try:
      if "def get_config(" in file.read_text(encoding="utf-8", errors="replace"):
        names.append(file.stem)
    except OSError:
      pass
  return names


def _near_configs_dir(file: pathlib.Path) -> bool:
  """`file` is in CONFIGS_DIR, is CONFIGS_DIR, or is a bare file name."""
  if len(file.parts) == 1:
    return True
  resolved = file.resolve()
  return CONFIGS_DIR in (resolved, resolved.parent)


def _configs_dir_shown() -> str:
  relative = os.path.relpath(CONFIGS_DIR)
  return str(CONFIGS_DIR) if relative.startswith("..") else relative


def _accepted_files(file: pathlib.Path) -> str:
  accepted = "accepted: a python file defining get_config()"
  if _near_configs_dir(file):
    accepted += f" such as {_configs_dir_shown()}/<name>.py, <name> one of " + ", ".join(
        _config_names())
  return accepted


def _file_hint(file: pathlib.Path) -> str:
  if not _near_configs_dir(file):
    return ""
  names = _config_names()
  stem = file.stem if file.suffix in ("", ".py") else file.name
  if stem in names:
    match = stem
  else:
    match = difflib.get_close_matches(stem, names, n=1, cutoff=0.6)
    if not match:
      return ""
    match = match[0]
  return f"did you mean {_configs_dir_shown() + '/' + match + '.py'!r}? "


# ------------------------------------------------------------------------------------ overrides

def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Iterable[tuple[str, str | None]],
                    first: Sequence[str] = ("task", "model"),
                    on_first: Callable[[ml_collections.ConfigDict], Any] | None = None,
                    ) -> ml_collections.ConfigDict:
  """A copy of `config` with `overrides` ((dotted key, text) pairs) applied.

  The overrides whose key is in `first` go first, in their order; then `on_first(copy)` runs
  if given (it may fill defaults that depend on them, e.g. `model_kwargs`; it edits the copy in
  place or returns a replacement; on a locked config it adds keys under `copy.unlocked()`);
  then the other overrides, in their order. Each text is parsed by the type of the value it
  replaces:
    bool        true/false, yes/no, 1/0 (any case); None (a bare --config.KEY) is true;
    int         digits, with an optional sign and underscores (1_000); not 3.5 or 1e3;
    float       anything float() reads, ints, inf, -inf and nan included;
    str         the text as is;
    None        a python literal (ast.literal_eval), else the text as is;
    tuple/list  comma separated (25,10) or a python literal ((25, 10) or [25,10]), each element
                parsed by the type the existing elements share (python literals if they are
                mixed or there are none); an empty text is empty.
  A placeholder (`ml_collections.config_dict.placeholder(int)`) is parsed by its declared type.
  The original config is not modified.
  """
  overrides = list(overrides)
  config = copy.deepcopy(config)
  for key, text in overrides:
    if key in first:
      _set(config, key, text)
  if on_first is not None:
    replaced = on_first(config)
    if replaced is not None:
      config = replaced
  for key, text in overrides:
    if key not in first:
      _set(config, key, text)
  return config


def _set(config: ml_collections.ConfigDict, key: str, text: str | None) -> None:
  parent, leaf = _lookup(config, key)
  field_type = parent.get_type(leaf)
  current = parent[leaf]
  if isinstance(current, ml_collections.ConfigDict):
    subkeys = sorted(_dotted_keys(current, f"{key}.", groups=False))
    listing = ("set one of: " + ", ".join(subkeys)) if subkeys else "it has no keys yet"
    raise ConfigError(f"config key {key!r} is a group of keys, not a value; {listing}")
  if text is None and field_type is not bool:
    raise ConfigError(f"config key {key!r} takes {_describe(current, field_type)}; got no value "
                      f"(use --config.{key}=VALUE)")
  value = True if text is None else _parse(key, text, current, field_type)
  try:
    parent[leaf] = value
  except (TypeError, ValueError, AttributeError, KeyError) as e:
    reason = " ".join(str(e).split())
    raise ConfigError(f"config key {key!r} cannot be set to {value!r}: {reason}") from None


def _lookup(config: ml_collections.ConfigDict, key: str) -> tuple[ml_collections.ConfigDict, str]:
  """(the ConfigDict holding `key`, its last part), else the unknown-key ConfigError."""
  parts = key.split(".")
  node = config
  for depth, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict):
      above = ".".join(parts[:depth])
      raise ConfigError(f"unknown config key {key!r}; {above!r} is a value, not a group of keys")
    if part not in node:
      raise ConfigError(_unknown_key_message(config, key, parts[:depth]))
    if depth == len(parts) - 1:
      return node, part
    node = node[part]
  raise AssertionError("unreachable")


def _unknown_key_message(config: ml_collections.ConfigDict, key: str, found: list[str]) -> str:
  """Suggests a key of the deepest group `key` names (`found`), else lists that group's keys."""
  message = f"unknown config key {key!r}; "
  group = config
  for part in found:
    group = group[part]
  prefix = "".join(f"{part}." for part in found)
  rest = key[len(prefix):]
  known = sorted(_dotted_keys(group, "", groups=True))
  same_last = [k for k in known if k.endswith("." + rest)]  # fanouts: sampling.fanouts
  match = same_last[0] if same_last else _close_match(rest, known)
  if match is not None:
    return message + f"did you mean {prefix + match!r}?"
  if not group:
    return message + f"{prefix[:-1]!r} has no keys yet"
  return message + "accepted keys: " + ", ".join(prefix + k for k in group.keys())


def _dotted_keys(config: ml_collections.ConfigDict, prefix: str, groups: bool) -> list[str]:
  """Every dotted key under `config`: the leaves, and the groups too if `groups`."""
  keys = []
  for name in config.keys():
    value = config[name]
    if isinstance(value, ml_collections.ConfigDict):
      if groups or not value:
        keys.append(prefix + name)
      keys.extend(_dotted_keys(value, f"{prefix}{name}.", groups))
    else:
      keys.append(prefix + name)
  return keys


class _BadValue(Exception):
  pass


def _parse(key: str, text: str, current: Any, field_type: type) -> Any:
  try:
    return _convert(text, current, field_type)
  except _BadValue:
    raise ConfigError(f"config key {key!r} takes {_describe(current, field_type)}; "
                      f"got {text!r}") from None


def _convert(text: str, current: Any, field_type: type) -> Any:
  """`text` as a value of `field_type`; `current` (of that type, or None) gives element types."""
  if field_type is bool:
    word = text.strip().lower()
    if word in _TRUE or word in _FALSE:
      return word in _TRUE
    raise _BadValue
  if field_type is int:
    try:
      return int(text.strip())
    except ValueError:
      raise _BadValue from None
  if field_type is float:
    try:
      return float(text.strip())
    except ValueError:
      raise _BadValue from None
  if field_type is str:
    return text
  if field_type is type(None):
    return _literal_or_text(text)
  if field_type in (tuple, list):
    return _convert_sequence(text, current, field_type)
  try:
    value = ast.literal_eval(text.strip())
  except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
    raise _BadValue from None
  if not isinstance(value, field_type):
    raise _BadValue
  return value


def _literal_or_text(text: str) -> Any:
  try:
    return ast.literal_eval(text.strip())
  except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
    return text


def _element_template(current: Any) -> Any:
  """One element standing for all of `current`'s, or None if they are mixed or absent."""
  if not current:
    return None
  types = {type(x) for x in current}
  if len(types) == 1:
    return current[0]
  if types == {int, float}:
    return 0.0
  return None


def _convert_sequence(text: str, current: Any, field_type: type) -> Any:
  template = _element_template(current)
  stripped = text.strip()
  if stripped[:1] in ("(", "["):
    try:
      value = ast.literal_eval(stripped)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
      raise _BadValue from None
    return _coerce(value, field_type(current or ()))
  if not stripped:
    return field_type()
  pieces = [piece.strip() for piece in stripped.split(",")]
  if pieces[-1] == "" and len(pieces) > 1:  # "25," is (25,)
    pieces.pop()
  if template is None:
    return field_type(_literal_or_text(piece) for piece in pieces)
  if isinstance(template, (tuple, list)):
    raise _BadValue  # nested sequences take the literal form
  return field_type(_convert(piece, template, type(template)) for piece in pieces)


def _coerce(value: Any, template: Any) -> Any:
  """The python literal `value` in the type of `template` (None: anything)."""
  if template is None:
    return value
  if isinstance(template, bool):
    if isinstance(value, bool):
      return value
  elif isinstance(template, int):
    if isinstance(value, int) and not isinstance(value, bool):
      return value
  elif isinstance(template, float):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return float(value)
  elif isinstance(template, str):
    if isinstance(value, str):
      return value
  elif isinstance(template, (tuple, list)):
    if isinstance(value, (tuple, list)):
      element = _element_template(template)
      return type(template)(_coerce(x, element) for x in value)
  elif isinstance(value, type(template)):
    return value
  raise _BadValue


def _describe(current: Any, field_type: type) -> str:
  """'an int', 'a tuple of ints', ... for the messages."""
  if field_type is bool:
    return f"a bool ({_BOOL_WORDS})"
  if field_type is int:
    return "an int"
  if field_type is float:
    return "a float"
  if field_type in (tuple, list):
    template = _element_template(current)
    name = field_type.__name__
    if template is None:
      return f"a {name}"
    return f"a {name} of {_PLURALS.get(type(template), type(template).__name__ + 's')}"
  name = field_type.__name__
  return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


# ---------------------------------------------------------------------------------- show config

def config_lines(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """`key = value` for every key (dotted, sorted), the value as its repr; an empty group shows
  as `{}`."""
  lines = []
  for name in config.keys():
    value = config[name]
    if isinstance(value, ml_collections.ConfigDict):
      if value:
        lines.extend(config_lines(value, f"{prefix}{name}."))
      else:
        lines.append(f"{prefix}{name} = {{}}")
    else:
      lines.append(f"{prefix}{name} = {value!r}")
  return lines
