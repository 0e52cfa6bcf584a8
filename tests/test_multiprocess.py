"""Several processes of one run, as a cluster starts them: the CNN of section 5.3.1 trained by two
processes on this machine (one CPU device each, gloo collectives, the coordinator on 127.0.0.1),
started with `--multihost` and the explicit `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and
`JAX_PROCESS_ID` of `dl_jax.engine.cluster`.

Checked: two processes train the model that one process with two devices trains; a SIGTERM that
reaches one process only makes both save the same step (jax's preemption sync point), and the
resumed run ends bitwise where the uninterrupted one does; a checkpoint of two processes resumes
in one; a killed process fails the job within seconds, naming it, with the checkpoints intact.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dl_jax import engine
from dl_jax.engine import loop
from dl_jax.errors import ConfigError
from experiments import main
from tests.conftest import ROOT, experiment_cmd
from tests.test_tasks import SHORT_RUNS

FLAGS = ("--config.train_subset=2048", "--config.val_size=512", "--config.test_subset=512",
         "--config.num_epochs=3", "--config.checkpoint_every_steps=8",
         "--config.log_every_steps=4", "--config.keep_checkpoints=20")  # 48 steps, 16 per epoch
STEPS = 48
# Two processes and one process with two devices average the same two per-device gradients, but
# through different all-reduce implementations (gloo between processes, XLA's within one): the
# parameters may differ in the last bits, which 48 steps of Adam can grow to this much.
PROCESS_COUNT_ATOL = 1e-5


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def base_env() -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_", "SLURM_"))}
  return {**env, "JAX_PLATFORMS": "cpu"}


def start_processes(workdir, *flags: str, count: int = 2) -> list[subprocess.Popen]:
  port = free_port()
  cmd = [*experiment_cmd("mnist_cnn", workdir, *FLAGS, *flags), "--multihost"]
  return [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env={**base_env(), "JAX_COORDINATOR_ADDRESS":
                                           f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": str(count),
                                           "JAX_PROCESS_ID": str(i)})
          for i in range(count)]


def wait_all(procs, timeout=300) -> list[str]:
  outputs = [p.communicate(timeout=timeout)[0] for p in procs]
  for i, (p, out) in enumerate(zip(procs, outputs)):
    assert p.returncode == 0, f"process {i}:\n{out[-3000:]}"
  return outputs


def run_processes(workdir, *flags: str) -> list[str]:
  return wait_all(start_processes(workdir, *flags))


def run_one_process_two_devices(workdir, *flags: str) -> str:
  env = {**base_env(), "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  out = subprocess.run(experiment_cmd("mnist_cnn", workdir, *FLAGS, *flags), cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stderr


def wait_for_checkpoint(procs, workdir, step: int, timeout=300):
  deadline = time.time() + timeout
  while not (workdir / "checkpoints" / str(step)).is_dir():
    assert all(p.poll() is None for p in procs), "a process ended before the checkpoint"
    assert time.time() < deadline
    time.sleep(0.01)


def restore_here(path: pathlib.Path) -> dict:
  """A checkpoint of any device count, restored onto this process's one device."""
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        checkpointer.metadata(path).item_metadata.tree)
  return checkpointer.restore(path, target)


def final_parameters(workdir: pathlib.Path) -> dict:
  results = json.loads((workdir / "results.json").read_text())
  tree = restore_here(workdir / "checkpoints" / str(results["steps"]) / "default")
  return ocp.tree.to_flat_dict({k: v for k, v in tree.items() if k != "train_time_s"})


def max_difference(a: dict, b: dict) -> float:
  assert a.keys() == b.keys()
  return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))))
             for k in a if np.asarray(a[k]).dtype.kind == "f")


def assert_bitwise_equal(a: dict, b: dict):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=str(key))


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> pathlib.Path:
  workdir = tmp_path_factory.mktemp("two_processes") / "run"
  run_processes(workdir)
  return workdir


def test_two_processes_run_as_one_and_process_0_alone_writes(two_process_run):
  """Each record is written once, by process 0. (That two processes train what one process with
  two devices trains is checked by the resharding test below, and for a SLURM job in
  tests/test_slurm.py.)"""
  results = json.loads((two_process_run / "results.json").read_text())
  assert (results["num_processes"], results["num_devices"], results["steps"]) == (2, 2, STEPS)
  rows = [json.loads(line) for line in
          (two_process_run / "metrics.jsonl").read_text().splitlines()]
  keys = [(r["step"], r["split"]) for r in rows]
  assert len(keys) == len(set(keys)), "a metrics row was written by both processes"
  assert len(list((two_process_run / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_sigterm_to_one_process_saves_both_at_one_step_and_resumes_bitwise(two_process_run,
                                                                           tmp_path):
  workdir = tmp_path / "interrupted"
  procs = start_processes(workdir)
  wait_for_checkpoint(procs, workdir, 16)
  procs[1].send_signal(signal.SIGTERM)  # process 1 only
  outputs = wait_all(procs)
  saved = [re.findall(r"SIGTERM: saved checkpoint at step (\d+)", out) for out in outputs]
  assert saved[0] and saved[0] == saved[1], saved
  step = int(saved[0][0])
  assert 16 <= step < STEPS and not (workdir / "results.json").exists()
  print(f"SIGTERM to process 1 after checkpoint 16: both processes saved step {step}")

  resharded = tmp_path / "resumed_by_one_process"
  shutil.copytree(workdir, resharded)
  outputs = run_processes(workdir)
  assert all(f"resumed from {workdir / 'checkpoints' / str(step)} at step {step}" in out
             for out in outputs)
  assert_bitwise_equal(final_parameters(two_process_run), final_parameters(workdir))

  # The checkpoint of two processes, resumed by one process with two devices.
  out = run_one_process_two_devices(resharded)
  assert f"at step {step}" in out
  difference = max_difference(final_parameters(two_process_run), final_parameters(resharded))
  print(f"max |parameter difference|, 2 processes vs 2 then 1 process with 2 devices: "
        f"{difference:.2e}")
  assert difference <= PROCESS_COUNT_ATOL


def test_a_killed_process_fails_the_job_within_seconds_naming_it(tmp_path):
  workdir = tmp_path / "run"
  procs = start_processes(workdir)
  wait_for_checkpoint(procs, workdir, 16)
  procs[1].send_signal(signal.SIGKILL)
  killed = time.time()
  output = procs[0].communicate(timeout=120)[0]
  seconds = time.time() - killed
  errors = [line for line in output.splitlines() if line.startswith("error: ")]
  assert procs[0].returncode == 1 and len(errors) == 1, output[-3000:]
  # A collective failed at once, or the process stopped counting up its key (PeerWatch).
  assert errors[0].startswith(("error: process 0: a collective between processes failed",
                               "error: process 0: no sign of life from another process")), errors[0]
  assert "; process 1 of 2 does not answer (see its log);" in errors[0], errors[0]
  assert "Traceback" not in output
  print(f"process 0 exited {seconds:.1f} s after process 1 was killed")
  assert seconds < 30  # jax alone waits 100 s for the heartbeat, then aborts
  saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and saved[-1] >= 16
  restore_here(workdir / "checkpoints" / str(saved[-1]) / "default")


def test_a_hung_process_ends_the_job_within_seconds_naming_it(tmp_path):
  """Process 1 stops (SIGSTOP) without dying: process 0 waits in a collective that never fails,
  until its PeerWatch sees process 1's key stand still."""
  workdir = tmp_path / "run"
  procs = start_processes(workdir)
  wait_for_checkpoint(procs, workdir, 16)
  procs[1].send_signal(signal.SIGSTOP)
  stopped = time.time()
  try:
    output = procs[0].communicate(timeout=120)[0]
  finally:
    procs[1].kill()
    procs[1].communicate()
  seconds = time.time() - stopped
  errors = [line for line in output.splitlines() if line.startswith("error: ")]
  assert procs[0].returncode == 1 and len(errors) == 1, output[-3000:]
  assert errors[0].startswith("error: process 0: no sign of life from another process for 15 s; "
                              "process 1 of 2 does not answer (see its log)"), errors[0]
  print(f"process 0 exited {seconds:.1f} s after process 1 stopped")
  assert 13 <= seconds < 30  # 15 s from the last count process 0 saw, up to 1 s before the stop


@pytest.mark.parametrize("task", sorted(engine.TASKS))
def test_every_task_splits_its_batches_over_processes_or_refuses_in_one_line(task, monkeypatch):
  name, flags, _ = SHORT_RUNS[task]
  pairs = [flag.removeprefix("--config.").split("=", 1) for flag in flags]
  config = main.resolve_config(f"experiments/configs/{name}.py", [tuple(p) for p in pairs])
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  reason = loop.task_class(task).SINGLE_PROCESS
  if reason is None:
    loop.validate(config)
    return
  with pytest.raises(ConfigError, match=f"task='{task}' runs in one process only") as e:
    loop.validate(config)
  assert reason in str(e.value) and "\n" not in str(e.value)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__, "-v", "-s"]))
