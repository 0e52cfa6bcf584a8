"""Batch launches of an experiment: a SLURM job, a Cloud TPU VM slice, a GKE workload (xpk).

  ./launch.sh slurm <experiment> [--nodes=1] [--gpus-per-node=8] [--time=24:00:00]
      [--partition=P] [--account=A] [--signal-s=300] [--dry-run] [experiment flags]
  ./launch.sh tpu <experiment> --tpu=NAME --zone=Z --workdir=/SHARED/DIR [--project=P]
      [--dry-run] [experiment flags]
  ./launch.sh gke <experiment> --cluster=C (--tpu-type=v5litepod-16 [--num-slices=1] |
      --device-type=h100-80gb-8 --num-nodes=2) --workdir=/SHARED/DIR [--zone=Z] [--project=P]
      [--docker-image=I] [--dry-run] [experiment flags]

On a TPU slice or GKE the workdir must be an absolute path on storage every host mounts: orbax
writes one checkpoint from all processes, and a restarted job resumes from it.

Every process runs the same command as a single machine would, with `--multihost` added
(`experiments.main`, cluster detection in `dl_jax.engine.cluster`). A SLURM job writes its batch
script to `<workdir>/launch/` and is requeued into the same workdir when preempted or near its
time limit: SLURM sends SIGTERM `--signal-s` seconds early, every process saves a checkpoint at
the same step and exits 0, and the job requeues itself; the same command then resumes. The
standard library alone runs this module, so a login node needs no JAX.
"""

import argparse
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
LAUNCH_SUBDIR = "launch"  # in the workdir: batch scripts and their logs
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # partition, account, cluster, TPU, zone names
SLURM_TIME = re.compile(r"(\d+-)?\d{1,2}(:\d{2}){0,2}|\d+")  # [days-]hours[:minutes[:seconds]]


class LaunchError(Exception):
  """A bad launcher value: reported as one `error:` line, exit 2."""


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    raise LaunchError(message)


def experiments() -> list[str]:
  return sorted(p.stem for p in CONFIGS.glob("*.py") if p.stem not in ("__init__", "base"))


def _name(flag: str):
  def check(value: str) -> str:
    if not NAME.fullmatch(value):
      raise argparse.ArgumentTypeError(f"{flag}={value!r} is not a name; accepted: letters, "
                                       "digits, '.', '_' and '-'")
    return value
  return check


def _count(flag: str, minimum: int):
  def check(value: str) -> int:
    if not re.fullmatch(r"\d+", value) or int(value) < minimum:
      raise argparse.ArgumentTypeError(f"{flag}={value!r} is not accepted; accepted: an integer "
                                       f">= {minimum}")
    return int(value)
  return check


def _slurm_time(value: str) -> str:
  if not SLURM_TIME.fullmatch(value):
    raise argparse.ArgumentTypeError(f"--time={value!r} is not a SLURM time; accepted: minutes, "
                                     "HH:MM:SS or D-HH:MM:SS")
  return value


def parser(backend: str) -> argparse.ArgumentParser:
  p = _Parser(prog=f"./launch.sh {backend}", add_help=False, allow_abbrev=False)
  p.add_argument("experiment")
  p.add_argument("--dry-run", action="store_true")
  p.add_argument("--workdir", default=None)
  if backend == "slurm":
    p.add_argument("--nodes", type=_count("--nodes", 1), default=1)
    p.add_argument("--gpus-per-node", type=_count("--gpus-per-node", 0), default=8)
    p.add_argument("--tasks-per-node", type=_count("--tasks-per-node", 1), default=None,
                   help="processes per node without GPUs (default 1)")
    p.add_argument("--cpus-per-task", type=_count("--cpus-per-task", 1), default=8)
    p.add_argument("--time", type=_slurm_time, default="24:00:00")
    p.add_argument("--partition", type=_name("--partition"), default=None)
    p.add_argument("--account", type=_name("--account"), default=None)
    p.add_argument("--signal-s", type=_count("--signal-s", 10), default=300)
    p.add_argument("--accelerator", choices=("cuda12", "cpu"), default=None)
  elif backend == "tpu":
    p.add_argument("--tpu", type=_name("--tpu"), required=True)
    p.add_argument("--zone", type=_name("--zone"), required=True)
    p.add_argument("--project", type=_name("--project"), default=None)
  elif backend == "gke":
    p.add_argument("--cluster", type=_name("--cluster"), required=True)
    p.add_argument("--workload", type=_name("--workload"), default=None)
    p.add_argument("--tpu-type", type=_name("--tpu-type"), default=None)
    p.add_argument("--num-slices", type=_count("--num-slices", 1), default=1)
    p.add_argument("--device-type", type=_name("--device-type"), default=None)
    p.add_argument("--num-nodes", type=_count("--num-nodes", 1), default=1)
    p.add_argument("--zone", type=_name("--zone"), default=None)
    p.add_argument("--project", type=_name("--project"), default=None)
    p.add_argument("--docker-image", default="python:3.11")
    p.add_argument("--max-restarts", type=_count("--max-restarts", 0), default=3)
  return p


def parse(backend: str, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  """The launcher's options and the experiment's own flags (passed on unchanged)."""
  args, rest = parser(backend).parse_known_args(argv)
  if args.experiment not in experiments():
    raise LaunchError(f"unknown experiment {args.experiment!r}; accepted: "
                      f"{' '.join(experiments())}")
  bad = [a for a in rest if not a.startswith("--")]
  if bad:
    raise LaunchError(f"unexpected argument {bad[0]!r}; experiment flags look like "
                      "--config.key=value")
  if "--multihost" in rest:
    raise LaunchError("--multihost is added by the launcher; accepted: the experiment's flags "
                      "without it")
  if backend == "gke" and (args.tpu_type is None) == (args.device_type is None):
    raise LaunchError("give exactly one of --tpu-type (TPU slices) or --device-type (GPU nodes)")
  if backend == "slurm" and args.gpus_per_node and args.tasks_per_node:
    raise LaunchError("--tasks-per-node is for nodes without GPUs; with --gpus-per-node="
                      f"{args.gpus_per_node} there is one process per GPU")
  if backend in ("tpu", "gke") and not (args.workdir or "").startswith("/"):
    where = "in each container" if backend == "gke" else "on each worker's own disk"
    given = (f"--workdir={args.workdir!r} is not accepted" if args.workdir else
             "--workdir is required")
    raise LaunchError(
        f"{given} for {backend}: a relative workdir (the default: runs/<experiment>) lies "
        f"{where}, where checkpoints are lost when the job restarts or ends and the hosts cannot "
        "share them; accepted: an absolute path on storage that every host mounts (Filestore, "
        "Cloud Storage FUSE, NFS), e.g. --workdir=/mnt/runs/<name>")
  args.workdir = args.workdir or f"runs/{args.experiment}"
  return args, rest


def experiment_command(python: str, args: argparse.Namespace, flags: list[str]) -> str:
  """`python` (shell text: it may hold a variable) running the experiment with --multihost."""
  return python + " " + shlex.join(["-m", "experiments.main",
                                    f"--config=experiments/configs/{args.experiment}.py",
                                    f"--workdir={args.workdir}", "--multihost", *flags])


# ------------------------------------------------------------------------------------------ SLURM

def slurm_script(args: argparse.Namespace, flags: list[str], root: pathlib.Path = ROOT) -> str:
  """The sbatch script: one process per GPU (or `--tasks-per-node` on CPU nodes), the venv set
  up once per node, requeued into the same workdir on preemption."""
  gpus = args.gpus_per_node
  tasks = gpus or args.tasks_per_node or 1
  accelerator = args.accelerator or ("cuda12" if gpus else "cpu")
  logs = f"{args.workdir}/{LAUNCH_SUBDIR}"
  python = '"$DL_JAX_VENV/bin/python"'
  lines = [
      "#!/bin/bash",
      f"#SBATCH --job-name=dl_jax-{args.experiment}",
      f"#SBATCH --nodes={args.nodes}",
      f"#SBATCH --ntasks-per-node={tasks}",
      *([f"#SBATCH --gpus-per-node={gpus}"] if gpus else []),
      f"#SBATCH --cpus-per-task={args.cpus_per_task}",
      f"#SBATCH --time={args.time}",
      *([f"#SBATCH --partition={args.partition}"] if args.partition else []),
      *([f"#SBATCH --account={args.account}"] if args.account else []),
      f"#SBATCH --output={logs}/slurm-%j.out",
      "#SBATCH --open-mode=append",
      "#SBATCH --requeue",
      f"#SBATCH --signal=B:TERM@{args.signal_s}",
      "set -euo pipefail",
      f"cd {shlex.quote(str(root))}",
      "# One virtual environment per node, on its local disk, set up by one task per node.",
      'export DL_JAX_VENV="${DL_JAX_VENV:-${TMPDIR:-/tmp}/dl_jax-venv-$USER}"',
      "srun --ntasks-per-node=1 --ntasks=\"$SLURM_JOB_NUM_NODES\" "
      f"./launch.sh setup --accelerator={accelerator}",
      "# Every process: the experiment with --multihost; one failing process ends the step.",
      f"srun --kill-on-bad-exit=1 {experiment_command(python, args, flags)} &",
      "step=$!",
      "# Preemption or the time limit: SIGTERM reaches this script (B:) --signal-s early; the",
      "# processes save a checkpoint at one step and exit 0; the job goes back to the queue.",
      "# The signal goes to the tasks themselves: srun, signalled, would end the step.",
      "requeue() {",
      '  echo "dl_jax: SIGTERM: checkpointing and requeueing job $SLURM_JOB_ID"',
      '  scancel --signal=TERM "$SLURM_JOB_ID"; wait "$step" || true',
      '  scontrol requeue "$SLURM_JOB_ID"',
      "  exit 0",
      "}",
      "trap requeue TERM",
      'wait "$step"',
  ]
  return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ TPU VMs

def tpu_commands(args: argparse.Namespace, flags: list[str], archive: str) -> list[list[str]]:
  """The big_vision / Flax-examples convention: copy the project to every worker, set up the
  venv with jax[tpu], run the experiment on all workers at once."""
  where = ["--zone", args.zone, "--worker=all", *(["--project", args.project] if args.project
                                                   else [])]
  ssh = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.tpu, *where, "--command"]
  run = ("cd ~/dl_jax && " +
         experiment_command(".venv/bin/python", args, flags))
  return [
      ["gcloud", "compute", "tpus", "tpu-vm", "scp", archive, f"{args.tpu}:~/dl_jax.tar.gz",
       *where],
      [*ssh, "mkdir -p ~/dl_jax && tar xzf ~/dl_jax.tar.gz -C ~/dl_jax && cd ~/dl_jax && "
             "./launch.sh setup --accelerator=tpu"],
      [*ssh, run],
  ]


def archive_project(path: str) -> list[str]:
  """The command that packs the project's tracked and untracked-but-not-ignored files."""
  return ["bash", "-c", f"cd {shlex.quote(str(ROOT))} && git ls-files -co --exclude-standard -z "
          f"| tar czf {shlex.quote(path)} --null -T -"]


# ------------------------------------------------------------------------------------------ GKE

def gke_command(args: argparse.Namespace, flags: list[str]) -> list[str]:
  """`xpk workload create` (as MaxText launches on GKE): xpk builds an image from
  `--docker-image` and this directory, and runs the command on every host."""
  workload = args.workload or f"dl-jax-{args.experiment}".replace("_", "-")[:40]
  accelerator = "tpu" if args.tpu_type else "cuda12"
  command = (f"./launch.sh setup --accelerator={accelerator} && " +
             experiment_command(".venv/bin/python", args, flags))
  hardware = (["--tpu-type", args.tpu_type, "--num-slices", str(args.num_slices)]
              if args.tpu_type else ["--device-type", args.device_type,
                                     "--num-nodes", str(args.num_nodes)])
  return ["xpk", "workload", "create", "--cluster", args.cluster, "--workload", workload,
          *hardware, *(["--zone", args.zone] if args.zone else []),
          *(["--project", args.project] if args.project else []),
          "--base-docker-image", args.docker_image, "--script-dir", str(ROOT),
          "--max-restarts", str(args.max_restarts), "--command", command]


# ------------------------------------------------------------------------------------------ main

def _require(tool: str) -> None:
  if shutil.which(tool) is None:
    raise LaunchError(f"{tool} is not on PATH; run this where {tool} is installed, or add "
                      "--dry-run to print what would run")


def main(argv: list[str]) -> int:
  if not argv or argv[0] not in ("slurm", "tpu", "gke"):
    raise LaunchError(f"unknown backend {argv[0] if argv else ''!r}; accepted: slurm, tpu, gke")
  backend = argv[0]
  args, flags = parse(backend, argv[1:])
  if backend == "slurm":
    script = slurm_script(args, flags)
    if args.dry_run:
      print(script, end="")
      return 0
    _require("sbatch")
    directory = ROOT / args.workdir / LAUNCH_SUBDIR
    path = directory / "job.sbatch"
    try:
      directory.mkdir(parents=True, exist_ok=True)
      path.write_text(script)
    except OSError as e:
      raise LaunchError(f"--workdir={args.workdir!r}: {path} cannot be written ({e.strerror}); "
                        "accepted: a directory that can be created and written") from None
    return subprocess.run(["sbatch", str(path)], cwd=ROOT).returncode
  if backend == "tpu":
    archive = f"/tmp/dl_jax-{args.experiment}.tar.gz"
    commands = [archive_project(archive), *tpu_commands(args, flags, archive)]
  else:
    commands = [gke_command(args, flags)]
  if args.dry_run:
    print("\n".join(shlex.join(c) for c in commands))
    return 0
  _require("gcloud" if backend == "tpu" else "xpk")
  for command in commands:
    done = subprocess.run(command, cwd=ROOT)
    if done.returncode:
      return done.returncode
  return 0


if __name__ == "__main__":
  try:
    sys.exit(main(sys.argv[1:]))
  except LaunchError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
