"""--cores N for the benchmarks: run on the first N allowed cores (before any library starts threads)."""

import os
import sys


def pin_cores_from_argv() -> None:
  argv = sys.argv[1:]
  for i, arg in enumerate(argv):
    value = arg.split("=", 1)[1] if arg.startswith("--cores=") else (
        argv[i + 1] if arg == "--cores" and i + 1 < len(argv) else None)
    if value and value.isdigit() and int(value) > 0 and hasattr(os, "sched_setaffinity"):
      allowed = sorted(os.sched_getaffinity(0))
      os.sched_setaffinity(0, allowed[:int(value)])
