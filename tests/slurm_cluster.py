"""A throwaway SLURM cluster on this machine: munged, slurmctld and two slurmd emulating two nodes
(their own names and ports on 127.0.0.1), every file in one temporary directory, every daemon
stopped by its pid at the end.

Debian's packages (slurm-wlm 22.05, munge 0.5): `apt-get install --no-install-recommends
slurmctld slurmd slurm-client munge`. The daemons run as root (munged with --force), as on a
CI machine; nothing is started through systemd and nothing outside the directory is written.
"""

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
NODES = ("node1", "node2")


def missing_programs() -> list[str]:
  return [p for p in (*DAEMONS, *CLIENTS) if shutil.which(p) is None]


def free_ports(count: int) -> list[int]:
  sockets = [socket.socket() for _ in range(count)]
  try:
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def slurm_conf(root: pathlib.Path, ports: list[int]) -> str:
  host = socket.gethostname()
  ctld, slurmd, *node_ports = ports
  nodes = "\n".join(
      f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs=1 "
      "RealMemory=1000 State=UNKNOWN" for name, port in zip(NODES, node_ports))
  return f"""ClusterName=dljax
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool-%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerType=sched/builtin
ReturnToService=2
KillWait=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
{nodes}
PartitionName=debug Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
  """The running cluster: `env` holds SLURM_CONF for its clients."""

  def __init__(self, root: pathlib.Path):
    self.root = root
    self.conf = root / "slurm.conf"
    self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

  def client(self, *args: str, check: bool = True) -> str:
    out = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)
    if check and out.returncode:
      raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip()}")
    return out.stdout

  def job_state(self, job: str) -> str:
    """PENDING, RUNNING, ... or "" once the job has left the queue."""
    return self.client("squeue", "-h", "-j", job, "-o", "%T", check=False).strip()

  def batch_shell_pid(self, job: str) -> int | None:
    """The pid of the job's batch script (on this machine, where every node runs)."""
    for spool in self.root.glob("spool-*"):
      script = spool / f"job{int(job):05d}" / "slurm_script"
      for proc in pathlib.Path("/proc").iterdir():
        if proc.name.isdigit():
          try:
            if str(script) in (proc / "cmdline").read_bytes().decode(errors="replace"):
              return int(proc.name)
          except OSError:
            continue
    return None

  def log(self, name: str) -> str:
    path = self.root / "log" / name
    return path.read_text(errors="replace") if path.exists() else ""


def _start(args: list[str], env: dict) -> None:
  out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
  if out.returncode:
    raise RuntimeError(f"{' '.join(args)} failed: {out.stderr.strip() or out.stdout.strip()}")


@contextlib.contextmanager
def local_cluster(root: pathlib.Path, timeout_s: float = 60):
  """Starts the cluster in `root` (created), yields a `Cluster` whose two nodes are idle, and
  stops every daemon at the end."""
  for sub in ("munge", "state", "log", *(f"spool-{n}" for n in NODES)):
    (root / sub).mkdir(parents=True, exist_ok=True)
  (root / "munge").chmod(0o700)
  key = root / "munge" / "munge.key"
  key.write_bytes(os.urandom(1024))
  key.chmod(0o600)
  cluster = Cluster(root)
  cluster.conf.write_text(slurm_conf(root, free_ports(2 + len(NODES))))
  pid_files = [root / "munge" / "munged.pid", root / "slurmctld.pid",
               *(root / f"slurmd-{n}.pid" for n in NODES)]
  try:
    _start(["munged", "--force", f"--key-file={key}", f"--socket={root}/munge/munge.socket",
            f"--pid-file={pid_files[0]}", f"--log-file={root}/log/munged.log",
            f"--seed-file={root}/munge/seed"], cluster.env)
    _start(["slurmctld", "-f", str(cluster.conf)], cluster.env)
    for name in NODES:
      _start(["slurmd", "-f", str(cluster.conf), "-N", name], cluster.env)
    deadline = time.time() + timeout_s
    while cluster.client("sinfo", "-h", "-o", "%t %D", check=False).split() != ["idle", "2"]:
      if time.time() > deadline:
        raise RuntimeError("the nodes did not come up: " + cluster.log("slurmctld.log")[-2000:])
      time.sleep(0.5)
    yield cluster
  finally:
    subprocess.run(["scancel", "--user=root"], env=cluster.env, capture_output=True, timeout=30)
    for pid_file in reversed(pid_files):
      _stop(pid_file)


def _stop(pid_file: pathlib.Path, wait_s: float = 10) -> None:
  try:
    pid = int(pid_file.read_text().split()[0])
  except (OSError, ValueError, IndexError):
    return
  try:
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + wait_s
    while time.time() < deadline:
      os.kill(pid, 0)
      time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
