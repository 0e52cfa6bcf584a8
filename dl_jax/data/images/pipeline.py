"""Image classification input pipeline: preprocessing, validation split, and a batch stream whose
order is a pure function of (seed, epoch), so a resumed run sees exactly the batches an uninterrupted
one would."""

import dataclasses
from typing import Iterator

import numpy as np

from dl_jax.errors import ConfigError


def normalize(images: np.ndarray) -> np.ndarray:
  """uint8 pixels -> float32 in [-1, 1] by x -> (x - 127.5) / 127.5 (eq. 2.58), channels-last;
  float data (e.g. signals, already channels-last) are taken as they are."""
  if images.dtype != np.uint8:
    return images.astype(np.float32)
  x = (images.astype(np.float32) - 127.5) / 127.5
  return x[..., None] if x.ndim == 3 else x


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # float32 [N, H, W, C] (signals: [N, length, C])
  labels: np.ndarray  # int32 [N]

  def __len__(self) -> int:
    return len(self.labels)


def train_val_test(raw: dict, val_size: int, split_seed: int = 0,
                   train_subset: int = 0) -> tuple[Split, Split, Split]:
  """Holds out `val_size` training images (a fixed random choice by `split_seed`) for validation.

  `train_subset` > 0 keeps only that many of the remaining training images (small-data studies).
  """
  n = len(raw["train_labels"])
  if not 0 <= val_size < n:
    raise ConfigError(f"val_size={val_size} is out of range; accepted: 0 <= val_size < {n}")
  order = np.random.default_rng(split_seed).permutation(n)
  val_idx, train_idx = np.sort(order[:val_size]), np.sort(order[val_size:])
  if train_subset:
    if not 0 < train_subset <= len(train_idx):
      raise ConfigError(f"train_subset={train_subset} is out of range; accepted: 0 (all) or "
                        f"1..{len(train_idx)}")
    train_idx = np.sort(order[val_size:val_size + train_subset])
  images = normalize(raw["train_images"])
  labels = raw["train_labels"].astype(np.int32)
  return (Split(images[train_idx], labels[train_idx]), Split(images[val_idx], labels[val_idx]),
          Split(normalize(raw["test_images"]), raw["test_labels"].astype(np.int32)))


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
  """The example order of one epoch: a pure function of (seed, epoch)."""
  return np.random.default_rng([seed, epoch]).permutation(n)


def train_batches(split: Split, batch_size: int, seed: int, start_step: int,
                  process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
  """Yields the batches of steps start_step, start_step + 1, ... forever.

  Each epoch drops its last incomplete batch, so step s always reads batch s % steps_per_epoch of
  epoch s // steps_per_epoch. In a multi-host run every process yields its own slice of the global
  batch.
  """
  steps_per_epoch = len(split) // batch_size
  if steps_per_epoch == 0:
    raise ConfigError(f"batch_size={batch_size} exceeds the {len(split)} training examples")
  local = batch_size // process_count
  step = start_step
  while True:
    epoch, index = divmod(step, steps_per_epoch)
    order = epoch_order(seed, epoch, len(split))
    for i in range(index, steps_per_epoch):
      ids = order[i * batch_size:(i + 1) * batch_size][process_index * local:(process_index + 1) * local]
      yield {"image": split.images[ids], "label": split.labels[ids]}
    step = (epoch + 1) * steps_per_epoch


def eval_batches(split: Split, batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict]:
  """Fixed-size batches covering the whole split once; padding rows have mask 0."""
  local = batch_size // process_count
  for start in range(0, len(split), batch_size):
    ids = np.arange(start, start + batch_size)[process_index * local:(process_index + 1) * local]
    mask = ids < len(split)
    ids = np.where(mask, ids, 0)
    yield {"image": split.images[ids], "label": split.labels[ids], "mask": mask.astype(np.float32)}


class StepBatches:
  """`batches(step)`: the training batch of `step` (this process's slice), from one
  `train_batches` stream that is restarted whenever the steps asked for are not consecutive (a
  resume), so the batches stay pure in (seed, step)."""

  def __init__(self, split: Split, batch_size: int, seed: int, process_index: int = 0,
               process_count: int = 1):
    self._args = (split, batch_size, seed)
    self._process = (process_index, process_count)
    self._stream, self._next_step = None, None

  def __call__(self, step: int) -> dict:
    if self._next_step != step:
      self._stream = train_batches(*self._args, step, *self._process)
    self._next_step = step + 1
    return next(self._stream)


def map_batches(fn, images: np.ndarray, batch_size: int) -> np.ndarray:
  """np.concatenate of fn(chunk) over chunks of `batch_size` images, the last one zero-padded
  to the full size (one compilation) and its padding rows dropped: float32 [N, ...]."""
  parts = []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk), *chunk.shape[1:]),
                                             chunk.dtype)])
    parts.append(np.asarray(fn(padded), np.float32)[:len(chunk)])
  return np.concatenate(parts)
