"""An electrocardiogram: MIT-BIH Arrhythmia Database record 208, lead MLII, 5 minutes at 360 Hz
(108,000 samples), as scipy 1.11.4 shipped it (`scipy.misc.electrocardiogram`; later scipy
versions download it instead). No beat labels: a real signal to denoise (section 5.3.5).

The values are read from the pinned scipy wheel (PyPI, downloaded, never installed), member
`scipy/misc/ecg.dat`: an npz whose key "ecg" holds uint16[108000] in the record's ADC units;
millivolts are (v - 1024) / 200. `load()` caches the raw values as `<data_dir>/ecg_mitbih208.npz`
with a sha256 sidecar (`dl_jax.data.cache`).

`windows(length, train_stride)` cuts the record by time into three contiguous blocks, the first
70 % for training, the next 15 % for validation and the last 15 % for testing, and each block
into windows of `length` samples that never cross a block's end: no sample is in two splits.
Validation and test windows do not overlap; training windows start every `train_stride`
samples (overlapping when it is below `length`).
"""

from __future__ import annotations

import io
import zipfile

from absl import logging
import numpy as np

from dl_jax.data import cache, fetch
from dl_jax.errors import ConfigError, DataError

SCIPY_VERSION = "1.11.4"
# scipy-1.11.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl (PyPI).
SCIPY_WHEEL_SHA256 = "530f9ad26440e85766509dbf78edcfe13ffd0ab7fec2560ee5c36ff74d6269ff"
_WHEEL_GLOB = f"scipy-{SCIPY_VERSION}-cp311-cp311-manylinux*x86_64.whl"
_PIP_PLATFORM = ("--platform", "manylinux2014_x86_64", "--python-version", "3.11",
                 "--implementation", "cp", "--abi", "cp311")
MEMBER = "scipy/misc/ecg.dat"

SAMPLES = 108_000
SAMPLING_RATE_HZ = 360
RAW_RANGE = (327, 1754)  # the record's smallest and largest ADC values
SPLIT_FRACTIONS = {"train": (0.0, 0.70), "val": (0.70, 0.85), "test": (0.85, 1.0)}
SPEC = {"ecg": ((SAMPLES,), np.uint16)}


def to_millivolts(raw: np.ndarray) -> np.ndarray:
  """ADC values -> float32 millivolts, (v - 1024) / 200."""
  return ((raw.astype(np.float32) - 1024.0) / 200.0).astype(np.float32)


MIN_MV, MAX_MV = (float(v) for v in to_millivolts(np.asarray(RAW_RANGE)))


def to_unit(millivolts: np.ndarray) -> np.ndarray:
  """Millivolts -> [0, 1] by the record's own range (MIN_MV -> 0, MAX_MV -> 1), float32: the
  scale on which noise levels and PSNR are stated for the images too."""
  return ((millivolts - MIN_MV) / (MAX_MV - MIN_MV)).astype(np.float32)


def load(data_dir: str | None = None) -> np.ndarray:
  """The whole record in millivolts, float32 [108000], fetched and cached on first use."""
  root = fetch.data_dir(data_dir)
  arrays = cache.cached(root / "ecg_mitbih208.npz", lambda: _build(root), _check,
                        what="ECG record")
  return to_millivolts(arrays["ecg"])


def _build(root) -> dict[str, np.ndarray]:
  logging.info("Fetching the ECG record: scipy==%s wheel from PyPI (read, not installed)",
               SCIPY_VERSION)
  archive = fetch.fetch_pypi_archive("scipy", SCIPY_VERSION, SCIPY_WHEEL_SHA256, root,
                                     filename_glob=_WHEEL_GLOB, extra_args=_PIP_PLATFORM)
  try:
    with np.load(io.BytesIO(fetch.read_member(archive, MEMBER)), allow_pickle=False) as npz:
      return {"ecg": np.asarray(npz["ecg"])}
  except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
    raise DataError(f"{archive}:{MEMBER} is not an npz with key 'ecg': {e}") from e


def _check(arrays: dict[str, np.ndarray]) -> str | None:
  problem = cache.check_arrays(arrays, SPEC, num_classes=0)
  if problem is None and (arrays["ecg"].min(), arrays["ecg"].max()) != RAW_RANGE:
    return (f"its values range from {arrays['ecg'].min()} to {arrays['ecg'].max()}, expected "
            f"{RAW_RANGE[0]} to {RAW_RANGE[1]}")
  return problem


def split_bounds(split: str) -> tuple[int, int]:
  """[start, end) sample indices of a split's block of the record."""
  low, high = SPLIT_FRACTIONS[split]
  return round(low * SAMPLES), round(high * SAMPLES)


def shortest_split() -> int:
  """The number of samples of the shortest split: the longest window."""
  return min(end - start for start, end in map(split_bounds, SPLIT_FRACTIONS))


def windows(length: int = 256, train_stride: int | None = None,
            data_dir: str | None = None) -> dict[str, np.ndarray]:
  """{"train", "val", "test"} -> millivolts float32 [N, length, 1] (see the module docstring);
  `train_stride` defaults to `length` (no overlap)."""
  stride = train_stride or length
  shortest = shortest_split()
  if not 1 <= length <= shortest or stride < 1:
    raise ConfigError(f"ECG windows of length {length}, train stride {stride}: accepted: "
                      f"1 <= length <= {shortest} (the shortest split), stride >= 1")
  record = load(data_dir)
  out = {}
  for split in SPLIT_FRACTIONS:
    start, end = split_bounds(split)
    step = stride if split == "train" else length
    starts = np.arange(start, end - length + 1, step)
    out[split] = record[starts[:, None] + np.arange(length)][..., None]
  return out
