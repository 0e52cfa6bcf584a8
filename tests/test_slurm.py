"""The SLURM launcher against a real cluster: `./launch.sh slurm` submits the CNN of section 5.3.1
to a throwaway SLURM cluster of two emulated nodes on this machine (`tests/slurm_cluster.py`),
one process per node, one CPU device per process.

Checked: the 2-process job trains the parameters a 1-process run with 2 devices trains; a SIGTERM
to the batch script (what `#SBATCH --signal=B:TERM@S` sends before the time limit or a
preemption) makes both processes save the same step, the job requeues itself and the resumed run
ends bitwise where the uninterrupted job does; a killed process fails the job within seconds,
the error naming it, the checkpoints intact.

Without the Debian packages (slurmctld slurmd slurm-client munge) or root, these tests skip;
with DL_JAX_REQUIRE_SLURM=1 (CI installs the packages and sets it) they fail instead.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from tests import slurm_cluster
from tests.conftest import ROOT
from tests.test_multiprocess import (FLAGS, PROCESS_COUNT_ATOL, STEPS, assert_bitwise_equal,
                                     final_parameters, free_port, max_difference,
                                     run_one_process_two_devices)

JOB_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
  missing = slurm_cluster.missing_programs()
  reason = (f"SLURM is not installed ({', '.join(missing)} missing; Debian: apt-get install "
            "--no-install-recommends slurmctld slurmd slurm-client munge)" if missing else
            "the throwaway SLURM cluster runs its daemons as root" if os.geteuid() else None)
  if reason:
    if os.environ.get("DL_JAX_REQUIRE_SLURM") == "1":
      pytest.fail(f"DL_JAX_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)
  with slurm_cluster.local_cluster(tmp_path_factory.mktemp("slurm")) as c:
    yield c


def submit(cluster, workdir, *flags: str) -> str:
  """`./launch.sh slurm` on two nodes, the venv of this test run on both; returns the job id."""
  env = {**cluster.env, "DL_JAX_VENV": sys.prefix, "JAX_PLATFORMS": "cpu",
         # Emulated node names do not resolve: the coordinator is given explicitly.
         "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}"}
  out = subprocess.run(
      ["./launch.sh", "slurm", "mnist_cnn", "--nodes=2", "--gpus-per-node=0",
       "--tasks-per-node=1", "--cpus-per-task=1", "--time=10", "--signal-s=60",
       f"--workdir={workdir}", *FLAGS, *flags],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
  assert out.returncode == 0, out.stderr
  job = re.fullmatch(r"Submitted batch job (\d+)", out.stdout.strip())
  assert job, out.stdout
  return job.group(1)


def wait_until(predicate, timeout_s: float, what: str):
  deadline = time.time() + timeout_s
  while not predicate():
    assert time.time() < deadline, f"timed out waiting for {what}"
    time.sleep(0.2)


def training_processes(workdir) -> list[int]:
  """The job's two python processes (not srun, whose command line is the same)."""
  pids = [int(p) for p in subprocess.run(["pgrep", "-f", "--", f"--workdir={workdir} --multihost"],
                                         capture_output=True, text=True).stdout.split()
          if pathlib.Path(f"/proc/{p}/comm").read_text().strip() != "srun"]
  assert len(pids) == 2, pids
  return pids


def sigterm_pending(pid: int) -> bool:
  status = pathlib.Path(f"/proc/{pid}/status").read_text()
  pending = [int(line.split()[1], 16) for line in status.splitlines()
             if line.startswith(("SigPnd:", "ShdPnd:"))]
  return any(mask & (1 << (signal.SIGTERM - 1)) for mask in pending)


def job_log(workdir, job: str) -> str:
  return (workdir / "launch" / f"slurm-{job}.out").read_text(errors="replace")


def wait_for_job(cluster, workdir, job: str) -> str:
  wait_until(lambda: cluster.job_state(job) == "", JOB_TIMEOUT_S, f"job {job} to end")
  return job_log(workdir, job)


@pytest.fixture(scope="module")
def straight_job(cluster, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("slurm_straight") / "run"
  job = submit(cluster, workdir)
  log = wait_for_job(cluster, workdir, job)
  assert (workdir / "results.json").exists(), log[-3000:]
  return workdir


def test_a_two_node_job_trains_what_one_process_with_two_devices_trains(straight_job, tmp_path):
  results = json.loads((straight_job / "results.json").read_text())
  assert (results["num_processes"], results["num_devices"], results["steps"]) == (2, 2, STEPS)
  assert (straight_job / "launch" / "job.sbatch").exists()
  one = tmp_path / "one_process"
  run_one_process_two_devices(one)
  difference = max_difference(final_parameters(straight_job), final_parameters(one))
  print(f"SLURM job, 2 nodes: max |parameter difference| against 1 process with 2 devices: "
        f"{difference:.2e}")
  assert difference <= PROCESS_COUNT_ATOL


def test_the_time_limit_signal_saves_both_processes_at_one_step_requeues_and_resumes_bitwise(
    cluster, straight_job, tmp_path):
  workdir = tmp_path / "run"
  job = submit(cluster, workdir)
  wait_until(lambda: (workdir / "checkpoints" / "16").is_dir(), JOB_TIMEOUT_S, "checkpoint 16")
  shell = cluster.batch_shell_pid(job)
  assert shell, "the batch script's process was not found"
  # The 32 steps left take about a second, as long as the signal takes to go from the batch
  # script through scancel and srun: the processes are held still until it has reached both.
  pids = training_processes(workdir)
  for pid in pids:
    os.kill(pid, signal.SIGSTOP)
  os.kill(shell, signal.SIGTERM)  # what --signal=B:TERM@S sends: the batch shell alone
  wait_until(lambda: all(sigterm_pending(p) for p in pids), 20, "SIGTERM to reach both processes")
  for pid in pids:
    os.kill(pid, signal.SIGCONT)
  wait_until(lambda: cluster.job_state(job) == "PENDING", 60, "the job to be requeued")
  # slurmctld holds a requeued job for about two minutes (BeginTime): release it sooner. slurmd
  # revoked the first run's credential (to the second) before the requeue; a new credential made
  # within that same second counts as revoked too ("Killing non-startable batch job: Job
  # credential revoked"), so release the job only once that second has passed.
  time.sleep(2)
  cluster.client("scontrol", "update", f"JobId={job}", "StartTime=now")
  # squeue can briefly list no job while it is requeued: wait for the second run's results.
  wait_until(lambda: (workdir / "results.json").exists(), JOB_TIMEOUT_S, "the requeued run")
  log = wait_for_job(cluster, workdir, job)
  assert f"dl_jax: SIGTERM: checkpointing and requeueing job {job}" in log
  saved = re.findall(r"SIGTERM: saved checkpoint at step (\d+)", log)
  assert len(saved) == 2 and saved[0] == saved[1], saved  # both processes, one step
  step = int(saved[0])
  print(f"SLURM job: SIGTERM to the batch script after checkpoint 16: both processes saved "
        f"step {step}, the job was requeued and resumed")
  assert log.count(f"resumed from {workdir / 'checkpoints' / str(step)} at step {step}") == 2
  assert_bitwise_equal(final_parameters(straight_job), final_parameters(workdir))


def slurm_rank(pid: int) -> int:
  environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode(
      errors="replace")
  return int(re.search(r"SLURM_PROCID=(\d+)", environ).group(1))


def test_a_killed_process_fails_the_job_within_seconds_naming_it(cluster, tmp_path):
  """The process killed is process 0, which hosts jax's coordination service: the survivor's
  checkpoint threads lose it mid-barrier (logged in one line) and jax's client aborts the survivor.
  A killed process other than the coordinator: tests/test_multiprocess.py."""
  workdir = tmp_path / "run"
  job = submit(cluster, workdir)
  wait_until(lambda: (workdir / "checkpoints" / "16").is_dir(), JOB_TIMEOUT_S, "checkpoint 16")
  rank = 0
  victim = next(pid for pid in training_processes(workdir) if slurm_rank(pid) == rank)
  os.kill(victim, signal.SIGKILL)
  killed = time.time()
  log = wait_for_job(cluster, workdir, job)
  seconds = time.time() - killed
  print(f"SLURM job: process {rank} killed, the job ended {seconds:.1f} s later")
  assert seconds < 30, log[-3000:]
  # srun ends the step when a task dies (--kill-on-bad-exit) and names it; a survivor that
  # reached its next collective first says which process stopped answering.
  assert re.search(rf"srun: error: node\d: task {rank}: Killed", log), log[-3000:]
  assert "Traceback" not in log
  assert not (workdir / "results.json").exists()
  saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and saved[-1] >= 16
  from tests.test_multiprocess import restore_here  # pylint: disable=g-import-not-at-top
  restore_here(workdir / "checkpoints" / str(saved[-1]) / "default")
