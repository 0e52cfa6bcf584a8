"""bench/gpu.py at its --smoke size: a real run, every row present, torch rows run or explained;
bench/gpu_session.sh, the device script, at its --smoke size."""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import pytest

from tests import test_readme
from tests.conftest import ROOT

TORCH = importlib.util.find_spec("torch") is not None
PYG = TORCH and importlib.util.find_spec("torch_geometric") is not None
ROWS = [f"{bench} {row}" for bench in ("cnn_b128", "cnn_b4096", "resnet18_f32", "resnet18_bf16")
        for row in ("dl_jax", "torch eager", "torch compile")]
ROWS += ["gcn dl_jax", "gcn pyg eager", "gcn pyg compile"]
ROWS += [f"readout dl_jax {impl}" for impl in ("scatter", "sorted", "blocked")]
ROWS += ["readout torch index_add_ eager", "readout torch index_add_ compile",
         "readout pyg global_add_pool eager"]


def test_gpu_bench_smoke_runs_every_row(tmp_path):
  out = tmp_path / "x.json"
  done = subprocess.run([sys.executable, "bench/gpu.py", "--smoke", "--out", str(out)],
                        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(out.read_text())
  rows = {row["name"]: row for row in result["rows"]}
  assert list(rows) == ROWS
  lines = {name: [line for line in done.stdout.splitlines() if line.startswith(name + " ")]
           for name in ROWS}
  assert all(lines.values()), [name for name, found in lines.items() if not found]
  assert "SMOKE: sizes reduced, timings not meaningful" in done.stdout
  if result["platform"] == "cpu":
    assert "the GPU figures are not measured" in done.stdout

  for name, row in rows.items():
    runs = row["side"] == "dl_jax" or (row["side"] == "torch" and TORCH) or (
        row["side"] == "pyg" and PYG)
    if runs and row["mode"] != "compile":  # a failing torch.compile only has to explain itself
      assert row["ms"] is not None, (name, row.get("error"))
    if row["ms"] is None:
      assert row["error"], name
      assert not runs or row["mode"] == "compile", (name, row["error"])
      assert any("unavailable: " in line for line in lines[name]), lines[name]
    else:
      assert row["ms"] > 0 and math.isfinite(row["value"]), name
    if row["side"] == "dl_jax":
      reference = "pyg" if row["bench"] == "gcn" else "torch"
      for mode in ("eager", "compile"):
        other = next(r for r in rows.values() if r["bench"] == row["bench"]
                     and r["side"] == reference and r["mode"] == mode)
        ratio = row[f"ratio_jax_over_{mode}"]
        if other["ms"] is None:
          assert ratio is None, name
        else:
          assert math.isfinite(ratio) and ratio > 0, (name, mode, ratio)

  # The sorted read-outs add up to the scatter's sums; torch and PyG to the same values.
  for impl in ("sorted", "blocked"):
    assert rows[f"readout dl_jax {impl}"]["max_rel_diff"] < 1e-5
  same = [("readout dl_jax scatter", "readout torch index_add_ eager", 1e-4),
          ("gcn dl_jax", "gcn pyg eager", 1e-4)]
  for ours, theirs, tolerance in same:
    if rows[theirs]["ms"] is not None:
      assert math.isclose(rows[ours]["value"], rows[theirs]["value"], rel_tol=tolerance), (
          ours, rows[ours]["value"], rows[theirs]["value"])
  if not TORCH:
    assert "torch is not importable here" in done.stdout


def test_gpu_bench_bad_flag_is_one_line():
  done = subprocess.run([sys.executable, "bench/gpu.py", "--benches", "cnn,lstm"], cwd=ROOT,
                        capture_output=True, text=True, timeout=120, check=False)
  assert done.returncode == 2
  assert done.stderr.strip() == "error: --benches: lstm; accepted: cnn, resnet18, gcn, readout"


def _gpu_session(*args, env=None, timeout=300):
  return subprocess.run(["bench/gpu_session.sh", *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout, check=False, env={**os.environ, **(env or {})})


def test_gpu_session_runs_its_stages_and_keeps_their_results(tmp_path):
  """The device script at its --smoke size on this machine: the main job's stage trains 2 real
  steps and its results.json comes back in $OUT, a stage that fails does not stop the next one."""
  env = {"OUT": str(tmp_path), "PYTHON": sys.executable, "KIT": str(tmp_path / "no_kit")}
  done = _gpu_session("run", "--smoke", "env", "cnn:200", env=env)
  assert done.returncode == 0, done.stdout + done.stderr
  results = json.loads((tmp_path / "cnn.json").read_text())
  assert results["steps"] == 2 and results["experiment"] == "mnist_cnn"
  assert 0.0 <= results["test_accuracy"] <= 1.0
  log = (tmp_path / "session.log").read_text()
  assert "=== gpu_session: cnn took" in log and "jax " in log
  unreadable = {**env, "DL_JAX_DATA_DIR": "/dev/null/data"}  # the training stops with its error
  failing = _gpu_session("run", "--smoke", "cnn", "env", env=unreadable)
  assert failing.returncode == 1
  assert "gpu_session: cnn failed (exit" in failing.stdout
  assert "=== gpu_session: env took" in failing.stdout  # the next stage still ran
  stopped = _gpu_session("run", "--smoke", "cnn:1", env={**env, "OUT": str(tmp_path / "stopped")})
  assert stopped.returncode == 1 and "gpu_session: cnn failed (exit 124)" in stopped.stdout
  assert "cnn reached its limit of 1 s" in (tmp_path / "stopped" / "session.log").read_text()


@pytest.mark.parametrize("args, env, message", [
    (["run", "--smoke", "cnn", "gogolenet"], {"OUT": "/tmp/x"},
     "error: unknown stage 'gogolenet'; accepted: env bench cnn googlenet resnet18 resnet18_re "
     "wrn pixelcnn lstm_perm"),
    (["run"], {"OUT": "/tmp/x"}, "error: name at least one stage; accepted: env bench cnn "
                                 "googlenet resnet18 resnet18_re wrn pixelcnn lstm_perm"),
    (["run", "cnn:5m"], {"OUT": "/tmp/x"}, "error: time limit '5m' of stage cnn is not a number of "
                                          "seconds; accepted: STAGE or STAGE:SECONDS"),
    (["run", "cnn"], {"OUT": ""}, "error: OUT is not set; set it to the folder for the results"),
    (["unpack"], {},
     "error: unknown command 'unpack'; accepted: pack, run [--smoke] STAGE[:SECONDS] ..."),
])
def test_gpu_session_bad_input_is_one_line(args, env, message):
  done = _gpu_session(*args, env=env, timeout=60)
  assert done.returncode == 2 and done.stderr.strip() == message, done.stderr


def _session_stages() -> dict[str, list[str]]:
  """bench/gpu_session.sh's training stages: stage -> [experiment, flags...]."""
  text = (ROOT / "bench" / "gpu_session.sh").read_text()
  stages = {name: spec.split()[1:] for name, spec in
            re.findall(r'^\s+\[(\w+)\]="([^"]+)"', text, flags=re.MULTILINE)}
  return {name: words for name, words in stages.items() if words[0] != "-"}


def test_gpu_session_trainings_are_accepted_commands():
  """Each training stage's experiment takes its flags and passes the checks, as the README's
  commands do (a stage with a stale flag would cost a GPU session)."""
  stages = _session_stages()
  assert {"cnn", "googlenet", "resnet18", "wrn", "pixelcnn", "lstm_perm"} <= set(stages)
  for name, (experiment, *flags) in stages.items():
    test_readme.check_command(experiment, flags)
