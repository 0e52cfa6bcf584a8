"""The data cache's converted files: an npz beside a `.sha256` sidecar, written once.

`cached(path, build, check)` is the whole protocol: a cached file is verified against its sidecar
and `check` and never modified; a missing one is built from its archive, checked and written
atomically (sidecar first, fixed zip timestamps, so concurrent writers produce identical files).
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import zipfile
from typing import Callable

from absl import logging
import numpy as np

from dl_jax.data import fetch
from dl_jax.errors import DataError

Arrays = dict[str, np.ndarray]
Check = Callable[[Arrays], "str | None"]  # what is wrong with the arrays, or None
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def sidecar(path: pathlib.Path) -> pathlib.Path:
  return path.with_name(path.name + ".sha256")


def read(path: pathlib.Path, check: Check, what: str = "dataset") -> Arrays:
  """Loads a cached npz after checking it against its sidecar and `check`."""
  side = sidecar(path)
  problem = None
  if not side.exists():
    problem = f"its checksum file {side.name} is missing"
  else:
    fields = side.read_text(errors="replace").split()
    recorded = fields[0].lower() if fields else ""
    actual = fetch.sha256_file(path)
    if actual != recorded:
      problem = f"its sha256 is {actual} but {side.name} records {recorded or '(nothing)'}"
  if problem is None:
    try:
      with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
      problem = check(arrays)
    except (OSError, ValueError, EOFError, KeyError, IndexError, zipfile.BadZipFile) as e:
      problem = f"it cannot be read as npz ({type(e).__name__}: {e})"
  if problem:
    raise DataError(
        f"Cached {what} {path} is unusable: {problem}. Delete it (and {side.name}) to build it "
        f"again, or choose another directory with --config.data_dir=... or {fetch.ENV_VAR}.")
  return arrays


def _write_temp(path: pathlib.Path, write) -> str:
  """Writes a temp file next to `path` with `write(f)`; returns its name."""
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
    os.chmod(tmp, 0o644)
  except BaseException:
    os.unlink(tmp)
    raise
  return tmp


def write(path: pathlib.Path, arrays: Arrays) -> None:
  """Writes a byte-reproducible npz and its sidecar, each atomically (sidecar first)."""
  def write_npz(f):
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
      for key in sorted(arrays):
        info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as out:
          np.lib.format.write_array(out, np.ascontiguousarray(arrays[key]), allow_pickle=False)

  tmp = _write_temp(path, write_npz)
  try:
    line = f"{fetch.sha256_file(tmp)}  {path.name}\n".encode()
    os.replace(_write_temp(sidecar(path), lambda f: f.write(line)), sidecar(path))
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def cached(path: pathlib.Path, build: Callable[[], Arrays], check: Check,
           what: str = "dataset") -> Arrays:
  """The arrays cached at `path`, built by `build()` and written there on first use."""
  if path.exists():
    return read(path, check, what)
  arrays = build()
  problem = check(arrays)
  if problem:
    raise DataError(f"{path.stem} as converted from its archive is invalid: {problem}.")
  write(path, arrays)
  logging.info("Cached %s in %s", path.stem, path)
  return arrays


def check_arrays(arrays: dict, spec: dict, num_classes: int) -> str | None:
  """What is wrong with a dict of labelled arrays, or None: its keys are those of `spec`
  (key -> (shape, dtype)), each array has its shape and dtype, labels are in 0..num_classes-1
  and float data are finite."""
  if set(arrays) != set(spec):
    return f"it holds {sorted(arrays)}, expected {sorted(spec)}"
  for key, (shape, dtype) in spec.items():
    array = arrays[key]
    if array.shape != shape or array.dtype != dtype:
      return (f"{key} is {array.dtype}{list(array.shape)}, expected "
              f"{np.dtype(dtype)}{list(shape)}")
    if key.endswith("labels") and (array.min() < 0 or array.max() >= num_classes):
      return (f"{key} range from {array.min()} to {array.max()}, expected 0 to "
              f"{num_classes - 1}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
      return f"{key} holds values that are not finite"
  return None

