"""The README's experiment commands run as written: every `./launch.sh <experiment> [flags]` in it,
in code blocks and inline, names an experiment whose config takes its overrides and passes the
engine's and the task's checks (nothing is loaded or trained)."""

import ast
import pathlib
import re
import shlex

import pytest

from dl_jax import engine
from dl_jax.errors import DlJaxError
from experiments import launch, main, overrides

ROOT = pathlib.Path(__file__).resolve().parents[1]
# launch.sh's own subcommands; everything else after ./launch.sh is an experiment
SUBCOMMANDS = {"test", "bench", "setup", "list", "lock", "slurm", "tpu", "gke", "help"}
# main.py's flags besides the config's
MAIN_FLAGS = {"--workdir", "--multihost", "--nomultihost", "--compilation_cache", "--show_config",
              "--show-config"}
EXPERIMENTS = sorted({p.stem for p in (ROOT / "experiments" / "configs").glob("*.py")}
                     - {"base", "__init__"})
ELLIPSIS = "..."  # "[--config.x=N] ..." in usage lines: not a command


def code_texts(markdown: str) -> list[str]:
  """Fenced and indented code blocks, continuation lines joined, one command per line; and inline
  code spans, which may wrap over lines."""
  texts, fenced = [], False
  lines = markdown.splitlines()
  for line in lines:
    if line.startswith("```"):
      fenced = not fenced
      continue
    if fenced or line.startswith("    "):
      texts.append(line)
  prose = "\n".join(line for line in _outside_fences(lines) if not line.startswith("    "))
  for paragraph in re.split(r"\n\s*\n", prose):  # a stray backtick spoils one paragraph only
    texts += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", paragraph)]
  joined = "\n".join(texts)
  return re.sub(r"\\\n\s*", " ", joined).splitlines()


def _outside_fences(lines):
  fenced = False
  for line in lines:
    if line.startswith("```"):
      fenced = not fenced
    elif not fenced:
      yield line


SHELL_OPERATORS = {";", "&&", "||", "|", "&", "2>&1"}
LAUNCH = r"(?:^|[\s(])\./launch\.sh\s+"


def _launches(text: str, prefix: str = "") -> list[str]:
  """What follows each `./launch.sh <prefix>` in `text`, one command each (several may share a
  line, joined by shell operators)."""
  return [m.group(1) for part in re.split(r"&&|\|\||;", text)
          for m in re.finditer(LAUNCH + prefix + r"(.*)", part)]


def _arguments(command: str) -> list[str] | None:
  """The words of `./launch.sh <command>` up to a comment or a shell operator; None where it is
  not an experiment's command (a subcommand, a usage line with placeholders, prose)."""
  try:
    words = shlex.split(command, comments=True)
  except ValueError:  # an unbalanced quote: part of a longer sentence in prose
    return None
  args = []
  for word in words:
    if word in SHELL_OPERATORS or word.startswith(">"):
      break
    args.append(word)
  if (not args or not re.fullmatch(r"[a-z0-9_]+", args[0]) or args[0] in SUBCOMMANDS
      or any(w == ELLIPSIS or "<" in w or w.startswith("[") for w in args)):
    return None
  return args


def launch_commands(markdown: str) -> list[tuple[str, list[str]]]:
  """(experiment, arguments) of each distinct `./launch.sh <experiment> ...` in `markdown`, and of
  each code span `<experiment> --flag ...` (the tables' short form of the same command)."""
  found = {}
  for text in code_texts(markdown):
    commands = _launches(text)
    if re.match(rf"({'|'.join(EXPERIMENTS)}) --", text):
      commands.append(text)
    for command in commands:
      args = _arguments(command)
      if args is not None:
        found.setdefault(" ".join(args), (args[0], args[1:]))
  return sorted(found.values())


def bench_commands(markdown: str) -> list[tuple[str, list[str]]]:
  """(benchmark, arguments) of each distinct `./launch.sh bench <name> ...` in `markdown`."""
  found = {}
  for text in code_texts(markdown):
    for command in _launches(text, r"bench\s+"):
      try:
        words = shlex.split(command, comments=True)
      except ValueError:
        continue
      words = words[:next((i for i, w in enumerate(words) if w in SHELL_OPERATORS), len(words))]
      if words and re.fullmatch(r"[a-z0-9_]+", words[0]) and ELLIPSIS not in words:
        found.setdefault(" ".join(words), (words[0], words[1:]))
  return sorted(found.values())


def bench_flags(path: pathlib.Path) -> set[str]:
  """The options a benchmark's argparse parser declares (read from its source, not imported)."""
  return {node.args[0].value for node in ast.walk(ast.parse(path.read_text()))
          if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
          and node.args and isinstance(node.args[0], ast.Constant)} | {"-h", "--help"}


def check_bench_command(name: str, args: list[str]) -> None:
  path = ROOT / "bench" / f"{name}.py"
  assert path.is_file(), f"./launch.sh bench {name}: no bench/{name}.py"
  unknown = [a for a in args if a.startswith("-") and a.partition("=")[0] not in bench_flags(path)]
  assert not unknown, f"./launch.sh bench {name}: unknown options {unknown}"


def batch_commands(markdown: str) -> list[tuple[str, list[str]]]:
  """(backend, arguments) of each distinct `./launch.sh slurm|tpu|gke <experiment> ...`, without
  the usage notation's optional `[--flag=X]` words."""
  found = {}
  for text in code_texts(markdown):
    for command in _launches(text, r"(?=(?:slurm|tpu|gke)\s)"):
      backend, _, rest = command.partition(" ")
      try:
        words = shlex.split(rest, comments=True)
      except ValueError:
        continue
      words = [w for w in words if not (w.startswith("[") and w.endswith("]"))]
      if words and ELLIPSIS not in words and not any("<" in w for w in words):
        found.setdefault(" ".join([backend, *words]), (backend, words))
  return sorted(found.values())


def check_batch_command(backend: str, args: list[str]) -> None:
  """The launcher takes its options, and the experiment its flags."""
  try:
    options, flags = launch.parse(backend, args)
  except launch.LaunchError as e:
    raise AssertionError(f"./launch.sh {backend} {' '.join(args)}: error: {e}") from None
  check_command(options.experiment, flags)


def documented_errors(markdown: str) -> list[tuple[str, list[str], str]]:
  """(experiment, arguments, error line) of each `$ ./launch.sh ...` in a code block followed by
  the `error: ...` line it prints."""
  lines = markdown.splitlines()
  pairs = []
  for line, after in zip(lines, lines[1:]):
    if line.startswith("$ ./launch.sh ") and after.startswith("error: "):
      args = _arguments(line[len("$ ./launch.sh "):])
      if args is not None:
        pairs.append((args[0], args[1:], after))
  return pairs


README = (ROOT / "README.md").read_text()
ERRORS = documented_errors(README)
COMMANDS = [c for c in launch_commands(README) if c not in [(n, a) for n, a, _ in ERRORS]]
BENCH_COMMANDS = bench_commands(README)
BATCH_COMMANDS = batch_commands(README)


def test_the_readme_has_experiment_commands_and_names_every_config():
  """The parser finds them (a parser that finds none would pass every command vacuously) and the
  documented errors, and every shipped experiment is named in the README's code."""
  assert (len(COMMANDS) > 50 and len(ERRORS) >= 3 and len(BENCH_COMMANDS) > 5
          and {b for b, _ in BATCH_COMMANDS} == {"slurm", "tpu", "gke"}), (
              COMMANDS, ERRORS, BENCH_COMMANDS, BATCH_COMMANDS)
  code = "\n".join(code_texts(README))
  missing = [name for name in EXPERIMENTS if not re.search(rf"\b{name}\b", code)]
  assert not missing, f"experiments the README does not name: {missing}"


def check_command(name: str, args: list[str]) -> None:
  """Raises AssertionError naming the command where `./launch.sh name args` would stop with an
  error before loading anything."""
  path = ROOT / "experiments" / "configs" / f"{name}.py"
  assert path.is_file(), f"./launch.sh {name}: no experiments/configs/{name}.py"
  try:
    config_path, config_overrides, rest = overrides.split_argv(["main", f"--config={path}",
                                                                *args])
    unknown = [a for a in rest[1:] if a.partition("=")[0] not in MAIN_FLAGS]
    assert not unknown, f"./launch.sh {name}: unknown flags {unknown}"
    config = main.resolve_config(config_path, config_overrides)
    engine.validate(config)
  except DlJaxError as e:
    raise AssertionError(f"./launch.sh {name} {' '.join(args)}: error: {e}") from None


def error_line(name: str, args: list[str]) -> str:
  """The `error: ...` line `./launch.sh name args` prints before loading anything."""
  with pytest.raises(AssertionError) as raised:
    check_command(name, args)
  return str(raised.value).partition(": error: ")[2]


def workdirs(commands) -> set[str]:
  """The run directories the commands write: --workdir, or runs/<experiment>."""
  found = set()
  for name, args in commands:
    given = [a.partition("=")[2] for a in args if a.startswith("--workdir=")]
    found.add((given or [f"runs/{name}"])[-1])
  return found


WORKDIRS = workdirs(COMMANDS)


@pytest.mark.parametrize("name, args", COMMANDS, ids=[" ".join([n, *a])[:90] for n, a in COMMANDS])
def test_readme_command_is_accepted(name, args):
  try:
    check_command(name, args)
  except AssertionError as e:
    # a command that reads the run of another command of the README, not made here
    reads = [a.partition("=")[2] for a in args
             if a.startswith("--config.") and a.partition("=")[2] in WORKDIRS]
    if not ("holds no run" in str(e) and any(f"={path!r}" in str(e) for path in reads)):
      raise


@pytest.mark.parametrize("name, args, printed", ERRORS, ids=[e[2][:60] for e in ERRORS])
def test_readme_error_example_is_what_the_command_prints(name, args, printed):
  assert f"error: {error_line(name, args)}" == printed


@pytest.mark.parametrize("name, args", BENCH_COMMANDS,
                         ids=[" ".join([n, *a])[:90] for n, a in BENCH_COMMANDS])
def test_readme_bench_command_uses_options_its_benchmark_has(name, args):
  check_bench_command(name, args)


@pytest.mark.parametrize("backend, args", BATCH_COMMANDS,
                         ids=[" ".join([b, *a])[:90] for b, a in BATCH_COMMANDS])
def test_readme_batch_launch_is_accepted(backend, args):
  check_batch_command(backend, args)


@pytest.mark.parametrize("command, cause", [
    ("./launch.sh slurm mnist_cnn --nodes=0 --config.num_epochs=3", "--nodes"),
    ("./launch.sh tpu mnist_cnn --tpu=t --zone=z --workdir=/mnt/r --config.num_epoch=3",
     "'num_epoch'"),
    ("./launch.sh gke mnist_cnm --cluster=c --tpu-type=v5 --zone=z", "'mnist_cnm'"),
    ("./launch.sh slurm mnist_cnn --node=2 [--account=A]", "unknown flags ['--node=2']"),
])
def test_a_wrong_batch_launch_is_caught(command, cause):
  (backend, args), = batch_commands(f"    {command}\n")
  with pytest.raises(AssertionError, match=re.escape(cause)):
    check_batch_command(backend, args)


def test_a_wrong_bench_command_is_caught():
  (name, args), = bench_commands("    ./launch.sh bench train_step --model cnn --steps 5\n")
  with pytest.raises(AssertionError, match=r"unknown options \['--model'\]"):
    check_bench_command(name, args)
  with pytest.raises(AssertionError, match="no bench/train_stp.py"):
    check_bench_command("train_stp", [])


@pytest.mark.parametrize("command, cause", [
    ("./launch.sh mnist_cnn --config.num_epoch=3", "unknown config key 'num_epoch'"),
    ("./launch.sh mnist_cnn --config.num_epochs=-1", "num_epochs=-1 must be"),
    ("./launch.sh mnist_cnn --config.model=no_such_model", "unknown model 'no_such_model'"),
    ("./launch.sh mnist_cnn --work_dir=runs/x", "unknown flags ['--work_dir=runs/x']"),
    ("./launch.sh mnist_cnm", "no experiments/configs/mnist_cnm.py"),
    ("./launch.sh mnist_cnn && ./launch.sh mnist_mlp --config.hiden=64", "'hiden'"),
])
def test_a_wrong_command_is_caught(command, cause):
  """The negative control: the same check fails a README that documents a wrong command."""
  found = launch_commands(f"Run\n\n    {command}  # note\n\nor `{command}`.\n")
  assert len(found) == command.count("./launch.sh")  # both of a line's commands
  name, args = found[-1]  # the wrong one (sorted last)
  if name in EXPERIMENTS and args and "&&" not in command:  # and as a table's short form
    short = command.removeprefix("./launch.sh ")
    assert launch_commands(f"| `{short}` | 98 % |\n") == [(name, args)]
  with pytest.raises(AssertionError, match=re.escape(cause)):
    check_command(name, args)
