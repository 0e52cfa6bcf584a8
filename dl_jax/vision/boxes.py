"""Bounding boxes (section 5.3.3): the two encodings, their overlap, non-maximum suppression.

A box is four numbers on the last axis: "corners" (x0, y0, x1, y1), x1 and y1 exclusive, or
"center" (cx, cy, w, h), the notes' (x, y, w, h) with (x, y) the centre. The overlap of two
boxes is their intersection over union, IoU = |A n B| / |A u B| with areas w * h (no +1, as
pycocotools). Conversions and IoU take numpy or JAX arrays and return the same kind.
"""

import jax
import jax.numpy as jnp
import numpy as np


def _xp(*arrays):
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def corners_to_center(boxes):
  """(x0, y0, x1, y1) -> (cx, cy, w, h) on the last axis."""
  xp = _xp(boxes)
  lo, hi = boxes[..., :2], boxes[..., 2:4]
  return xp.concatenate([(lo + hi) / 2, hi - lo], axis=-1)


def center_to_corners(boxes):
  """(cx, cy, w, h) -> (x0, y0, x1, y1) on the last axis."""
  xp = _xp(boxes)
  center, size = boxes[..., :2], boxes[..., 2:4]
  return xp.concatenate([center - size / 2, center + size / 2], axis=-1)


def area(boxes):
  """Areas of corner boxes [..., 4] -> [...] (0 for empty or inverted boxes)."""
  xp = _xp(boxes)
  size = xp.maximum(boxes[..., 2:4] - boxes[..., :2], 0)
  return size[..., 0] * size[..., 1]


def iou(a, b):
  """IoU of corner boxes a [..., 4] and b [..., 4], broadcast: [...]; 0 where the union is
  empty."""
  xp = _xp(a, b)
  lo = xp.maximum(a[..., :2], b[..., :2])
  hi = xp.minimum(a[..., 2:4], b[..., 2:4])
  size = xp.maximum(hi - lo, 0)
  inter = size[..., 0] * size[..., 1]
  union = area(a) + area(b) - inter
  return xp.where(union > 0, inter / xp.where(union > 0, union, 1), 0)


def iou_matrix(a, b):
  """IoU of every pair: a [n, 4], b [m, 4] (corners) -> [n, m]."""
  return iou(a[:, None, :], b[None, :, :])


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float,
        score_threshold: float = 0.0, max_detections: int = 100) -> np.ndarray:
  """Greedy non-maximum suppression per class: the boxes with score >= `score_threshold`, by
  descending score (ties: the earlier index first); a box is dropped when its IoU with a kept
  box of the same class exceeds `iou_threshold`. Returns the kept indices [k], k <=
  `max_detections`, by descending score."""
  boxes, scores, classes = np.asarray(boxes), np.asarray(scores), np.asarray(classes)
  candidates = np.flatnonzero(scores >= score_threshold)
  candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
  keep = []
  for cls in np.unique(classes[candidates]):
    order = candidates[classes[candidates] == cls]
    overlaps = iou_matrix(boxes[order], boxes[order])
    alive = np.ones(len(order), bool)
    for i in range(len(order)):
      if alive[i]:
        keep.append(order[i])
        alive[i + 1:] &= overlaps[i, i + 1:] <= iou_threshold
  keep = np.asarray(keep, np.int64)
  return keep[np.lexsort((keep, -scores[keep]))][:max_detections]
