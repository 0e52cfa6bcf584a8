"""Canvases of real MNIST / Fashion-MNIST digits with tight boxes, class masks and instance ids.

The detection and segmentation data of the notes' 5.3.3 (localization, YOLO) and 5.3.4
(segmentation, UNet): each canvas is black, with 1 to `max_objects` digits pasted at random
positions and scales. Canvas i of a split is a pure function of (dataset, split, seed, i and the
parameters), so it does not depend on `count`:

- Digits: "train" uses the first 55,000 training digits, "val" the last 5,000 (VAL_DIGITS),
  "test" the 10,000 test digits only. Slot k of canvas i takes position p = i * max_objects + k
  of an endless stream of seeded permutations of the split's digits (permutation p // N at place
  p % N), so no digit repeats before the split's N digits are used up.
- Geometry: the number of digits is drawn uniformly from min_objects..max_objects; each digit is
  resized to a square of SIDE_RANGE pixels (inclusive, uniform; the 28 px digit scaled by
  0.64-1.21) by antialiased bilinear resampling (`resize`) and pasted at a uniform position that
  keeps it inside the canvas. A placement is rejected when the digit's tight box has an IoU above
  MAX_OVERLAP with an earlier one, or when their intersection covers more than MAX_COVER of
  either box (a thin "1" inside a "0" has a small IoU). After RETRIES rejected positions the
  canvas stops adding digits, so `counts` can fall short of the number drawn (rarely: about 2 %
  of 64x64 canvases drawn with 5 digits). A canvas left with fewer than min_objects digits is
  drawn again from the next random stream (same digits), at most ATTEMPTS times, after which the
  parameters are refused.
- Pixels combine by maximum. A digit's tight box holds its pasted pixels >= INK, with x1, y1
  exclusive. A pixel belongs to a digit where its pasted intensity is >= FOREGROUND; where digits
  overlap, to the one brightest there (the earlier on a tie). Boxes, classes, instance ids and
  digit_indices are in paste order.

The arrays are cached as `<data_dir>/canvas_<dataset>_<split>_<params>.npz` with a `.sha256`
sidecar (see `cache`); `<params>` ends with a digest of the constants above, so changed
constants never read old canvases. `python -m dl_jax.data.images.canvas --dataset=mnist
--out=canvas.png` draws examples with their boxes and masks.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib

from absl import logging
import numpy as np

from dl_jax.data import cache, fetch
from dl_jax.data.images import mnist
from dl_jax.errors import ConfigError

DATASETS = mnist.NAMES
SPLITS = ("train", "val", "test")
NUM_CLASSES = mnist.NUM_CLASSES  # masks hold 0 (background) and 1 + class
DIGIT_SIZE = 28
VAL_DIGITS = 5000  # the last training digits, kept for "val"
SIDE_RANGE = (18, 34)  # pasted digit side in pixels, inclusive
MAX_OVERLAP = 0.15  # largest IoU of a digit's tight box with an earlier one
MAX_COVER = 0.35  # largest fraction of either box that their intersection may cover
INK = 64  # a pasted pixel >= INK lies inside its digit's tight box
FOREGROUND = 128  # a pasted pixel >= FOREGROUND is the digit's in masks and instances
RETRIES = 40  # positions tried per digit
ATTEMPTS = 50  # random streams tried per canvas to reach min_objects
MAX_OBJECTS = 20
MAX_CANVAS = 512

_CHUNK = 2048  # canvases composed at once
_PERMUTATION_STREAM, _CANVAS_STREAM = 1, 2  # first word of the seed sequences


def load(dataset: str, split: str, count: int, *, size: int = 64, min_objects: int = 1,
         max_objects: int = 5, seed: int = 0, data_dir: str | None = None) -> dict[str, np.ndarray]:
  """Builds (or reads from the cache) `count` canvases of one split.

  Args:
    dataset: "mnist" or "fashion_mnist".
    split: "train", "val" or "test" (see the module docstring for their digits).
    count: number of canvases, >= 0.
    size: canvas side in pixels, SIDE_RANGE[1] to MAX_CANVAS.
    min_objects, max_objects: the number of digits per canvas, 1 <= min <= max <= MAX_OBJECTS.
    seed: picks digits and geometry.
    data_dir: cache directory; default from `fetch.data_dir`.

  Returns:
    Dict with images uint8[C, size, size]; boxes float32[C, max_objects, 4] (x0, y0, x1, y1) in
    pixels, x1/y1 exclusive, padding rows 0; classes int32[C, max_objects] (-1 = padding);
    counts int32[C]; masks uint8[C, size, size] (0 background, 1 + class); instances
    uint8[C, size, size] (0 background, k for the k-th digit, 1-based); digit_indices
    int32[C, max_objects]: each digit's index into the source's train_images (train, val) or
    test_images (test), -1 = padding.
  """
  if dataset not in DATASETS:
    raise ConfigError(f"dataset={dataset!r} is invalid; accepted: {', '.join(DATASETS)}.")
  if split not in SPLITS:
    raise ConfigError(f"split={split!r} is invalid; accepted: {', '.join(SPLITS)}.")
  _check_int("count", count, 0)
  _check_int("size", size, SIDE_RANGE[1], MAX_CANVAS)
  _check_int("min_objects", min_objects, 1, MAX_OBJECTS)
  _check_int("max_objects", max_objects, min_objects, MAX_OBJECTS)
  _check_int("seed", seed, 0)
  root = fetch.data_dir(data_dir)
  name = (f"canvas_{dataset}_{split}_{size}px_{min_objects}-{max_objects}obj_s{seed}_n{count}_"
          f"{constants_tag()}.npz")
  check = functools.partial(_check, count=count, size=size, min_objects=min_objects,
                            max_objects=max_objects)

  def build():
    source = mnist.load(dataset, str(root))
    prefix = "test" if split == "test" else "train"
    logging.info("Pasting %s %s digits on %d canvases of %dx%d", dataset, split, count, size,
                 size)
    return generate(source[f"{prefix}_images"], source[f"{prefix}_labels"], split_range(split),
                    count, size=size, min_objects=min_objects, max_objects=max_objects,
                    seed=seed, stream=(DATASETS.index(dataset), SPLITS.index(split)))

  return cache.cached(root / name, build, check, what="canvas dataset")


def constants_tag() -> str:
  """8 hex digits of the sha256 of the generation constants."""
  constants = (VAL_DIGITS, SIDE_RANGE, MAX_OVERLAP, MAX_COVER, INK, FOREGROUND, RETRIES,
               ATTEMPTS, "v1")
  return hashlib.sha256(repr(constants).encode()).hexdigest()[:8]


def split_range(split: str) -> range:
  """The indices of a split's digits in its source array (train_images or test_images)."""
  if split == "train":
    return range(0, 60000 - VAL_DIGITS)
  if split == "val":
    return range(60000 - VAL_DIGITS, 60000)
  return range(0, 10000)


def digit_stream(pool: range, positions: np.ndarray, seed: int, stream=()) -> np.ndarray:
  """The digits at `positions` of the split's endless stream of seeded permutations of `pool`."""
  positions = np.asarray(positions, np.int64)
  out = np.empty(positions.shape, np.int64)
  epochs = positions // len(pool)
  for epoch in np.unique(epochs):
    order = np.random.default_rng([_PERMUTATION_STREAM, seed, *stream, int(epoch)]).permutation(
        len(pool))
    at = epochs == epoch
    out[at] = pool.start + order[positions[at] % len(pool)]
  return out


@functools.lru_cache(maxsize=None)
def resize_matrix(source: int, side: int) -> np.ndarray:
  """float32[side, source]: antialiased bilinear resampling of one axis (a triangle filter
  whose support widens by source / side when shrinking), rows summing to 1."""
  scale = side / source
  support = max(1.0, 1.0 / scale)
  centres = (np.arange(side) + 0.5) / scale - 0.5
  weights = np.maximum(0, 1 - np.abs(np.arange(source)[None] - centres[:, None]) / support)
  return (weights / weights.sum(1, keepdims=True)).astype(np.float32)


def resize(digits: np.ndarray, side: int) -> np.ndarray:
  """uint8[n, side, side]: square uint8 images [n, s, s] resized by `resize_matrix`."""
  matrix = resize_matrix(digits.shape[-1], side)
  out = matrix @ digits.astype(np.float32) @ matrix.T
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def tight_box(patches: np.ndarray) -> np.ndarray:
  """int64[n, 4] (x0, y0, x1, y1), exclusive ends, of the pixels >= INK of patches [n, s, s];
  (0, 0, 0, 0) for a patch without such pixels."""
  ink = patches >= INK
  cols, rows = ink.any(1), ink.any(2)
  side = patches.shape[-1]

  def ends(mask):
    first = np.argmax(mask, 1)
    last = side - np.argmax(mask[:, ::-1], 1)
    empty = ~mask.any(1)
    return np.where(empty, 0, first), np.where(empty, 0, last)

  x0, x1 = ends(cols)
  y0, y1 = ends(rows)
  return np.stack([x0, y0, x1, y1], -1)


def box_overlap(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(IoU, intersection / smaller area) of boxes a [..., 4] and b [..., 4] (x0, y0, x1, y1),
  broadcast; 0 where the denominator is 0."""
  width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
  height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
  inter = width * height
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
  smaller = np.minimum(area(a), area(b))
  union = area(a) + area(b) - inter
  ratio = lambda d: np.divide(inter, d, out=np.zeros(np.broadcast(inter, d).shape), where=d > 0)
  return ratio(union), ratio(smaller)


def generate(images: np.ndarray, labels: np.ndarray, pool: range, count: int, *, size: int,
             min_objects: int, max_objects: int, seed: int, stream=()) -> dict[str, np.ndarray]:
  """The canvases 0..count-1 from source `images` uint8[N, 28, 28] and `labels`, drawing digits
  from `pool` (indices into `images`); `stream` (ints) separates datasets and splits."""
  k = max_objects
  indices = digit_stream(pool, np.arange(count * k).reshape(count, k), seed, stream)
  out = {
      "images": np.zeros((count, size, size), np.uint8),
      "boxes": np.zeros((count, k, 4), np.float32),
      "classes": np.full((count, k), -1, np.int32),
      "counts": np.zeros(count, np.int32),
      "masks": np.zeros((count, size, size), np.uint8),
      "instances": np.zeros((count, size, size), np.uint8),
      "digit_indices": np.full((count, k), -1, np.int32),
  }
  for start in range(0, count, _CHUNK):
    canvases = np.arange(start, min(count, start + _CHUNK))
    todo = canvases
    for attempt in range(ATTEMPTS):
      layout = _layout(images[indices[todo]], todo, attempt, size, min_objects, k, seed, stream)
      done = layout["counts"] >= min_objects
      for key, value in layout.items():
        out[key][todo[done]] = value[done]
      todo = todo[~done]
      if not len(todo):
        break
    else:
      raise ConfigError(
          f"min_objects={min_objects} digits do not fit on a {size}x{size} canvas with the "
          "overlap limits; accepted: a smaller min_objects or a larger size.")
  placed = np.arange(k) < out["counts"][:, None]
  out["digit_indices"] = np.where(placed, indices, -1).astype(np.int32)
  out["classes"] = np.where(placed, labels[np.maximum(out["digit_indices"], 0)], -1).astype(
      np.int32)
  for slot in range(k):
    owned = out["instances"] == slot + 1
    out["masks"][owned] = np.broadcast_to((out["classes"][:, slot] + 1)[:, None, None],
                                          owned.shape)[owned]
  return out


def _layout(digits: np.ndarray, canvases: np.ndarray, attempt: int, size: int, min_objects: int,
            k: int, seed: int, stream) -> dict[str, np.ndarray]:
  """Places digits [n, k, 28, 28] on the canvases with these indices, for one attempt."""
  n = len(canvases)
  draws = np.stack([
      np.random.default_rng([_CANVAS_STREAM, seed, *stream, int(c), attempt]).random(
          1 + k * (1 + 2 * RETRIES)) for c in canvases])
  wanted = min_objects + np.floor(draws[:, 0] * (k - min_objects + 1)).astype(np.int64)
  sides = SIDE_RANGE[0] + np.floor(draws[:, 1:1 + k] * (SIDE_RANGE[1] - SIDE_RANGE[0] + 1))
  sides = sides.astype(np.int64)
  positions = draws[:, 1 + k:].reshape(n, k, RETRIES, 2)
  layers = np.zeros((n, k, size, size), np.uint8)
  boxes = np.zeros((n, k, 4), np.int64)
  counts = np.zeros(n, np.int64)
  for slot in range(k):
    adding = (counts == slot) & (slot < wanted)  # no earlier slot failed
    for side in np.unique(sides[adding, slot]):
      group = np.flatnonzero(adding & (sides[:, slot] == side))
      patches = resize(digits[group, slot], int(side))
      local = tight_box(patches)
      corners = np.floor(positions[group, slot] * (size - side + 1)).astype(np.int64)
      candidates = local[:, None] + np.tile(corners, 2)  # [g, RETRIES, 4]
      iou, cover = box_overlap(candidates[:, :, None], boxes[group, None, :slot])
      ok = ((iou <= MAX_OVERLAP) & (cover <= MAX_COVER)).all(-1)  # [g, RETRIES]
      ok &= (local[:, 2] > local[:, 0])[:, None]
      found = ok.any(1)
      choice = np.argmax(ok, 1)[found]
      group, patches = group[found], patches[found]
      x, y = corners[found, choice, 0], corners[found, choice, 1]
      boxes[group, slot] = candidates[found, choice]
      counts[group] += 1
      span = np.arange(side)
      rows = (y[:, None] + span)[:, :, None]
      cols = (x[:, None] + span)[:, None, :]
      layers[group[:, None, None], slot, rows, cols] = patches
  owner = np.argmax(layers, 1)  # first brightest digit
  brightest = np.max(layers, 1)
  foreground = brightest >= FOREGROUND
  instances = np.where(foreground, owner + 1, 0).astype(np.uint8)
  return {"images": brightest, "boxes": boxes.astype(np.float32),
          "counts": counts.astype(np.int32), "instances": instances}


def _check(arrays: dict[str, np.ndarray], count: int, size: int, min_objects: int,
           max_objects: int) -> str | None:
  """What is wrong with a canvas dataset dict, or None."""
  plane = (count, size, size)
  spec = {"images": (plane, np.uint8), "boxes": ((count, max_objects, 4), np.float32),
          "classes": ((count, max_objects), np.int32), "counts": ((count,), np.int32),
          "masks": (plane, np.uint8), "instances": (plane, np.uint8),
          "digit_indices": ((count, max_objects), np.int32)}
  problem = cache.check_arrays(arrays, spec, NUM_CLASSES)
  if problem or not count:
    return problem
  counts = arrays["counts"]
  if counts.min() < min_objects or counts.max() > max_objects:
    return f"counts range from {counts.min()} to {counts.max()}, expected {min_objects} to " \
           f"{max_objects}"
  placed = np.arange(max_objects) < counts[:, None]
  classes = arrays["classes"]
  if (classes[~placed] != -1).any() or (classes[placed] < 0).any() or classes.max() >= \
      NUM_CLASSES:
    return "classes are not 0..9 for the placed digits and -1 for padding"
  if (arrays["boxes"][~placed] != 0).any() or (arrays["digit_indices"][placed] < 0).any():
    return "padding boxes are not 0 or placed digits lack an index"
  if arrays["masks"].max() > NUM_CLASSES or (arrays["instances"].max((1, 2)) > counts).any():
    return "masks or instances hold values out of range"
  return None


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
  if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or
      (high is not None and value > high)):
    accepted = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    raise ConfigError(f"{name}={value!r} is invalid; accepted: {accepted}.")


def main(argv) -> None:
  """Draws example canvases of one split with their boxes and masks into --out."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from dl_jax import plots  # pylint: disable=g-import-not-at-top
  del argv
  f = flags.FLAGS
  arrays = load(f.dataset, f.split, f.count, size=f.size, max_objects=f.max_objects, seed=f.seed,
                data_dir=f.data_dir or None)
  plots.canvas_grid(arrays["images"], arrays["boxes"], arrays["classes"], pathlib.Path(f.out),
                    f"{f.dataset} canvases ({f.split}, {f.size}x{f.size}, 1-{f.max_objects} "
                    "objects)", masks=arrays["masks"], columns=min(8, f.count))
  print(f"wrote {f.out}")


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_enum("dataset", "mnist", DATASETS, "source of the digits")
  flags.DEFINE_enum("split", "test", SPLITS, "which split's canvases")
  flags.DEFINE_integer("count", 16, "canvases drawn")
  flags.DEFINE_integer("size", 64, "canvas side in pixels")
  flags.DEFINE_integer("max_objects", 5, "most digits per canvas")
  flags.DEFINE_integer("seed", 0, "seed of the canvases")
  flags.DEFINE_string("data_dir", "", "cache directory (default: $DL_JAX_DATA_DIR or ~/.cache)")
  flags.DEFINE_string("out", "canvas.png", "PNG written")
  app.run(main)
