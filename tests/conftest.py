"""Shared helpers: run an experiment as a user would, in a subprocess."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def experiment_cmd(name: str, workdir, *flags: str) -> list[str]:
  return [sys.executable, "-m", "experiments.main", f"--config=experiments/configs/{name}.py",
          f"--workdir={workdir}", *flags]


def run(cmd: list[str], env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
  return subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                        text=True, timeout=timeout)


@pytest.fixture
def run_experiment():
  def _run(name, workdir, *flags, env=None):
    return run(experiment_cmd(name, workdir, *flags), env=env)
  return _run


def pytest_addoption(parser):
  parser.addoption("--full-training", action="store_true",
                   help="run the real-data trainings at full length and check the README targets")


@pytest.fixture
def full_training(request) -> bool:
  return request.config.getoption("--full-training")
