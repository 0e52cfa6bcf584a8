"""dl_jax.data.images.canvas: digits pasted on canvases with tight boxes, masks and instances."""

import numpy as np
import pytest

from dl_jax import plots
from dl_jax.data import fetch
from dl_jax.data.images import canvas, mnist
from dl_jax.errors import ConfigError, DataError

K = 5


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A fresh data directory linking the cached MNIST and Fashion-MNIST of the default one."""
  root = tmp_path_factory.mktemp("canvas")
  for name in canvas.DATASETS:
    mnist.load(name)
    for suffix in (".npz", ".npz.sha256"):
      (root / f"{name}{suffix}").symlink_to(fetch.data_dir() / f"{name}{suffix}")
  return root


@pytest.fixture(scope="module")
def source():
  return mnist.load("mnist")


@pytest.fixture(scope="module")
def train(data_dir):
  return canvas.load("mnist", "train", 60, data_dir=str(data_dir))


def _tightness_violations(images, boxes, counts):
  """How many boxes miss ink >= INK on one of their four sides, plus how many ink pixels lie
  outside every box of their canvas."""
  bad = 0
  for image, rows, n in zip(images, boxes.astype(int), counts):
    ink = image >= canvas.INK
    covered = np.zeros_like(ink)
    for x0, y0, x1, y1 in rows[:n]:
      inside = ink[y0:y1, x0:x1]
      if inside.size == 0 or not (inside[0].any() and inside[-1].any() and inside[:, 0].any()
                                  and inside[:, -1].any()):
        bad += 1
      covered[max(y0, 0):y1, max(x0, 0):x1] = True
    bad += int((ink & ~covered).sum())
  return bad


def test_layout_and_padding(train):
  assert sorted(train) == ["boxes", "classes", "counts", "digit_indices", "images", "instances",
                           "masks"]
  assert train["images"].shape == (60, 64, 64) and train["images"].dtype == np.uint8
  assert train["boxes"].shape == (60, K, 4) and train["boxes"].dtype == np.float32
  assert train["classes"].dtype == np.int32 and train["counts"].dtype == np.int32
  assert train["masks"].dtype == np.uint8 and train["instances"].dtype == np.uint8
  counts = train["counts"]
  assert counts.min() == 1 and counts.max() == K and len(np.unique(counts)) == K
  placed = np.arange(K) < counts[:, None]
  assert (train["classes"][placed] >= 0).all() and (train["classes"][~placed] == -1).all()
  assert (train["boxes"][~placed] == 0).all() and (train["digit_indices"][~placed] == -1).all()
  x0, y0, x1, y1 = np.moveaxis(train["boxes"][placed], -1, 0)
  assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 64).all() and (y1 <= 64).all()
  assert (x1 > x0).all() and (y1 > y0).all()


def test_boxes_are_tight(train):
  images, boxes, counts = train["images"], train["boxes"], train["counts"]
  assert _tightness_violations(images, boxes, counts) == 0
  grown = boxes + np.array([-1, -1, 1, 1], np.float32)  # sides no longer touch the ink
  assert _tightness_violations(images, grown, counts) > 0
  shrunk = boxes + np.array([1, 1, -1, -1], np.float32)  # ink falls outside
  assert _tightness_violations(images, shrunk, counts) > 0


def test_masks_and_instances_match_images_and_boxes(train):
  images, masks, instances = train["images"], train["masks"], train["instances"]
  foreground = images >= canvas.FOREGROUND
  np.testing.assert_array_equal(masks > 0, foreground)
  np.testing.assert_array_equal(instances > 0, foreground)
  for i in range(len(images)):
    lookup = np.concatenate([[0], train["classes"][i] + 1])
    np.testing.assert_array_equal(masks[i], lookup[instances[i]])
    for k in range(train["counts"][i]):
      x0, y0, x1, y1 = train["boxes"][i, k].astype(int)
      owned = instances[i] == k + 1
      assert owned.any() and not owned[:y0].any() and not owned[y1:].any()
      assert not owned[:, :x0].any() and not owned[:, x1:].any()
  assert instances.max() == K and masks.max() <= canvas.NUM_CLASSES


def test_overlap_is_limited(train):
  pairs = 0
  for rows, n in zip(train["boxes"], train["counts"]):
    iou, cover = canvas.box_overlap(rows[:n, None], rows[None, :n])
    off = ~np.eye(n, dtype=bool)
    assert (iou[off] <= canvas.MAX_OVERLAP + 1e-6).all()
    assert (cover[off] <= canvas.MAX_COVER + 1e-6).all()
    pairs += off.sum()
  assert pairs > 50
  box = np.array([0, 0, 10, 10])
  np.testing.assert_allclose(canvas.box_overlap(box, np.array([5, 0, 15, 10])), (1 / 3, 0.5))
  np.testing.assert_allclose(canvas.box_overlap(box, np.array([2, 2, 4, 4])), (0.04, 1.0))


def test_digits_come_from_their_split(data_dir, source, train):
  val = canvas.load("mnist", "val", 40, data_dir=str(data_dir))
  test = canvas.load("mnist", "test", 40, data_dir=str(data_dir))
  sets = {}
  for name, arrays, labels, low, high in [
      ("train", train, source["train_labels"], 0, 55000),
      ("val", val, source["train_labels"], 55000, 60000),
      ("test", test, source["test_labels"], 0, 10000)]:
    placed = arrays["digit_indices"] >= 0
    indices = arrays["digit_indices"][placed]
    assert indices.min() >= low and indices.max() < high
    assert len(np.unique(indices)) == len(indices)  # without replacement
    np.testing.assert_array_equal(arrays["classes"][placed], labels[indices])
    sets[name] = set(indices.tolist())
  assert not sets["train"] & sets["val"]
  assert canvas.digit_stream(canvas.split_range("val"), np.arange(5000), 0).min() == 55000
  cycle = canvas.digit_stream(canvas.split_range("test"), np.arange(20000), 0)
  assert sorted(cycle[:10000]) == list(range(10000)) == sorted(cycle[10000:])


def _pasted_crop_matches(image, box, digit):
  """Whether the crop of `image` at `box` equals the tight crop of `digit` resized to a side."""
  x0, y0, x1, y1 = box.astype(int)
  crop = image[y0:y1, x0:x1]
  for side in range(canvas.SIDE_RANGE[0], canvas.SIDE_RANGE[1] + 1):
    patch = canvas.resize(digit[None], side)
    (a, b, c, d), = canvas.tight_box(patch)
    if (d - b, c - a) == crop.shape and np.array_equal(patch[0, b:d, a:c], crop):
      return True
  return False


def test_test_canvases_paste_test_digits(data_dir, source):
  single = canvas.load("mnist", "test", 6, min_objects=1, max_objects=1, data_dir=str(data_dir))
  assert (single["counts"] == 1).all()
  for image, box, index in zip(single["images"], single["boxes"][:, 0],
                               single["digit_indices"][:, 0]):
    assert _pasted_crop_matches(image, box, source["test_images"][index])
    assert not _pasted_crop_matches(image, box, source["train_images"][index])


def test_pure_in_seed_and_index(data_dir, train, source):
  longer = canvas.load("mnist", "train", 90, data_dir=str(data_dir))
  for key, value in train.items():
    np.testing.assert_array_equal(longer[key][:60], value)
  again = canvas.generate(source["train_images"], source["train_labels"],
                          canvas.split_range("train"), 60, size=64, min_objects=1,
                          max_objects=K, seed=0, stream=(0, 0))
  for key, value in train.items():
    np.testing.assert_array_equal(again[key], value)
  other = canvas.load("mnist", "train", 60, seed=1, data_dir=str(data_dir))
  assert not np.array_equal(other["images"], train["images"])
  assert not np.array_equal(other["digit_indices"], train["digit_indices"])


def test_min_objects_and_fashion(data_dir):
  full = canvas.load("fashion_mnist", "val", 12, size=96, min_objects=K, max_objects=K,
                     data_dir=str(data_dir))
  assert full["images"].shape == (12, 96, 96) and (full["counts"] == K).all()
  assert _tightness_violations(full["images"], full["boxes"], full["counts"]) == 0
  assert full["digit_indices"].min() >= 55000
  with pytest.raises(ConfigError, match="min_objects=12 digits do not fit"):
    canvas.load("mnist", "val", 2, size=40, min_objects=12, max_objects=12,
                data_dir=str(data_dir))


def test_resize_is_an_average():
  for side in (18, 28, 34):
    matrix = canvas.resize_matrix(28, side)
    np.testing.assert_allclose(matrix.sum(1), 1, rtol=1e-6)
  np.testing.assert_array_equal(canvas.resize_matrix(28, 28), np.eye(28))
  flat = np.full((1, 28, 28), 200, np.uint8)
  assert (canvas.resize(flat, 18) == 200).all() and (canvas.resize(flat, 34) == 200).all()


def test_cache_round_trip_and_corruption(data_dir, train):
  files = sorted(data_dir.glob("canvas_mnist_train_64px_1-5obj_s0_n60_*.npz"))
  assert len(files) == 1 and (data_dir / (files[0].name + ".sha256")).exists()
  again = canvas.load("mnist", "train", 60, data_dir=str(data_dir))
  for key, value in train.items():
    np.testing.assert_array_equal(again[key], value)
  canvas.load("mnist", "test", 3, data_dir=str(data_dir))
  path, = data_dir.glob("canvas_mnist_test_64px_1-5obj_s0_n3_*.npz")
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))
  with pytest.raises(DataError, match="unusable: its sha256"):
    canvas.load("mnist", "test", 3, data_dir=str(data_dir))


@pytest.mark.parametrize("kwargs, match", [
    (dict(dataset="cifar"), r"dataset='cifar' is invalid; accepted: mnist, fashion_mnist"),
    (dict(split="dev"), r"split='dev' is invalid; accepted: train, val, test"),
    (dict(count=-1), r"count=-1 is invalid; accepted: an integer >= 0"),
    (dict(size=30), r"size=30 is invalid; accepted: an integer from 34 to 512"),
    (dict(min_objects=3, max_objects=2), r"max_objects=2 is invalid; accepted: an integer from 3"),
    (dict(min_objects=0), r"min_objects=0 is invalid"),
    (dict(seed=-2), r"seed=-2 is invalid"),
])
def test_bad_arguments(kwargs, match, tmp_path):
  arguments = dict(dataset="mnist", split="train", count=2, data_dir=str(tmp_path)) | kwargs
  with pytest.raises(ConfigError, match=match):
    canvas.load(arguments.pop("dataset"), arguments.pop("split"), arguments.pop("count"),
                **arguments)
  assert not list(tmp_path.iterdir())


def test_canvas_grid_figure(train, tmp_path):
  n = 6
  predicted = train["boxes"][:n] + 1.5
  path = tmp_path / "canvas.png"
  plots.canvas_grid(train["images"][:n], train["boxes"][:n], train["classes"][:n], path,
                    "canvases", masks=train["masks"][:n], pred_boxes=predicted,
                    pred_classes=train["classes"][:n], pred_scores=np.full((n, K), 0.9),
                    columns=3)
  assert path.stat().st_size > 10_000
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
