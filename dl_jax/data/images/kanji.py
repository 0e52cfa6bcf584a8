"""Rendered kanji for one-shot learning: an Omniglot stand-in with 6,394 characters.

Source: `kanjidraw/data.json` of Debian's python3-kanjidraw (version pinned below), fetched with
`apt-get download` and read without installing. It is a JSON object mapping a stroke count
"1".."30" to {character: strokes}: 6,394 single CJK unified ideographs (U+4E00..U+9FA0), each
with that many strokes in stroke order, each stroke one straight segment [x0, y0, x1, y1] from
its start point to its end point, in integers 9..246 on a 0..255 grid with y pointing down.

`load` picks `num_classes` characters by a seeded permutation and renders `drawings` drawings of
each. Drawing d of character c is a pure function of (seed, c's code point, d), so it does not
depend on which other characters were picked: the character is centred on its bounding box and
scaled so that the box's longer side spans 75 % of the image, each stroke's endpoints are moved
independently by up to 6 % of that side, then a random affine map (rotation within +-10 degrees,
scale 0.8-1.05 per axis, shear within +-0.15, shift within +-10 % of the image) places it; the
segments are drawn as anti-aliased lines of width 6 % of the image, bright ink on black.

The distortions are sized so that pixels alone do about as well as on Omniglot: the nearest
neighbour on raw pixels classifies 28.7 % of 20-way 1-shot episodes on the held-out 20 % of the
default 1,623 characters (46.5 % 5-way; Omniglot: 26.7 % and 41.7 %, Vinyals et al. 2016).

The result is cached as `<data_dir>/kanji_<size>px_<drawings>x<num_classes>_s<seed>_<tag>.npz`
with a `.sha256` sidecar (see `cache`); later loads verify it and never modify it. The tag is a
digest of the rendering constants, so that changed constants never read old images.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pathlib
from collections.abc import Sequence

from absl import logging
import numpy as np

from dl_jax.data import cache, fetch
from dl_jax.errors import ConfigError, DataError

# python3-kanjidraw .deb (Debian bookworm, architecture all).
KANJIDRAW_DEB_VERSION = "0.2.3-2"
KANJIDRAW_DEB_SHA256 = "2fd448cebc44151162ff59d862c0151e8e840013f3e9f42e8dc29934e041da1e"
MEMBER = "usr/lib/python3/dist-packages/kanjidraw/data.json"
NUM_CHARACTERS = 6394
MAX_STROKES = 30
MAX_SIZE = 256

FILL = 0.75  # the longer side of a character's bounding box, as a fraction of the image
WIDTH = 0.06  # line width, as a fraction of the image
MAX_ROTATION = np.deg2rad(10.0)
SCALE_RANGE = (0.8, 1.05)
MAX_SHEAR = 0.15
MAX_SHIFT = 0.10  # fraction of the image
MAX_JITTER = 0.06  # fraction of the bounding box's longer side

_FAR = 1e4  # where padded segments lie, in pixels: they never reach the image
_CHUNK_PIXELS = 1 << 19  # (image, segment, pixel) triples rasterized at once
# Second word of the seed sequences; rendering uses (seed, code point >= 0x4E00, drawing).
_SELECT_STREAM, _SPLIT_STREAM = 1, 2


def load(data_dir: str | None = None, num_classes: int = 1623, drawings: int = 20,
         size: int = 28, seed: int = 0) -> dict[str, np.ndarray]:
  """Renders (or reads from the cache) `drawings` drawings of each of `num_classes` kanji.

  Args:
    data_dir: cache directory; default from `fetch.data_dir`.
    num_classes: how many characters, 1 to 6394; the default is the size of Omniglot.
    drawings: drawings per character.
    size: image side in pixels, 8 to 256.
    seed: picks the characters and their drawings.

  Returns:
    Dict with images uint8[num_classes * drawings, size, size] (ink bright on black), labels
    int32[num_classes * drawings] (class c's drawings at c * drawings ... (c + 1) * drawings - 1)
    and characters int32[num_classes], the code points of classes 0, 1, ... in increasing order.
  """
  _check_int("num_classes", num_classes, 1, NUM_CHARACTERS)
  _check_int("drawings", drawings, 1)
  _check_int("size", size, 8, MAX_SIZE)
  _check_int("seed", seed, 0)
  root = fetch.data_dir(data_dir)
  path = root / f"kanji_{size}px_{drawings}x{num_classes}_s{seed}_{render_tag()}.npz"
  check = functools.partial(_check, num_classes=num_classes, drawings=drawings, size=size)
  return cache.cached(path, lambda: _build(root, num_classes, drawings, size, seed), check)


def render_tag() -> str:
  """8 hex digits of the sha256 of the rendering constants."""
  constants = (FILL, WIDTH, float(MAX_ROTATION), SCALE_RANGE, MAX_SHEAR, MAX_SHIFT, MAX_JITTER)
  return hashlib.sha256(repr(constants).encode()).hexdigest()[:8]


def load_strokes(data_dir: str | None = None) -> dict[int, np.ndarray]:
  """The strokes of all 6,394 characters: code point -> float64[strokes, 4] of (x0, y0, x1, y1)."""
  root = fetch.data_dir(data_dir)
  logging.info("Fetching kanji strokes: Debian python3-kanjidraw=%s (downloaded, not installed)",
               KANJIDRAW_DEB_VERSION)
  archive = fetch.fetch_debian_archive(
      "python3-kanjidraw", KANJIDRAW_DEB_VERSION, KANJIDRAW_DEB_SHA256, root)
  return parse_strokes(fetch.read_member(archive, MEMBER), f"{archive}:{MEMBER}")


def parse_strokes(data: bytes, source: str = "data.json") -> dict[int, np.ndarray]:
  """Parses kanjidraw's data.json (see the module docstring); DataError if it is malformed."""
  try:
    by_count = json.loads(data)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise DataError(f"{source} is not JSON: {e}") from e
  if not isinstance(by_count, dict):
    raise DataError(f"{source} holds a {type(by_count).__name__}, expected an object.")
  strokes = {}
  for count, characters in by_count.items():
    for char, segments in characters.items():
      array = np.asarray(segments, np.float64)
      if (len(char) != 1 or array.shape != (int(count), 4) or int(count) > MAX_STROKES or
          not np.isfinite(array).all() or ord(char) in strokes):
        raise DataError(f"{source}: entry {char!r} under {count!r} is not {count} strokes of"
                        " 4 numbers, or is repeated.")
      strokes[ord(char)] = array
  if len(strokes) != NUM_CHARACTERS:
    raise DataError(f"{source} holds {len(strokes)} characters, expected {NUM_CHARACTERS}.")
  return strokes


def select_characters(code_points: Sequence[int], num_classes: int, seed: int) -> np.ndarray:
  """`num_classes` of the code points by a seeded permutation, as increasing int32.

  With one seed, the characters picked for fewer classes are among those picked for more.
  """
  pool = np.sort(np.asarray(code_points, np.int64))
  order = np.random.default_rng([seed, _SELECT_STREAM]).permutation(len(pool))
  return np.sort(pool[order[:num_classes]]).astype(np.int32)


def train_test_classes(num_classes: int, test_fraction: float = 0.2,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """A seeded split of the class ids 0..num_classes-1: (train_ids, test_ids), disjoint, sorted.

  The test part has round(test_fraction * num_classes) classes, at least one, and so does the
  train part.
  """
  _check_int("num_classes", num_classes, 2)
  _check_int("seed", seed, 0)
  if (isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or
      not 0 < test_fraction < 1):
    raise ConfigError(f"test_fraction={test_fraction!r} is invalid; accepted: a number strictly"
                      " between 0 and 1.")
  num_test = min(max(round(test_fraction * num_classes), 1), num_classes - 1)
  order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(num_classes)
  return (np.sort(order[num_test:]).astype(np.int32), np.sort(order[:num_test]).astype(np.int32))


def render(strokes: Sequence[np.ndarray], keys: np.ndarray, size: int = 28, affine: bool = True,
           jitter: bool = True) -> np.ndarray:
  """Draws characters: uint8[len(strokes), size, size].

  Args:
    strokes: per image, the character's strokes float[n, 4] (x0, y0, x1, y1), n <= 30.
    keys: int[len(strokes), 3] of (seed, code point, drawing); image i is a pure function of
      strokes[i] and keys[i].
    size: image side in pixels.
    affine: apply the random affine map (else the character is centred, unrotated, unscaled).
    jitter: move the strokes' endpoints at random.
  """
  keys = np.asarray(keys, np.int64).reshape(-1, 3)
  if len(keys) != len(strokes):
    raise ValueError(f"{len(strokes)} stroke sets but {len(keys)} keys.")
  segments = [_place(s, k, size, affine, jitter) for s, k in zip(strokes, keys)]
  return rasterize(segments, size)


def rasterize(segments: Sequence[np.ndarray], size: int) -> np.ndarray:
  """Draws line segments in pixel coordinates (x right, y down, pixel (r, c) centred at
  (c + 0.5, r + 0.5)) as anti-aliased lines of width WIDTH * size: uint8[len(segments), size,
  size]. Images with similar segment counts are drawn together, padded to the same count."""
  images = np.zeros((len(segments), size, size), np.uint8)
  counts = np.array([len(s) for s in segments], np.int64)
  order = np.argsort(counts, kind="stable")
  centres = np.arange(size, dtype=np.float32) + np.float32(0.5)
  pairs = max(1, _CHUNK_PIXELS // (size * size))
  start = 0
  while start < len(order):
    batch = order[start:start + max(1, pairs // max(1, counts[order[start]]))]
    while len(batch) > 1 and len(batch) * counts[batch[-1]] > pairs:
      batch = batch[:-1]
    images[batch] = _rasterize_padded([segments[i] for i in batch], centres, size)
    start += len(batch)
  return images


def _rasterize_padded(segments: list[np.ndarray], centres: np.ndarray, size: int) -> np.ndarray:
  padded = np.full((len(segments), max(1, max(len(s) for s in segments)), 4), _FAR, np.float32)
  for i, s in enumerate(segments):
    padded[i, :len(s)] = s
  ax, ay, bx, by = np.moveaxis(padded, -1, 0)[..., None]  # each [images, segments, 1]
  dx, dy = bx - ax, by - ay
  length2 = dx * dx + dy * dy
  inverse = np.divide(1, length2, out=np.zeros_like(length2), where=length2 > 0)
  u = centres - ax  # [images, segments, columns]
  v = centres - ay  # [images, segments, rows]
  # Nearest point of each segment to each pixel centre: a + t (b - a), t clipped to [0, 1].
  t = (u * dx)[:, :, None, :] + (v * dy)[:, :, :, None]
  t *= inverse[..., None]
  np.clip(t, 0, 1, out=t)
  ex = u[:, :, None, :] - t * dx[..., None]
  ey = v[:, :, :, None] - t * dy[..., None]
  distance = np.sqrt(np.min(ex * ex + ey * ey, axis=1))
  ink = np.clip(np.float32(WIDTH * size / 2 + 0.5) - distance, 0, 1)
  return np.rint(ink * 255).astype(np.uint8)


def _place(strokes: np.ndarray, key: np.ndarray, size: int, affine: bool,
           jitter: bool) -> np.ndarray:
  """One drawing's segments in pixel coordinates, float32[n, 4]."""
  strokes = np.asarray(strokes, np.float64)
  points = strokes.reshape(-1, 2)
  low, high = points.min(0), points.max(0)
  extent = max(float((high - low).max()), 1.0)
  points = (points - (low + high) / 2) / extent  # centred, longer side 1
  u = np.random.default_rng([int(k) for k in key]).uniform(-1, 1, 6 + 4 * MAX_STROKES)
  if jitter:
    points = points + MAX_JITTER * u[6:6 + 2 * len(points)].reshape(-1, 2)
  matrix, shift = np.eye(2), np.zeros(2)
  if affine:
    angle = MAX_ROTATION * u[0]
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shear = np.array([[1.0, MAX_SHEAR * u[3]], [0.0, 1.0]])
    mid, half = (SCALE_RANGE[1] + SCALE_RANGE[0]) / 2, (SCALE_RANGE[1] - SCALE_RANGE[0]) / 2
    matrix = rotation @ shear @ np.diag(mid + half * u[1:3])
    shift = MAX_SHIFT * u[4:6]
  pixels = size * (0.5 + shift + FILL * points @ matrix.T)
  return pixels.reshape(-1, 4).astype(np.float32)


def _build(root: pathlib.Path, num_classes: int, drawings: int, size: int,
           seed: int) -> dict[str, np.ndarray]:
  strokes = load_strokes(str(root))
  characters = select_characters(list(strokes), num_classes, seed)
  logging.info("Rendering %d drawings of %d kanji at %dx%d", drawings, num_classes, size, size)
  keys = np.stack(np.broadcast_arrays(
      seed, np.repeat(characters, drawings), np.tile(np.arange(drawings), num_classes)), -1)
  images = render([strokes[int(c)] for c in keys[:, 1]], keys, size)
  labels = np.repeat(np.arange(num_classes, dtype=np.int32), drawings)
  return {"images": images, "labels": labels, "characters": characters}


def _check(arrays: dict[str, np.ndarray], num_classes: int, drawings: int,
           size: int) -> str | None:
  """What is wrong with a kanji dataset dict, or None."""
  count = num_classes * drawings
  spec = {"images": ((count, size, size), np.uint8), "labels": ((count,), np.int32),
          "characters": ((num_classes,), np.int32)}
  problem = cache.check_arrays(arrays, spec, num_classes)
  if problem:
    return problem
  if not np.array_equal(arrays["labels"], np.repeat(np.arange(num_classes), drawings)):
    return f"labels are not 0..{num_classes - 1} each repeated {drawings} times"
  characters = arrays["characters"]
  if (np.diff(characters) <= 0).any() or characters.min() < 0x4E00 or characters.max() > 0x9FFF:
    return "characters are not increasing CJK unified ideograph code points"
  return None


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
  if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or
      (high is not None and value > high)):
    accepted = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    raise ConfigError(f"{name}={value!r} is invalid; accepted: {accepted}.")
