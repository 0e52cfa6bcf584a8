"""Batch launches (`./launch.sh slurm|tpu|gke`, experiments/launch.py) and cluster detection
(dl_jax/engine/cluster.py): the generated SLURM script runs under bash with stand-in `srun` and
`scontrol` (SIGTERM checkpoints and requeues), the gcloud commands parse under the real gcloud
where it is installed, every generated option is one the tool has, and bad values are one
`error:` line."""

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time

import jax
import pytest

from dl_jax.engine import cluster, workdir
from dl_jax.errors import CheckpointError, ConfigError
from experiments import launch
from tests.conftest import ROOT, run

# The options of sbatch, gcloud's tpu-vm ssh/scp and xpk workload create that the launcher may
# write (from their manuals): a misspelt option in a generated command fails here.
SBATCH_OPTIONS = {"job-name", "nodes", "ntasks-per-node", "gpus-per-node", "cpus-per-task",
                  "time", "partition", "account", "output", "open-mode", "requeue", "signal"}
XPK_OPTIONS = {"--cluster", "--workload", "--tpu-type", "--num-slices", "--device-type",
               "--num-nodes", "--zone", "--project", "--base-docker-image", "--script-dir",
               "--max-restarts", "--command"}
FLAGS = ["--config.num_epochs=3", "--config.model_kwargs.widths=(8, 16)"]  # one with a space


def launcher(*args: str) -> subprocess.CompletedProcess:
  return run(["./launch.sh", *args])


def slurm_script(*options: str) -> str:
  out = launcher("slurm", "mnist_cnn", "--dry-run", *options, *FLAGS)
  assert out.returncode == 0, out.stderr
  return out.stdout


def experiment_args(command: str) -> list[str]:
  """The words after `-m experiments.main` of a shell command line."""
  words = shlex.split(command)
  return words[words.index("experiments.main") + 1:]


def expected_args(workdir="runs/mnist_cnn") -> list[str]:
  return ["--config=experiments/configs/mnist_cnn.py", f"--workdir={workdir}", "--multihost",
          *FLAGS]


# ------------------------------------------------------------------------------------------ SLURM

def test_slurm_script_one_process_per_gpu_requeue_and_the_experiment_flags():
  script = slurm_script("--nodes=2", "--gpus-per-node=4", "--partition=gpu", "--account=lab",
                        "--time=2-00:00:00", "--signal-s=120")
  assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
  directives = dict(line[len("#SBATCH --"):].partition("=")[::2] for line in script.splitlines()
                    if line.startswith("#SBATCH"))
  assert set(directives) <= SBATCH_OPTIONS, set(directives) - SBATCH_OPTIONS
  assert directives["nodes"] == "2" and directives["ntasks-per-node"] == "4"
  assert directives["gpus-per-node"] == "4" and directives["signal"] == "B:TERM@120"
  assert "requeue" in directives and directives["time"] == "2-00:00:00"
  assert directives["output"] == "runs/mnist_cnn/launch/slurm-%j.out"
  step = next(line for line in script.splitlines() if "experiments.main" in line)
  assert step.startswith("srun --kill-on-bad-exit=1 ")
  assert experiment_args(step.rstrip(" &")) == expected_args()
  assert "./launch.sh setup --accelerator=cuda12" in script


def test_slurm_cpu_nodes_run_tasks_per_node_without_gpus():
  script = slurm_script("--gpus-per-node=0", "--tasks-per-node=2", "--workdir=/shared/run1")
  assert "#SBATCH --ntasks-per-node=2" in script and "gpus-per-node" not in script
  assert "--accelerator=cpu" in script
  step = next(line for line in script.splitlines() if "experiments.main" in line)
  assert experiment_args(step.rstrip(" &")) == expected_args("/shared/run1")


STAND_IN_SRUN = """#!/bin/bash
{ printf srun; printf ' %q' "$@"; echo; } >> "$LOG"
[[ "$*" == *"launch.sh setup"* ]] && exit 0
echo $$ > "$LOG.step"
trap 'echo "experiment: SIGTERM, saved" >> "$LOG"; exit 0' TERM
echo "experiment: running" >> "$LOG"
while true; do sleep 0.05; done
"""


def test_slurm_script_on_sigterm_stops_the_step_then_requeues_the_job(tmp_path):
  """The script under bash with stand-ins for srun, scancel and scontrol: SIGTERM to the batch
  shell (what --signal=B:TERM sends) is passed to the running step's tasks with scancel (a
  signalled srun would end the step), which save and exit, then the job is requeued.
  tests/test_slurm.py does the same against a real SLURM cluster."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "srun").write_text(STAND_IN_SRUN)
  (bin_dir / "scontrol").write_text('#!/bin/bash\necho "scontrol $*" >> "$LOG"\n')
  (bin_dir / "scancel").write_text('#!/bin/bash\necho "scancel $*" >> "$LOG"\n'
                                   'kill -TERM "$(cat "$LOG.step")"\n')
  for tool in ("srun", "scontrol", "scancel"):
    (bin_dir / tool).chmod(0o755)
  log = tmp_path / "log"
  env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log),
         "SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "2", "DL_JAX_VENV": str(tmp_path / "v")}
  job = subprocess.Popen(["bash", "-c", slurm_script()], env=env, cwd=tmp_path)
  deadline = time.time() + 30
  while "experiment: running" not in (log.read_text() if log.exists() else ""):
    assert job.poll() is None and time.time() < deadline
    time.sleep(0.02)
  job.send_signal(signal.SIGTERM)
  assert job.wait(timeout=30) == 0
  lines = log.read_text().splitlines()
  assert lines[0] == ("srun --ntasks-per-node=1 --ntasks=2 ./launch.sh setup "
                      "--accelerator=cuda12")
  assert experiment_args(lines[1]) == expected_args()
  assert lines[1].startswith(f"srun --kill-on-bad-exit=1 {tmp_path / 'v'}/bin/python -m ")
  assert lines[2:] == ["experiment: running", "scancel --signal=TERM 4242",
                       "experiment: SIGTERM, saved", "scontrol requeue 4242"]


def test_an_unknown_backend_is_one_error_line():
  out = run([sys.executable, "-m", "experiments.launch", "cluster", "mnist_cnn"])
  assert out.returncode == 2
  assert out.stderr == "error: unknown backend 'cluster'; accepted: slurm, tpu, gke\n"


def test_slurm_without_sbatch_says_so(tmp_path):
  out = subprocess.run([sys.executable, "-m", "experiments.launch", "slurm", "mnist_cnn",
                        f"--workdir={tmp_path / 'w'}"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PATH": str(tmp_path)})  # nothing on PATH
  assert out.returncode == 2 and out.stderr.startswith("error: sbatch is not on PATH")
  assert not (tmp_path / "w").exists()


def test_slurm_workdir_that_cannot_be_written_is_one_error_line(tmp_path):
  (tmp_path / "bin").mkdir()
  (tmp_path / "bin" / "sbatch").write_text("#!/bin/sh\necho submitted\n")
  (tmp_path / "bin" / "sbatch").chmod(0o755)
  (tmp_path / "a_file").write_text("")
  env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
  for run_dir, ok in ((tmp_path / "a_file" / "w", False), (tmp_path / "w", True)):
    out = subprocess.run([sys.executable, "-m", "experiments.launch", "slurm", "mnist_cnn",
                          f"--workdir={run_dir}"], cwd=ROOT, capture_output=True, text=True,
                         env=env)
    if ok:  # the negative control: a writable workdir gets its script, and sbatch is called
      assert out.returncode == 0 and out.stdout == "submitted\n", out.stderr
      assert (run_dir / launch.LAUNCH_SUBDIR / "job.sbatch").is_file()
    else:
      assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
      assert out.stderr.startswith(f"error: --workdir='{run_dir}': ") and "cannot be written" \
          in out.stderr


def test_a_workdir_holding_only_the_launch_files_takes_its_first_run(tmp_path):
  (tmp_path / launch.LAUNCH_SUBDIR).mkdir()
  (tmp_path / launch.LAUNCH_SUBDIR / "job.sbatch").write_text("#!/bin/bash\n")
  workdir.mark(workdir.prepare_workdir(str(tmp_path), {"a": 1}), {"a": 1})
  assert (tmp_path / workdir.RUN_MARKER).exists()
  other = tmp_path / "second"  # the negative control: any other file is refused
  other.mkdir()
  (other / "notes.txt").write_text("")
  with pytest.raises(CheckpointError, match="holds no dl_jax run"):
    workdir.prepare_workdir(str(other), {"a": 1})
  assert launch.LAUNCH_SUBDIR == workdir.LAUNCH_SUBDIR


# ---------------------------------------------------------------------------------- TPU and GKE

SHARED = "/mnt/runs/cnn"  # the workdir of TPU and GKE launches: storage every host mounts


def tpu_commands(*options: str) -> list[list[str]]:
  out = launcher("tpu", "mnist_cnn", "--tpu=pod-1", "--zone=us-central2-b", "--dry-run",
                 f"--workdir={SHARED}", *options, *FLAGS)
  assert out.returncode == 0, out.stderr
  return [shlex.split(line) for line in out.stdout.splitlines()]


def test_tpu_commands_copy_set_up_and_run_on_every_worker():
  pack, copy, setup, start = tpu_commands("--project=my-proj")
  assert pack[:2] == ["bash", "-c"] and "git ls-files" in pack[2]
  assert copy[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  for command in (copy, setup, start):
    assert "--worker=all" in command and command[command.index("--zone") + 1] == "us-central2-b"
    assert command[command.index("--project") + 1] == "my-proj"
  assert setup[-1].endswith("./launch.sh setup --accelerator=tpu")
  assert start[-1].startswith("cd ~/dl_jax && .venv/bin/python -m experiments.main")
  assert experiment_args(start[-1]) == expected_args(SHARED)


@pytest.mark.skipif(not shutil.which("gcloud"), reason="gcloud is not installed here")
def test_tpu_commands_parse_under_the_real_gcloud(tmp_path):
  """Without credentials gcloud stops after parsing its arguments (exit 1, 'no active
  account'); a misspelt option or a missing value is a usage error (exit 2)."""
  env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
         "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
  for command in tpu_commands()[1:]:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "active account" in done.stderr, (command, done.stderr)
  broken = [*tpu_commands()[2], "--wrker=all"]  # the negative control
  done = subprocess.run(broken, env=env, capture_output=True, text=True, timeout=60)
  assert done.returncode == 2 and "unrecognized arguments: --wrker=all" in done.stderr


def test_the_project_archive_holds_the_code_and_not_the_environment(tmp_path):
  archive = tmp_path / "p.tar.gz"
  subprocess.run(launch.archive_project(str(archive)), check=True)
  with tarfile.open(archive) as tar:
    names = set(tar.getnames())
  assert {"launch.sh", "dl_jax/engine/loop.py", "requirements/lock.txt"} <= names
  assert not [n for n in names if n.startswith((".venv/", "runs/"))]


@pytest.mark.parametrize("hardware, accelerator", [
    (("--tpu-type=v5litepod-16", "--num-slices=2"), "tpu"),
    (("--device-type=h100-80gb-8", "--num-nodes=4"), "cuda12")])
def test_gke_xpk_command(hardware, accelerator):
  out = launcher("gke", "mnist_cnn", "--cluster=c1", "--zone=us-east5-b", "--dry-run",
                 f"--workdir={SHARED}", *hardware, *FLAGS)
  assert out.returncode == 0, out.stderr
  (command,) = [shlex.split(line) for line in out.stdout.splitlines()]
  assert command[:3] == ["xpk", "workload", "create"]
  options = [w for w in command[3:] if w.startswith("--")]
  assert set(options) <= XPK_OPTIONS, set(options) - XPK_OPTIONS
  assert command[command.index("--workload") + 1] == "dl-jax-mnist-cnn"
  run_line = command[command.index("--command") + 1]
  assert run_line.startswith(f"./launch.sh setup --accelerator={accelerator} && ")
  assert experiment_args(run_line) == expected_args(SHARED)


@pytest.mark.parametrize("args, message", [
    (("slurm", "mnist_transformer"), "unknown experiment 'mnist_transformer'; accepted: "),
    (("slurm", "mnist_cnn", "--nodes=0"), "argument --nodes: --nodes='0' is not accepted"),
    (("slurm", "mnist_cnn", "--time=soon"), "argument --time: --time='soon' is not a SLURM"),
    (("slurm", "mnist_cnn", "--partition=a b"), "argument --partition: --partition='a b' is"),
    (("slurm", "mnist_cnn", "--tasks-per-node=2"), "--tasks-per-node is for nodes without GPUs"),
    (("slurm", "mnist_cnn", "extra"), "unexpected argument 'extra'"),
    (("slurm", "mnist_cnn", "--multihost"), "--multihost is added by the launcher"),
    (("tpu", "mnist_cnn", "--zone=z"), "the following arguments are required: --tpu"),
    (("gke", "mnist_cnn", "--cluster=c"), "give exactly one of --tpu-type"),
    (("gke", "mnist_cnn", "--cluster=c", "--tpu-type=v4-8", "--device-type=h100-80gb-8"),
     "give exactly one of --tpu-type"),
    # A workdir on each host's own disk: its checkpoints are lost when the job restarts.
    (("tpu", "mnist_cnn", "--tpu=t", "--zone=z"), "--workdir is required for tpu: a relative"),
    (("gke", "mnist_cnn", "--cluster=c", "--tpu-type=v4-8", "--workdir=runs/cnn"),
     "--workdir='runs/cnn' is not accepted for gke: a relative workdir"),
])
def test_bad_launch_values_are_one_error_line(args, message):
  out = launcher(*args, "--dry-run")
  assert out.returncode == 2, out.stderr
  assert out.stderr.startswith("error: " + message) and out.stderr.count("\n") == 1, out.stderr
  assert out.stdout == ""


# ------------------------------------------------------------------------------ cluster detection

SLURM_STEP = {"SLURM_JOB_ID": "1234", "SLURM_STEP_NODELIST": "gpu[003-005,9],cpu1",
              "SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1"}
TPU_WORKER = {"TPU_WORKER_ID": "2", "TPU_WORKER_HOSTNAMES": "10.0.0.4,10.0.0.5,10.0.0.6,10.0.0.7"}


@pytest.mark.parametrize("environ, expected", [
    (SLURM_STEP, cluster.Cluster("slurm", 5, 8, "gpu003:62674")),  # jax's port from the job id
    ({**SLURM_STEP, "JAX_COORDINATOR_ADDRESS": "127.0.0.1:5000"},
     cluster.Cluster("slurm", 5, 8, "127.0.0.1:5000")),
    (TPU_WORKER, cluster.Cluster("tpu", 2, 4, "10.0.0.4:8476")),
    ({**TPU_WORKER, "MEGASCALE_COORDINATOR_ADDRESS": "10.1.0.2:8080",
      "MEGASCALE_NUM_SLICES": "2", "MEGASCALE_SLICE_ID": "1"},
     cluster.Cluster("tpu_multislice", 6, 8, "10.1.0.2:8476")),
    ({"JOB_COMPLETION_INDEX": "3", "JAX_NUM_PROCESSES": "4",
      "JAX_COORDINATOR_ADDRESS": "job-0.svc:1234"},
     cluster.Cluster("gke_indexed_job", 3, 4, "job-0.svc:1234")),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1",
      **SLURM_STEP}, cluster.Cluster("explicit", 1, 2, "h:1")),
    # The batch step of a SLURM job is not a process of the run: no SLURM_PROCID there.
    ({k: v for k, v in SLURM_STEP.items() if k != "SLURM_PROCID"}, None),
    ({"HOME": "/root"}, None),
])
def test_cluster_detection_from_each_platforms_environment(environ, expected):
  assert cluster.detect(environ) == expected


@pytest.mark.parametrize("environ, message", [
    ({}, "--multihost found no cluster in the environment; accepted: an `srun` step"),
    ({**TPU_WORKER, "TPU_WORKER_ID": "4"}, "TPU_WORKER_ID=4 is outside the 4 workers"),
    ({**SLURM_STEP, "SLURM_NTASKS": "eight"}, "SLURM_NTASKS='eight' is not an integer"),
    ({"JOB_COMPLETION_INDEX": "0"}, "a GKE indexed Job (JOB_COMPLETION_INDEX is set) needs "
                                    "JAX_COORDINATOR_ADDRESS and JAX_NUM_PROCESSES"),
    ({**SLURM_STEP, "SLURM_PROCID": "8"}, "process id 8 is outside 0..7 (slurm)"),
])
def test_bad_cluster_environments_are_refused(environ, message):
  with pytest.raises(ConfigError) as error:
    cluster.initialize(environ)
  assert str(error.value).startswith(message), str(error.value)


@pytest.mark.parametrize("nodes, first", [
    ("node1", "node1"), ("gpu[003-005,9],cpu1", "gpu003"), ("x1,x2", "x1"),
    ("rack[2-3]-n[1-4]", "rack2-n1"), ("a[07]b", "a07b")])
def test_first_host_of_a_slurm_node_list(nodes, first):
  assert cluster.first_slurm_host(nodes) == first


GLOO_RESET = ValueError("UNKNOWN: Gloo AllGather failed: [pair.cc:538] Read error [127.0.0.1]:414:"
                        " Connection reset by peer")


@pytest.mark.parametrize("error, silent, expected", [
    (GLOO_RESET, [1], "process 0: a collective between processes failed (UNKNOWN: Gloo AllGather"
                      " failed"),  # gloo inside orbax's barrier: a ValueError
    (GLOO_RESET, None, "process 0, the coordinator, cannot be reached"),
    (jax.errors.JaxRuntimeError("INTERNAL: all-reduce failed"), [], "every process still answers"),
    (ValueError("a shape mismatch"), [], None),  # not a collective's error: raised as it is
    (OSError("No space left on device"), [1], None),  # even where another process waits
])
def test_a_collective_failure_is_told_apart_from_other_errors(error, silent, expected,
                                                              monkeypatch):
  monkeypatch.setattr(cluster, "unresponsive_processes", lambda: silent)
  message = cluster.collective_failure(error, "runs/x/checkpoints")
  if expected is None:
    assert message is None
  else:
    assert expected in message and message.endswith(
        "the checkpoints in runs/x/checkpoints are intact: run the job again to resume from the "
        "last one"), message


@pytest.mark.parametrize("error, traceback_kept", [
    (jax.errors.JaxRuntimeError("UNAVAILABLE: recvmsg:Connection reset by peer"), False),
    (ValueError("a shape mismatch"), True),  # not a collective's: logged with its traceback
])
def test_a_logged_collective_failure_is_one_line(error, traceback_kept, caplog):
  """orbax's checkpoint threads log a barrier whose peer died with `logging.exception`."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  with cluster.collective_errors_in_one_line():
    try:
      raise error
    except Exception as e:  # pylint: disable=broad-except
      logging.exception("_SignalingThread.run() raised an exception: %s", e)
  logged = caplog.text
  assert str(error) in logged
  assert ("Traceback" in logged) == traceback_kept, logged


class FakeCoordinationService:
  """The key-value store of jax's coordination service."""

  def __init__(self):
    self.store, self.lock = {}, threading.Lock()

  def key_value_set(self, key, value, allow_overwrite=False):
    with self.lock:
      assert allow_overwrite or key not in self.store
      self.store[key] = value

  def key_value_dir_get(self, prefix):
    with self.lock:
      return [(k, v) for k, v in self.store.items() if k.startswith(prefix)]


@pytest.mark.parametrize("peer", ["stops counting", "finishes", "keeps counting"])
def test_peer_watch_reports_a_silent_process_and_no_other(peer, monkeypatch):
  """Process 1 counts up its key for 0.5 s, then stops (dead or hung: reported, no sooner than
  `silent_s` later), marks its run finished (never reported), or goes on counting."""
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  service = FakeCoordinationService()
  monkeypatch.setattr(distributed.global_state, "client", service)
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  reports = []
  monkeypatch.setattr(cluster, "exit_with_failure",
                      lambda line: reports.append((time.monotonic(), line)))
  silent_s, every_s = 1.0, 0.05
  with cluster.PeerWatch("ckpt", silent_s=silent_s, every_s=every_s) as watch:
    start = time.monotonic()
    while time.monotonic() - start < 2.5:
      if time.monotonic() - start < 0.5 or peer == "keeps counting":
        service.key_value_set("dl_jax/alive/1", str(time.monotonic()), allow_overwrite=True)
        last_count = time.monotonic()
      elif peer == "finishes":
        service.key_value_set("dl_jax/finished/1", "1", allow_overwrite=True)
      time.sleep(0.01)
    watch.stop()
  if peer != "stops counting":
    assert not reports, reports
    return
  assert reports, "a process that stopped counting was not reported"
  first, line = reports[0]
  assert first - last_count >= silent_s - every_s, first - last_count
  assert line == ("process 0: no sign of life from another process for 1 s; process 1 of 2 does "
                  "not answer (see its log); the checkpoints in ckpt are intact: run the job "
                  "again to resume from the last one")


def test_multihost_without_a_cluster_is_one_error_line_before_any_work(tmp_path):
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("SLURM_", "TPU_", "MEGASCALE_", "JAX_", "JOB_COMPLETION"))}
  out = subprocess.run([sys.executable, "-m", "experiments.main",
                        "--config=experiments/configs/mnist_mlp.py",
                        f"--workdir={tmp_path / 'w'}", "--multihost"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 2
  errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "--multihost found no cluster" in errors[0], errors
  assert "Traceback" not in out.stderr and not (tmp_path / "w").exists()


# ------------------------------------------------------------------------------- CPU memory

# A jitted call whose temporaries (a 64 MiB cumulative sum, about 200 MiB of buffers) are freed
# and taken again every call; prints the median page faults of a call once the process is warm
# (the heap grows over the first calls, and now and then later, as the threads' buffers come and
# go in different orders).
PAGE_FAULT_PROBE = """
import resource, statistics
import jax, jax.numpy as jnp
x = jnp.ones((4096, 4096), jnp.float32)
f = jax.jit(lambda x: jnp.sum(jnp.cumsum(x, axis=0) * x[::-1]))
faults = []
for _ in range(30):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(statistics.median(faults[15:]))
"""


def _environ(**extra: str) -> dict:
  """This process's environment without a GLIBC_TUNABLES (as a fresh shell has), plus `extra`."""
  return {**{k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}, **extra}


def _launch_malloc_setting() -> str:
  lines = [line for line in (ROOT / "launch.sh").read_text().splitlines()
           if line.startswith("CPU_MALLOC=")]
  assert len(lines) == 1, lines
  return lines[0].split("=", 1)[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_launch_malloc_setting_keeps_a_steps_buffers_mapped():
  def faults_per_call(tunables):
    env = _environ(GLIBC_TUNABLES=tunables) if tunables else _environ()
    out = subprocess.run([sys.executable, "-c", PAGE_FAULT_PROBE], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.split()[-1])
  pages = 64 * 2 ** 20 / os.sysconf("SC_PAGE_SIZE")
  assert faults_per_call(_launch_malloc_setting()) < 0.05 * pages
  assert faults_per_call(None) > 0.5 * pages  # glibc's defaults: the buffer is faulted anew


def test_launch_exports_the_malloc_setting_unless_the_caller_set_one(tmp_path):
  python = tmp_path / "python"  # launch.sh runs `$PYTHON -m experiments.launch` for slurm
  python.write_text('#!/bin/sh\necho "GLIBC_TUNABLES=$GLIBC_TUNABLES"\n')
  python.chmod(0o755)
  for given, expected in ((None, _launch_malloc_setting()), ("glibc.malloc.arena_max=4",
                                                              "glibc.malloc.arena_max=4")):
    env = _environ(PYTHON=str(python), **({"GLIBC_TUNABLES": given} if given else {}))
    out = subprocess.run(["./launch.sh", "slurm", "mnist_cnn"], cwd=ROOT, capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == f"GLIBC_TUNABLES={expected}", out
