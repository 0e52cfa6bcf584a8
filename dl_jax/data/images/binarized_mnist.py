"""Statically binarized MNIST: every pixel drawn once as a Bernoulli variable of its intensity.

Pixel (i, j) of image n becomes 1 with probability x = uint8 / 255, by comparing x with one
uniform draw: `u < x`, u ~ U[0, 1) from `np.random.default_rng([seed, split])` (split 0 for the
60,000 training images, 1 for the 10,000 test images), never by thresholding. The draw is made
once and kept ("static" binarization, as in Larochelle and Murray 2011 and the IWAE paper of
Burda et al. 2016, section 5.2), so every epoch and every run with the same seed sees the same
bits; the test images are binarized from the test set alone.

The arrays are cached as `<data_dir>/binarized_mnist_s<seed>.npz` with a `.sha256` sidecar
(see `cache`), derived from the cached MNIST (`mnist.load`).
"""

from __future__ import annotations

import numpy as np

from dl_jax.data import cache, fetch
from dl_jax.data.images import mnist
from dl_jax.errors import ConfigError

SPEC = mnist.SPEC  # the same keys, shapes and dtypes; images hold 0 or 1
SPLIT_STREAMS = {"train": 0, "test": 1}


def binarize(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """uint8 images -> uint8 {0, 1}: 1 with probability intensity = images / 255."""
  intensity = images.astype(np.float64) / 255.0
  return (rng.random(images.shape) < intensity).astype(np.uint8)


def build(raw: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
  """MNIST (`mnist.load`'s dict) with both image splits binarized from `seed`."""
  out = dict(raw)
  for split, stream in SPLIT_STREAMS.items():
    out[f"{split}_images"] = binarize(raw[f"{split}_images"],
                                      np.random.default_rng([seed, stream]))
  return out


def load(seed: int = 0, data_dir: str | None = None) -> dict[str, np.ndarray]:
  """Binarized MNIST of `seed`: train_images uint8[60000, 28, 28] in {0, 1}, train_labels,
  test_images uint8[10000, 28, 28] in {0, 1}, test_labels; built and cached on first use."""
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ConfigError(f"binarization seed={seed!r} must be an integer >= 0")
  root = fetch.data_dir(data_dir)
  return cache.cached(root / f"binarized_mnist_s{int(seed)}.npz",
                      lambda: build(mnist.load("mnist", data_dir), int(seed)), _check,
                      what="binarized MNIST")


def _check(arrays: dict[str, np.ndarray]) -> str | None:
  """What is wrong with a binarized MNIST dict, or None."""
  problem = cache.check_arrays(arrays, SPEC, mnist.NUM_CLASSES)
  if problem:
    return problem
  for split in SPLIT_STREAMS:
    if arrays[f"{split}_images"].max() > 1:
      return f"{split}_images hold values other than 0 and 1"
  return None
