"""experiments.report: a table refreshed from some runs keeps the other runs' rows."""

import json
import subprocess
import sys

import pytest

from experiments import report

HEADER = "| run | score |\n|---|---|"


def _table(*rows: str) -> str:
  return "\n".join([HEADER, *rows])


def test_merge_replaces_the_listed_runs_rows_in_place_and_keeps_the_others():
  old = _table("| `a` | 1 |", "| `b` | 2 |", "| `b` | 3 |", "| `c` | 4 |")
  new = _table("| `b` | 20 |", "| `d` | 5 |", "| `b` | 30 |")
  assert report.merge(old, new) == _table("| `a` | 1 |", "| `b` | 20 |", "| `b` | 30 |",
                                          "| `c` | 4 |", "| `d` | 5 |")


def test_merge_into_an_empty_table_is_the_new_table():
  assert report.merge("", _table("| `a` | 1 |")) == _table("| `a` | 1 |")


def test_merge_refuses_other_columns():
  with pytest.raises(report.ReportError, match="list every run of the table, or pass --nomerge"):
    report.merge(_table("| `a` | 1 |"), "| run | other |\n|---|---|\n| `a` | 2 |")


def _result(accuracy: float) -> dict:
  return {"experiment": "mnist_cnn", "dataset": "mnist", "test_accuracy": accuracy, "epochs": 1,
          "train_time_s": 3.0, "param_count": 10, "num_devices": 1, "platform": "cpu",
          "device_kind": "cpu", "versions": {"jax": "0"}}


def _report(tmp_path, *flags):
  return subprocess.run([sys.executable, "-m", "experiments.report", f"--runs={tmp_path}",
                         f"--readme={tmp_path / 'README.md'}", *flags],
                        capture_output=True, text=True, timeout=120)


@pytest.fixture
def runs(tmp_path):
  for name, accuracy in (("one", 0.5), ("two", 0.25), ("three", 0.75)):
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(_result(accuracy)))
  (tmp_path / "README.md").write_text("text\n<!-- results:begin -->\n<!-- results:end -->\nmore\n")
  return tmp_path


def _rows(readme) -> list[str]:
  text = readme.read_text()
  return [line.split("|")[1:4] for line in text.splitlines() if line.startswith("| `")]


def test_a_subset_refreshes_its_rows_and_nomerge_rewrites(runs):
  assert _report(runs, "--experiments=one,two,three").returncode == 0
  readme = runs / "README.md"
  assert [r[0].strip() for r in _rows(readme)] == ["`one`", "`two`", "`three`"]
  (runs / "two" / "results.json").write_text(json.dumps(_result(0.875)))
  (runs / "one" / "results.json").unlink()  # a run no longer at hand keeps its row
  (runs / "three" / "results.json").unlink()
  done = _report(runs, "--experiments=two")
  assert done.returncode == 0, done.stderr
  assert [(r[0].strip(), r[2].strip()) for r in _rows(readme)] == [
      ("`one`", "50.00 %"), ("`two`", "87.50 %"), ("`three`", "75.00 %")]
  assert readme.read_text().startswith("text\n<!-- results:begin -->\n| run |")
  assert readme.read_text().endswith("<!-- results:end -->\nmore\n")
  assert _report(runs, "--experiments=two", "--nomerge").returncode == 0
  assert [r[0].strip() for r in _rows(readme)] == ["`two`"]  # the negative control


@pytest.mark.parametrize("flags,message", [
    (("--experiments=one,nowhere",), "error: no results for "),
    (("--experiments=one", "--table=nbody"), "for the nbody table; accepted: runs of the task"),
    (("--experiments=one", "--readme={runs}/one/results.json"),
     "results.json has no <!-- results:begin --> ... <!-- results:end --> markers"),
    (("--experiments=one", "--readme={runs}/elsewhere.md"), "elsewhere.md is not a file"),
])
def test_bad_input_is_one_error_line_and_the_readme_is_kept(runs, flags, message):
  before = (runs / "README.md").read_text()
  done = _report(runs, *(f.format(runs=runs) for f in flags))
  assert done.returncode == 2 and message in done.stderr, done.stderr
  assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
  assert (runs / "README.md").read_text() == before
