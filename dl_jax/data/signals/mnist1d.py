"""MNIST-1D: ten 1-D digit templates of 12 samples, each padded, dilated, scaled, translated,
given correlated and white noise, sheared and resampled to 40 samples (Greydanus & Kobak,
"Scaling down deep learning with MNIST-1D", 2020/2024). Published test accuracies: logistic
regression 32 %, MLP 68 %, CNN 94 %, GRU 91 %, human 96 %; with the positions shuffled the CNN
drops to 56 % and the MLP stays at 68 % (an MLP has no notion of neighbouring positions).

The signals are generated, never downloaded: `mnist1d.data.make_dataset(get_dataset_args())` of
the pinned `mnist1d` package (its own `get_dataset()` downloads a pickle: not used). The default
arguments (5000 signals, train_split 0.8, seed 42) give 4000 training and 1000 test signals,
standardized by the package to mean 0 and standard deviation 1 over all 5000. `load()` caches
them as `<data_dir>/mnist1d.npz` with a `mnist1d.npz.sha256` sidecar (`dl_jax.data.cache`), verified
on every later load and never modified.

`load(shuffled=True)` is the paper's control ("MNIST-1D (shuffle)", after Zhang et al. 2017):
the same signals with their 40 positions permuted by one fixed permutation, `permutation()` =
`np.random.default_rng(SHUFFLE_SEED).permutation(40)`, the same for training and test signals.
(The package's own `shuffle_seq=True` draws its permutation from numpy's global generator after
the signals; any fixed permutation is the same control.)
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import random
from typing import Any

from absl import logging
import numpy as np

from dl_jax.data import cache, fetch
from dl_jax.errors import ConfigError, DataError

NAMES = ("mnist1d", "mnist1d_shuffled")
NUM_CLASSES = 10
LENGTH = 40  # samples per signal (the package's final_seq_length)
PACKAGE = "mnist1d"
PACKAGE_VERSION = "0.0.2.post1"  # pinned in pyproject.toml; the data are this version's
SHUFFLE_SEED = 0  # of the fixed permutation of the positions in the shuffled variant
SPEC = {
    "train_images": ((4000, LENGTH, 1), np.float32),
    "train_labels": ((4000,), np.int32),
    "test_images": ((1000, LENGTH, 1), np.float32),
    "test_labels": ((1000,), np.int32),
}


def load(data_dir: str | None = None, shuffled: bool = False) -> dict[str, np.ndarray]:
  """MNIST-1D with the package's default arguments, generated and cached on first use.

  Args:
    data_dir: cache directory; default from `fetch.data_dir` ($DL_JAX_DATA_DIR, ~/.cache/dl_jax).
    shuffled: permute the 40 positions of every signal by `permutation()` (the paper's control).

  Returns:
    Dict with train_images float32[4000, 40, 1], train_labels int32[4000], test_images
    float32[1000, 40, 1] and test_labels int32[1000] (channels-last, for 1-D convolutions).
  """
  root = fetch.data_dir(data_dir)
  arrays = cache.cached(root / "mnist1d.npz", generate, _check, what="MNIST-1D")
  return shuffle(arrays) if shuffled else arrays


def permutation() -> np.ndarray:
  """The fixed permutation of the positions in the shuffled variant: int64[40]."""
  return np.random.default_rng(SHUFFLE_SEED).permutation(LENGTH)


def shuffle(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """`arrays` with the positions of every signal (train and test) permuted by `permutation()`:
  new position i holds old position permutation()[i]."""
  perm = permutation()
  return {k: v[:, perm] if k.endswith("images") else v for k, v in arrays.items()}


def generate(**overrides: Any) -> dict[str, np.ndarray]:
  """Generates MNIST-1D with the package's generator: a pure function of its arguments.

  `overrides` replace entries of `mnist1d.data.get_dataset_args()` (e.g. seed=0,
  num_samples=500). The package seeds Python's and numpy's global generators from `seed`;
  their states are restored afterwards, so generating has no effect on the caller's randomness.

  Returns:
    The four arrays of `load`, for the train_split of the arguments.
  """
  data = _mnist1d_data()
  args = data.get_dataset_args(as_dict=True)
  unknown = sorted(set(overrides) - set(args))
  if unknown:
    raise ConfigError(f"unknown MNIST-1D argument(s) {', '.join(unknown)}; accepted: "
                      f"{', '.join(sorted(args))}")
  args.update(overrides)
  logging.info("Generating MNIST-1D with %s==%s (seed %s)", PACKAGE, PACKAGE_VERSION,
               args["seed"])
  with _global_rng_restored():
    raw = data.make_dataset(data.ObjectView(args))
  to_signals = lambda x: np.asarray(x, np.float32)[..., None]
  return {"train_images": to_signals(raw["x"]), "train_labels": _labels(raw["y"]),
          "test_images": to_signals(raw["x_test"]), "test_labels": _labels(raw["y_test"])}


def _labels(y) -> np.ndarray:
  y = np.asarray(y)
  if not np.array_equal(y, y.astype(np.int32)):
    raise DataError(f"{PACKAGE} returned labels that are not integers ({y.dtype}).")
  return y.astype(np.int32)


def _mnist1d_data():
  """The package's `mnist1d.data` module. Importing it imports requests and matplotlib.pyplot
  but does no network access and selects no matplotlib backend."""
  try:
    version = importlib.metadata.version(PACKAGE)
  except importlib.metadata.PackageNotFoundError:
    version = None
  if version != PACKAGE_VERSION:
    found = "is not installed" if version is None else f"is version {version}"
    raise DataError(f"MNIST-1D is generated by {PACKAGE}=={PACKAGE_VERSION}, which {found}: "
                    "install the locked environment (./launch.sh test --co -q installs it).")
  return importlib.import_module("mnist1d.data")


@contextlib.contextmanager
def _global_rng_restored():
  py_state, np_state = random.getstate(), np.random.get_state()
  try:
    yield
  finally:
    random.setstate(py_state)
    np.random.set_state(np_state)


def _check(arrays: dict[str, np.ndarray]) -> str | None:
  """What is wrong with a dataset dict of the default arguments, or None."""
  return cache.check_arrays(arrays, SPEC, NUM_CLASSES)
