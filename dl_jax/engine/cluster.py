"""Which cluster a `--multihost` process runs in, read from the environment each platform sets.

`jax.distributed.initialize()` detects the same platforms itself; this module names the one
found (for the log line and for a clear error where none is), and passes the coordinator and
process numbers explicitly where they are given as `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`
and `JAX_PROCESS_ID` (for instance inside SLURM when node names do not resolve).

  - SLURM, inside an `srun` step: SLURM_JOB_ID, SLURM_STEP_NODELIST, SLURM_NTASKS, SLURM_PROCID,
    SLURM_LOCALID (the coordinator: the step's first node, port from the job id, as jax does);
  - a Cloud TPU VM slice or a TPU pod on GKE: TPU_WORKER_ID and TPU_WORKER_HOSTNAMES (or
    TPU_PROCESS_ADDRESSES); several slices add MEGASCALE_COORDINATOR_ADDRESS,
    MEGASCALE_NUM_SLICES and MEGASCALE_SLICE_ID;
  - a GKE indexed Job (GPU JobSets): JOB_COMPLETION_INDEX, with the number of processes and the
    coordinator given as JAX_NUM_PROCESSES and JAX_COORDINATOR_ADDRESS.
"""

import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping

from dl_jax.errors import ConfigError

TPU_COORDINATOR_PORT = 8476  # jax's port for TPU clusters
EXPLICIT = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
SLURM = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")


@dataclasses.dataclass(frozen=True)
class Cluster:
  kind: str  # "explicit", "slurm", "tpu" (one slice), "tpu_multislice" or "gke_indexed_job"
  process_id: int
  num_processes: int
  coordinator: str  # host:port

  def describe(self) -> str:
    return (f"{self.kind}: process {self.process_id} of {self.num_processes}, coordinator "
            f"{self.coordinator}")


def _int(environ: Mapping[str, str], name: str) -> int:
  value = environ[name]
  try:
    return int(value)
  except ValueError:
    raise ConfigError(f"{name}={value!r} is not an integer; accepted: the process count or "
                      "index the platform sets") from None


def first_slurm_host(node_list: str) -> str:
  """The first host of a SLURM node list: 'gpu[003-005,9],cpu1' -> 'gpu003', 'r[2-3]-n[1-4]'
  -> 'r2-n1'."""
  depth, end = 0, len(node_list)
  for i, char in enumerate(node_list):
    depth += {"[": 1, "]": -1}.get(char, 0)
    if char == "," and depth == 0:
      end = i
      break
  first = node_list[:end]
  if "[" not in first:
    return first
  prefix, rest = first.split("[", 1)
  ranges, suffix = rest.split("]", 1)
  return prefix + ranges.split(",")[0].split("-")[0] + first_slurm_host(suffix)


def detect(environ: Mapping[str, str] | None = None) -> Cluster | None:
  """The cluster the environment describes, or None (a single process, or an unknown platform)."""
  env = os.environ if environ is None else environ
  override = env.get("JAX_COORDINATOR_ADDRESS")
  if all(k in env for k in EXPLICIT):
    return Cluster("explicit", _int(env, "JAX_PROCESS_ID"), _int(env, "JAX_NUM_PROCESSES"),
                   env["JAX_COORDINATOR_ADDRESS"])
  if all(k in env for k in SLURM):
    port = _int(env, "SLURM_JOB_ID") % 2**12 + (65535 - 2**12 + 1)
    return Cluster("slurm", _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS"),
                   override or f"{first_slurm_host(env['SLURM_STEP_NODELIST'])}:{port}")
  hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES")
  if "TPU_WORKER_ID" in env and hosts:
    workers = hosts.split(",")
    worker = _int(env, "TPU_WORKER_ID")
    if not 0 <= worker < len(workers):
      raise ConfigError(f"TPU_WORKER_ID={worker} is outside the {len(workers)} workers of "
                        f"TPU_WORKER_HOSTNAMES={hosts!r}")
    if "MEGASCALE_COORDINATOR_ADDRESS" in env:
      slices, slice_id = _int(env, "MEGASCALE_NUM_SLICES"), _int(env, "MEGASCALE_SLICE_ID")
      host = env["MEGASCALE_COORDINATOR_ADDRESS"].split(":")[0]
      return Cluster("tpu_multislice", slice_id * len(workers) + worker, slices * len(workers),
                     override or f"{host}:{TPU_COORDINATOR_PORT}")
    return Cluster("tpu", worker, len(workers),
                   override or f"{workers[0].split(':')[0]}:{TPU_COORDINATOR_PORT}")
  if "JOB_COMPLETION_INDEX" in env:
    missing = [k for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES") if k not in env]
    if missing:
      raise ConfigError(f"a GKE indexed Job (JOB_COMPLETION_INDEX is set) needs "
                        f"{' and '.join(missing)} in the environment; accepted: set them in the "
                        "Job's container spec")
    return Cluster("gke_indexed_job", _int(env, "JOB_COMPLETION_INDEX"),
                   _int(env, "JAX_NUM_PROCESSES"), env["JAX_COORDINATOR_ADDRESS"])
  return None


def initialize(environ: Mapping[str, str] | None = None) -> Cluster:
  """`jax.distributed.initialize` for the detected cluster; a ConfigError where there is none."""
  cluster = detect(environ)
  if cluster is None:
    raise ConfigError(
        "--multihost found no cluster in the environment; accepted: an `srun` step of a SLURM "
        "job, a Cloud TPU VM or GKE TPU worker (TPU_WORKER_ID, TPU_WORKER_HOSTNAMES), or "
        f"{', '.join(EXPLICIT)} set by hand")
  if not 0 <= cluster.process_id < cluster.num_processes:
    raise ConfigError(f"process id {cluster.process_id} is outside 0..{cluster.num_processes - 1} "
                      f"({cluster.kind})")
  env = os.environ if environ is None else environ
  if cluster.kind in ("explicit", "gke_indexed_job"):
    kwargs = {"coordinator_address": cluster.coordinator,
              "num_processes": cluster.num_processes, "process_id": cluster.process_id}
  else:  # jax detects the platform itself, as here; an explicit coordinator overrides its guess
    kwargs = {k: env[v] for k, v in [("coordinator_address", "JAX_COORDINATOR_ADDRESS")]
              if v in env}
  import jax  # pylint: disable=g-import-not-at-top
  # Collectives between CPU processes (a CPU cluster, or tests of several processes on one
  # machine) need a backend; GPU and TPU collectives do not use it.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
  return cluster


def unresponsive_processes(timeout_s: float = 5.0) -> list[int] | None:
  """After a collective between processes failed (in every process, where one died): the
  processes that do not answer through the coordination service within `timeout_s`, or None
  where the coordination service itself (process 0's) cannot be reached."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  client = distributed.global_state.client
  try:
    client.key_value_set(f"dl_jax/answering/{jax.process_index()}", "1")
  except Exception:  # pylint: disable=broad-except  (any failure: the service is gone)
    return None
  silent = []
  for i in range(jax.process_count()):
    try:
      client.blocking_key_value_get(f"dl_jax/answering/{i}", int(timeout_s * 1000))
    except Exception:  # pylint: disable=broad-except  (a timeout)
      silent.append(i)
  return silent


def _failure_line(cause: str, silent: list[int] | None, checkpoints: str) -> str:
  import jax  # pylint: disable=g-import-not-at-top
  plural = bool(silent) and len(silent) > 1
  if silent is None:
    who = "process 0, the coordinator, cannot be reached (see its log)"
  elif silent:
    who = (f"process{'es' if plural else ''} {', '.join(map(str, silent))} of "
           f"{jax.process_count()} {'do' if plural else 'does'} not answer (see "
           f"{'their logs' if plural else 'its log'})")
  else:
    who = "every process still answers"
  return (f"process {jax.process_index()}: {cause}; {who}; the checkpoints in {checkpoints} are "
          "intact: run the job again to resume from the last one")


def is_collective_error(error: BaseException) -> bool:
  """Whether `error` (or the error it was raised from) is how a collective between processes
  fails: jax's runtime error, or, inside orbax's barrier over gloo, a ValueError naming gloo."""
  import jax  # pylint: disable=g-import-not-at-top
  chain = [e for e in (error, error.__cause__, error.__context__) if e is not None]
  return any(isinstance(e, jax.errors.JaxRuntimeError) or "gloo" in str(e).lower()
             or "connection reset by peer" in str(e).lower() for e in chain)


def collective_failure(error: Exception, checkpoints: str) -> str | None:
  """The one-line explanation of a collective that failed because another process died; None
  where `error` is not a collective's (then the caller raises it as it is)."""
  if not is_collective_error(error):
    return None
  reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
  return _failure_line(f"a collective between processes failed ({reason})",
                       unresponsive_processes(), checkpoints)


class _CollectiveErrorsInOneLine(logging.Filter):
  """Drops the traceback of a logged exception that is a collective's failure: orbax's checkpoint
  threads log the error of a barrier whose peer died with `logging.exception`, and the run's own
  error line (or, where the coordinator died, jax's abort) says what happened."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.exc_info and record.exc_info[1] is not None and is_collective_error(
        record.exc_info[1]):
      record.exc_info, record.exc_text = None, None
    return True


@contextlib.contextmanager
def collective_errors_in_one_line():
  """While open, log records of collectives that failed carry no traceback (absl's logger, which
  orbax logs to)."""
  logger, one_line = logging.getLogger("absl"), _CollectiveErrorsInOneLine()
  logger.addFilter(one_line)
  try:
    yield
  finally:
    logger.removeFilter(one_line)


_REPORTED = threading.Lock()


def exit_with_failure(message: str) -> None:
  """Prints the one error line of a failed multi-process run and ends the process at once: jax's
  shutdown would wait for a dead process's heartbeat to time out (100 s) and then abort. Where
  another thread is already reporting, waits for it to end the process."""
  if not _REPORTED.acquire(blocking=False):
    while True:
      time.sleep(60)
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.flush()
  print(f"error: {message}", file=sys.stderr, flush=True)
  os._exit(1)  # pylint: disable=protected-access


class PeerWatch:
  """Ends a multi-process run, in one error line, once another process has shown no sign of life
  for `silent_s`: dead, or hung. A thread counts up this process's key in the coordination
  service every `every_s` and reads the others'; a second thread, which never waits on the
  network, judges, so that a coordinator that stops answering is caught too.

  `finish()` marks a process that ended its run; watching goes on until the process exits.
  """

  def __init__(self, checkpoints: str, silent_s: float = 15.0, every_s: float = 1.0):
    self._checkpoints, self._silent_s, self._every_s = checkpoints, silent_s, every_s
    self._stop = threading.Event()
    self._lock = threading.Lock()
    self._seen: dict[int, float] = {}  # process -> when its count last moved (monotonic)
    self._service_answered = time.monotonic()
    self._threads = [threading.Thread(target=f, name=f"dl_jax-peer-watch-{f.__name__}",
                                      daemon=True) for f in (self._count, self._judge)]

  def __enter__(self):
    import jax  # pylint: disable=g-import-not-at-top
    from jax._src import distributed  # pylint: disable=g-import-not-at-top
    self._client = distributed.global_state.client
    self._me, now = jax.process_index(), time.monotonic()
    self._seen = {i: now for i in range(jax.process_count()) if i != self._me}
    for thread in self._threads:
      thread.start()
    return self

  def __exit__(self, exc_type, *exc):
    if exc_type is not None:  # the caller reports; a finished run is watched to the end
      self.stop()

  def stop(self) -> None:
    self._stop.set()
    for thread in self._threads:
      thread.join(timeout=2 * self._every_s)

  def finish(self) -> None:
    """Marks this process's run as ended (the others stop watching it)."""
    try:
      self._client.key_value_set(f"dl_jax/finished/{self._me}", "1", allow_overwrite=True)
    except Exception:  # pylint: disable=broad-except  (the coordinator may already have ended)
      pass

  def _count(self) -> None:
    last: dict[int, str] = {}
    beat = 0
    while not self._stop.wait(self._every_s):
      beat += 1
      try:
        self._client.key_value_set(f"dl_jax/alive/{self._me}", str(beat), allow_overwrite=True)
        entries = dict(self._client.key_value_dir_get("dl_jax/"))
      except Exception:  # pylint: disable=broad-except  (the service does not answer, for now)
        continue
      now = time.monotonic()
      with self._lock:
        self._service_answered = now
        for i in self._seen:
          alive = entries.get(f"dl_jax/alive/{i}")
          if f"dl_jax/finished/{i}" in entries or (alive is not None and alive != last.get(i)):
            self._seen[i] = now if f"dl_jax/finished/{i}" not in entries else float("inf")
          if alive is not None:
            last[i] = alive

  def _judge(self) -> None:
    previous = time.monotonic()
    while not self._stop.wait(self._every_s):
      now = time.monotonic()
      with self._lock:
        if now - previous > 3 * self._every_s:
          # This process itself was held still (SIGSTOP, a suspended job): start afresh.
          self._service_answered = now
          self._seen = {i: max(t, now) for i, t in self._seen.items()}
        previous = now
        silent = [i for i, t in self._seen.items() if now - t > self._silent_s]
        unreachable = now - self._service_answered > self._silent_s
      if (silent or unreachable) and not self._stop.is_set():
        exit_with_failure(_failure_line(
            f"no sign of life from another process for {self._silent_s:g} s",
            None if unreachable else silent, self._checkpoints))
