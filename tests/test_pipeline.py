"""The input pipeline: preprocessing (eq. 2.58), the split, and a (seed, epoch)-pure order."""

import itertools

import numpy as np
import pytest

from dl_jax.data.images import pipeline
from dl_jax.errors import ConfigError


def fake_raw(n_train=100, n_test=30):
  rng = np.random.default_rng(0)
  return {"train_images": rng.integers(0, 256, (n_train, 4, 4), dtype=np.uint8),
          "train_labels": np.arange(n_train) % 10,
          "test_images": rng.integers(0, 256, (n_test, 4, 4), dtype=np.uint8),
          "test_labels": np.arange(n_test) % 10}


def test_normalize_maps_to_minus_one_one():
  x = pipeline.normalize(np.array([[[0, 255], [127, 128]]], np.uint8))
  assert x.shape == (1, 2, 2, 1) and x.dtype == np.float32
  np.testing.assert_allclose(x[0, :, :, 0], [[-1, 1], [-0.5 / 127.5, 0.5 / 127.5]])


def test_split_is_disjoint_and_fixed():
  raw = fake_raw()
  train, val, test = pipeline.train_val_test(raw, val_size=20)
  assert (len(train), len(val), len(test)) == (80, 20, 30)
  train2, val2, _ = pipeline.train_val_test(raw, val_size=20)
  np.testing.assert_array_equal(val.images, val2.images)
  rows = {r.tobytes() for r in train.images} & {r.tobytes() for r in val.images}
  assert not rows
  small, _, _ = pipeline.train_val_test(raw, val_size=20, train_subset=8)
  assert len(small) == 8
  with pytest.raises(ConfigError, match="val_size=100"):
    pipeline.train_val_test(raw, val_size=100)


def test_stream_is_pure_function_of_seed_and_step():
  train, _, _ = pipeline.train_val_test(fake_raw(), val_size=0)
  straight = list(itertools.islice(pipeline.train_batches(train, 32, seed=3, start_step=0), 10))
  resumed = list(itertools.islice(pipeline.train_batches(train, 32, seed=3, start_step=4), 6))
  for a, b in zip(straight[4:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
  # 3 steps per epoch: each epoch is a permutation without repeats, and epochs differ.
  epoch0 = np.concatenate([b["label"] for b in straight[:3]])
  assert len(epoch0) == 96
  assert not np.array_equal(straight[0]["image"], straight[3]["image"])
  other_seed = next(pipeline.train_batches(train, 32, seed=4, start_step=0))
  assert not np.array_equal(other_seed["image"], straight[0]["image"])


def test_process_slices_tile_the_global_batch():
  train, _, _ = pipeline.train_val_test(fake_raw(), val_size=0)
  whole = next(pipeline.train_batches(train, 32, seed=0, start_step=5))
  parts = [next(pipeline.train_batches(train, 32, 0, 5, process_index=i, process_count=4))
           for i in range(4)]
  np.testing.assert_array_equal(np.concatenate([p["image"] for p in parts]), whole["image"])


def test_eval_batches_cover_split_once_with_mask():
  _, _, test = pipeline.train_val_test(fake_raw(), val_size=0)
  batches = list(pipeline.eval_batches(test, 16))
  assert [b["image"].shape[0] for b in batches] == [16, 16]
  assert sum(b["mask"].sum() for b in batches) == 30
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:30], test.labels)
