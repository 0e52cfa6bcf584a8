"""`python -m dl_jax.symmetry`: check the declared symmetries of your own model from the shell.

    python -m dl_jax.symmetry check examples/own_layer.py:deepsets
    python -m dl_jax.symmetry check my_pkg.layers:make_layer --input-shape 2,7,5 \\
        --symmetry permutation_equivariant [--symmetry ...] [--dtype float64] [--samples 4] \\
        [--seed 0] [--param stride=2] [--json report.json]
    python -m dl_jax.symmetry list
    python -m dl_jax.symmetry audit [--dtype float32] [--samples 2] [--only SUBSTRING] \\
        [--json report.json] [--markdown]

`check` takes MODULE:FACTORY, MODULE a dotted module importable from the current directory or a
path to a .py file, FACTORY a function returning a flax module, (apply_fn, variables) or a
function, or a `SymmetrySpec`. A factory declared with `@dl_jax.symmetry.declare` brings its
symmetries and input; flags override them. It prints one row per group element (symmetry, dtype,
mode, element, max and mean error, tolerance, pass/fail), the vacuity line (the checks on the
automatic broken variants, `dl_jax.symmetry.breaking`, which must fail) and a summary.

`audit` checks dl_jax's own declarations (`suite.registry_specs`: the registered models on
arrays and the layers of `dl_jax.symmetry.layers`, section 4.4): each declared symmetry jitted
in one dtype, and its automatic broken variant. One row per (entry, symmetry): the declared
check's max error (must pass), the broken variant's (must FAIL), the tolerance (atol, scaled by
the output's magnitude where it exceeds 1, / rtol) and the breaker; `--markdown` prints a
markdown table, `--only` keeps the entries whose name contains SUBSTRING. Progress on stderr.

Exit status: 0 when every check passes and none is vacuous, 1 otherwise (`audit` names the
offending entries last), 2 with one line `error: ...` for bad input (unknown symmetry, bad
shape, module or factory not found, ...).
"""

import argparse
import dataclasses
import difflib
import importlib
import importlib.util
import json
import os
import pathlib
import sys
import time

from dl_jax.errors import ConfigError, DlJaxError


class _Parser(argparse.ArgumentParser):
  """argparse, but a usage error is one `error: ...` line and exit status 2."""

  def error(self, message):
    raise ConfigError(message)


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="python -m dl_jax.symmetry",
                   description="Check the declared symmetries of a model (chapter 4).")
  commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
  c = commands.add_parser("check", help="check a model's symmetries and their broken variants")
  c.add_argument("target", help="MODULE:FACTORY, MODULE dotted or a path to a .py file")
  c.add_argument("--input-shape", help="batched input shape, e.g. 2,7,5")
  c.add_argument("--symmetry", action="append",
                 help="a name of `python -m dl_jax.symmetry list` (repeatable)")
  c.add_argument("--dtype", action="append", help="float32 and/or float64 (repeatable)")
  c.add_argument("--mode", action="append", choices=("eager", "jit"),
                 help="eager and/or jit (repeatable; default both)")
  c.add_argument("--samples", type=int, help="group elements per check (default 3)")
  c.add_argument("--seed", type=int, default=0, help="seed of variables, input and elements")
  c.add_argument("--param", action="append", default=[],
                 help="a SymmetryParams field, KEY=VALUE (e.g. stride=2, radius=1)")
  c.add_argument("--no-vacuity", action="store_true", help="skip the broken variants")
  c.add_argument("--json", help="also write the report as JSON to this path")
  commands.add_parser("list", help="list the symmetry vocabulary")
  a = commands.add_parser("audit", help="check every registered model and layer of dl_jax and "
                          "their broken variants")
  a.add_argument("--dtype", default="float32", help="float32 or float64 (default float32)")
  a.add_argument("--samples", type=int, default=2, help="group elements per check (default 2)")
  a.add_argument("--seed", type=int, default=0, help="seed of variables and elements")
  a.add_argument("--only", action="append", metavar="SUBSTRING",
                 help="only entries whose name contains SUBSTRING (repeatable), e.g. deepsets")
  a.add_argument("--json", help="also write the results as JSON to this path")
  a.add_argument("--markdown", action="store_true", help="print the table as markdown")
  return parser


def _load(target: str):
  """The object named by MODULE:NAME."""
  module_name, sep, attr = target.rpartition(":")
  if not sep or not module_name or not attr:
    raise ConfigError(f"target {target!r} is not MODULE:FACTORY; accepted: a dotted module or "
                      f"a .py path, then ':' and a name, e.g. examples/own_layer.py:deepsets")
  if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
    path = pathlib.Path(module_name)
    if not path.is_file():
      raise ConfigError(f"module file {module_name!r} not found (from {os.getcwd()})")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
      raise ConfigError(f"module file {module_name!r} is not a Python file; accepted: a .py "
                        f"path or a dotted module")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # its sibling imports
    try:
      spec.loader.exec_module(module)
    except Exception as e:  # the user's module fails on import
      raise ConfigError(f"importing {module_name!r} failed: {type(e).__name__}: {e}") from e
  else:
    sys.path.insert(0, os.getcwd())
    try:
      module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
      raise ConfigError(f"cannot import module {module_name!r} from {os.getcwd()}: {e}; "
                        f"accepted: a dotted module on the path or a .py file") from e
    except Exception as e:
      raise ConfigError(f"importing {module_name!r} failed: {type(e).__name__}: {e}") from e
  if not hasattr(module, attr):
    names = [n for n in dir(module) if not n.startswith("_")]
    close = difflib.get_close_matches(attr, names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"module {module_name!r} has no {attr!r}{hint}")
  return getattr(module, attr)


def _shape(text: str) -> tuple[int, ...]:
  try:
    shape = tuple(int(d) for d in text.split(","))
  except ValueError:
    shape = ()
  if not shape or min(shape) <= 0:
    raise ConfigError(f"--input-shape={text!r} is not a comma-separated list of positive "
                      f"ints, e.g. 2,7,5")
  return shape


def _param(text: str):
  key, sep, value = text.partition("=")
  if not sep:
    raise ConfigError(f"--param={text!r} is not KEY=VALUE, e.g. stride=2")
  if value.lower() == "none":
    return key, None
  try:
    return key, int(value)
  except ValueError:
    return key, value


def _spec(args):
  """The SymmetrySpec the flags describe."""
  from dl_jax.symmetry import suite as suite_lib  # pylint: disable=import-outside-toplevel
  obj = _load(args.target)
  overrides = {}
  if args.input_shape is not None:
    overrides.update(input_shape=_shape(args.input_shape), make_input=None)
  if args.symmetry:
    overrides["symmetries"] = tuple(args.symmetry)
  if args.dtype:
    overrides["dtypes"] = tuple(args.dtype)
  if args.samples is not None:
    overrides["n_samples"] = args.samples
  if args.param:
    overrides["params"] = dict(_param(p) for p in args.param)
  if args.no_vacuity:
    overrides["vacuity"] = False
  try:
    base = suite_lib.spec_of(obj)
  except ConfigError:
    if not callable(obj):
      raise ConfigError(f"{args.target!r} is a {type(obj).__name__}, not callable; accepted: "
                        f"a factory function or a SymmetrySpec") from None
    missing = [f for f, k in (("--input-shape", "input_shape"), ("--symmetry", "symmetries"))
               if k not in overrides]
    if missing:
      raise ConfigError(f"{args.target!r} is not declared with @dl_jax.symmetry.declare: give "
                        f"{' and '.join(missing)}") from None
    return suite_lib.SymmetrySpec(obj, name=args.target.rpartition(":")[2], **overrides)
  return dataclasses.replace(base, **overrides)


def _check(args) -> int:
  import jax  # pylint: disable=import-outside-toplevel
  from dl_jax.symmetry import suite as suite_lib  # pylint: disable=import-outside-toplevel
  spec = _spec(args)
  try:
    suite = suite_lib.run_checks(spec, seed=args.seed,
                                 modes=tuple(dict.fromkeys(args.mode or suite_lib.MODES)))
  except DlJaxError:
    raise
  except Exception as e:  # the model does not take this input, or the action does not
    first = (str(e).strip().splitlines() or [""])[0]
    raise ConfigError(f"checking {spec.name!r} with input {spec.input_shape or 'make_input()'} "
                      f"failed: {type(e).__name__}: {first}") from e
  print(suite.table())
  print(suite.vacuity_line())
  print(suite.summary())
  if args.json:
    _write_json(args.json, {"target": args.target, "seed": args.seed,
                            "input_shape": spec.input_shape, "jax": jax.__version__,
                            **suite.to_json()})
  return 0 if suite.ok else 1


def _write_json(path: str, report: dict) -> None:
  try:
    pathlib.Path(path).write_text(json.dumps(report, indent=1) + "\n")
  except OSError as e:
    raise ConfigError(f"cannot write --json={path!r}: {e.strerror}") from e


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], markdown: bool) -> str:
  if markdown:
    cells = lambda row: "| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
    return "\n".join([cells(header), "|" + "---|" * len(header), *map(cells, rows)])
  widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
  return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()
                   for row in (header, *rows))


def _audit_entry(spec, args) -> list[dict]:
  """The declared check (jit) and broken variant of each symmetry of one registry entry."""
  from dl_jax.symmetry import suite as suite_lib  # pylint: disable=import-outside-toplevel
  out = []
  for s in spec.symmetries:
    name = suite_lib.symmetry_name(s)
    try:
      declared, broken = (suite_lib.run_check(spec, name, args.dtype, mode, seed=args.seed,
                                      n_samples=args.samples) for mode in ("jit", "broken"))
    except Exception as e:  # pylint: disable=broad-except (a broken entry is a finding)
      first = (str(e).strip().splitlines() or [""])[0]
      out.append({"entry": spec.name, "symmetry": name, "error": f"{type(e).__name__}: {first}"})
      continue
    out.append({"entry": spec.name, "symmetry": name, "declared": declared, "broken": broken})
  return out


def _audit(args) -> int:
  import jax  # pylint: disable=import-outside-toplevel
  from dl_jax.symmetry import suite as suite_lib  # pylint: disable=import-outside-toplevel
  if args.dtype not in suite_lib.TOLERANCE:
    raise ConfigError(f"--dtype={args.dtype!r}; accepted: {', '.join(suite_lib.TOLERANCE)}")
  if args.samples < 1:
    raise ConfigError(f"--samples={args.samples} must be a positive int")
  specs = [s for s in suite_lib.registry_specs()
           if not args.only or any(o in s.name for o in args.only)]
  if not specs:
    raise ConfigError(f"--only {' '.join(map(repr, args.only))} matches no entry; entries are "
                      f"model:<name> and layer:<name>, e.g. model:p4cnn, layer:deepsets_linear")
  results, start = [], time.perf_counter()
  for i, spec in enumerate(specs, 1):
    t = time.perf_counter()
    results += _audit_entry(spec, args)
    names = ", ".join(map(suite_lib.symmetry_name, spec.symmetries))
    print(f"[{i}/{len(specs)}] {spec.name} ({names}): {time.perf_counter() - t:.1f} s",
          file=sys.stderr, flush=True)
  header = ("entry", "symmetry", "declared max err", "broken max err", "tol (atol/rtol)",
            "breaker")
  rows, problems = [], []
  for r in results:
    if "error" in r:
      rows.append((r["entry"], r["symmetry"], "error", "error", "", r["error"]))
      problems.append(f"{r['entry']}:{r['symmetry']} ({r['error']})")
      continue
    c, b = r["declared"], r["broken"]
    verdict = lambda x: f"{x.max_abs_error:.1e} {'pass' if x.passed else 'FAIL'}"
    rows.append((r["entry"], r["symmetry"], verdict(c), verdict(b),
                 f"{c.report.atol:.1e}/{c.report.rtol:.0e}", b.breaker))
    if not c.passed:
      problems.append(f"{r['entry']}:{r['symmetry']} (declared check fails)")
    if b.passed:
      problems.append(f"{r['entry']}:{r['symmetry']} (vacuous: its broken variant passes)")
  print(_table(header, rows, args.markdown))
  print()
  checked = [r for r in results if "error" not in r]
  n = len(results)
  line = (f"{len(specs)} entries, {n} symmetries ({args.dtype}, jit, {args.samples} group "
          f"elements each), {time.perf_counter() - start:.0f} s: "
          f"{sum(r['declared'].passed for r in checked)}/{n} declared checks pass, "
          f"{sum(not r['broken'].passed for r in checked)}/{n} broken variants fail")
  if checked:
    low = min(checked, key=lambda r: r["broken"].max_abs_error / r["broken"].report.atol)
    line += (f" (smallest margin: {low['broken'].max_abs_error / low['broken'].report.atol:.0f}x"
             f" its atol, {low['entry']}:{low['symmetry']})")
  print(f"{'FAILED' if problems else 'PASSED'}: {line}")
  if problems:
    print("offending: " + "; ".join(problems))
  if args.json:
    _write_json(args.json, {
        "dtype": args.dtype, "samples": args.samples, "seed": args.seed,
        "jax": jax.__version__, "ok": not problems, "offending": problems,
        "entries": [{"entry": r["entry"], "symmetry": r["symmetry"],
                     "error": r.get("error"),
                     "declared": r["declared"].to_json() if "declared" in r else None,
                     "broken": r["broken"].to_json() if "broken" in r else None}
                    for r in results]})
  return 1 if problems else 0


def _list() -> int:
  from dl_jax.symmetry import vocabulary  # pylint: disable=import-outside-toplevel
  width = max(map(len, vocabulary.SYMMETRIES))
  for s in vocabulary.SYMMETRIES.values():
    print(f"{s.name.ljust(width)}  {s.kind.ljust(11)}  {s.description}")
  return 0


def main(argv: list[str] | None = None) -> int:
  """Runs the command; returns the exit status (bad input: one `error:` line, 2)."""
  try:
    args = _parser().parse_args(argv)
    commands = {"list": lambda args: _list(), "check": _check, "audit": _audit}
    return commands[args.command](args)
  except DlJaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
