"""YOLO v1 (Redmon et al. 2016, "You only look once", section 5.3.3, figures 5.33-5.34): the grid
encoding of boxes, the loss of the paper (its eq. 3), and decoding with non-maximum suppression.

The image is split into S x S cells; the cell holding an object's centre is responsible for it.
Each cell predicts B boxes (x, y, w, h, confidence) and one distribution over the C classes:
the network's raw output [..., S, S, B * 5 + C] holds, for box b, channels 5b .. 5b + 4, then
the C class logits. The activations:

- x, y = sigmoid(.): the centre's offset within the cell, in [0, 1];
- sqrt(w), sqrt(h) = sigmoid(.): the square roots of the box's size relative to the image (the
  loss compares square roots, as the paper, so the network predicts them; w = sqrt(w)^2);
- confidence = sigmoid(.);
- class probabilities = softmax of the logits (per cell, conditional on an object).

The loss (per image, summed over cells i and predictors j):

    lambda_coord sum 1obj_ij [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
  + sum 1obj_ij (C - C^)^2 + lambda_noobj sum 1noobj_ij C^2 + sum_i 1obj_i sum_c (p(c) - p^(c))^2

1obj_ij: predictor j of a cell with an object is "responsible" when its box has the highest IoU
with the truth among the B (when all B have IoU 0, the one whose (cx, cy, w, h) is nearest, as
darknet does, so that training can start); 1noobj_ij = 1 - 1obj_ij (every other predictor). The
confidence target C of the responsible predictor is its IoU with the truth (`rescore=True`, the
paper: confidence = Pr(object) * IoU) or 1 (`rescore=False`); the IoU is a target, no gradient
flows through it. The class term is the paper's squared error on the probabilities
(`class_loss="squared"`) or the cross-entropy of the logits (`"cross_entropy"`). When two
objects' centres fall in the same cell, the first of them (in the data's order) is its target.

At test time a box's score for class c is confidence * p(c) (the paper's class-specific
confidence); boxes of every class above a score threshold go through non-maximum suppression
per class (`dl_jax.vision.boxes.nms`).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl_jax.vision import boxes as boxes_lib

CLASS_LOSSES = ("squared", "cross_entropy")


def split_outputs(raw: jax.Array, boxes_per_cell: int, num_classes: int) -> dict:
  """The activations of a raw grid [..., S, S, B * 5 + C] (float32): "xy" [..., S, S, B, 2],
  "sqrt_wh" [..., S, S, B, 2], "confidence" [..., S, S, B], "class_logits" and "class_probs"
  [..., S, S, C]."""
  raw = raw.astype(jnp.float32)
  if raw.shape[-1] != boxes_per_cell * 5 + num_classes:
    raise ValueError(f"a grid of {raw.shape[-1]} channels is not B * 5 + C = "
                     f"{boxes_per_cell} * 5 + {num_classes}")
  per_box = raw[..., :boxes_per_cell * 5].reshape(*raw.shape[:-1], boxes_per_cell, 5)
  logits = raw[..., boxes_per_cell * 5:]
  return {"xy": jax.nn.sigmoid(per_box[..., 0:2]), "sqrt_wh": jax.nn.sigmoid(per_box[..., 2:4]),
          "confidence": jax.nn.sigmoid(per_box[..., 4]), "class_logits": logits,
          "class_probs": jax.nn.softmax(logits, axis=-1)}


def cell_offsets(grid: int) -> jax.Array:
  """(column, row) of every cell: [S, S, 2], x along the width (the last spatial axis)."""
  rows, cols = jnp.meshgrid(jnp.arange(grid), jnp.arange(grid), indexing="ij")
  return jnp.stack([cols, rows], axis=-1).astype(jnp.float32)


def predicted_boxes(xy: jax.Array, sqrt_wh: jax.Array) -> jax.Array:
  """Boxes (x0, y0, x1, y1) relative to the image ([0, 1] units) from cell offsets xy and
  sqrt_wh [..., S, S, B, 2]: [..., S, S, B, 4]."""
  grid = xy.shape[-3]
  center = (cell_offsets(grid)[:, :, None, :] + xy) / grid
  return boxes_lib.center_to_corners(jnp.concatenate([center, jnp.square(sqrt_wh)], -1))


def make_targets(boxes: jax.Array, classes: jax.Array, grid: int, image_size: int) -> dict:
  """The grid targets of boxes [N, K, 4] (corners in pixels) and classes [N, K] (-1: no
  object): "object" [N, S, S] (1 in a responsible cell), "xy" [N, S, S, 2] (the centre within
  its cell), "sqrt_wh" [N, S, S, 2], "corners" [N, S, S, 4] (relative to the image), "class"
  [N, S, S] (0 where there is no object)."""
  boxes = jnp.asarray(boxes, jnp.float32) / image_size
  classes = jnp.asarray(classes, jnp.int32)
  num_objects = classes.shape[-1]
  center = boxes_lib.corners_to_center(boxes)
  cell_xy = jnp.clip(jnp.floor(center[..., :2] * grid), 0, grid - 1)
  cell = (cell_xy[..., 1] * grid + cell_xy[..., 0]).astype(jnp.int32)  # row-major [N, K]
  present = (cell[..., None] == jnp.arange(grid * grid)) & (classes >= 0)[..., None]
  rank = present * (num_objects - jnp.arange(num_objects))[:, None]  # the first object wins
  owner = jnp.argmax(rank, axis=-2)  # [N, S*S]
  has_object = jnp.any(present, axis=-2)

  def per_cell(values):  # [N, K, ...] -> [N, S, S, ...], the owner's values
    picked = jnp.take_along_axis(values, owner.reshape(owner.shape + (1,) * (values.ndim - 2)),
                                 axis=1)
    return picked.reshape(values.shape[:1] + (grid, grid) + values.shape[2:])

  obj = has_object.reshape(-1, grid, grid)
  return {"object": obj.astype(jnp.float32),
          "xy": per_cell(center[..., :2] * grid - cell_xy),
          "sqrt_wh": per_cell(jnp.sqrt(jnp.maximum(center[..., 2:4], 0))),
          "corners": per_cell(boxes),
          "class": jnp.where(obj, per_cell(jnp.maximum(classes, 0)), 0)}


def responsible_predictors(predicted: jax.Array, truth: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(one-hot [..., B] of the predictor with the highest IoU with the truth, ties at IoU 0 by
  the smallest squared distance of (cx, cy, w, h); the IoU [..., B]) for predicted boxes
  [..., B, 4] and truth [..., 4], both corners; no gradient."""
  predicted, truth = jax.lax.stop_gradient(predicted), jax.lax.stop_gradient(truth)
  ious = boxes_lib.iou(predicted, truth[..., None, :])
  distance = jnp.sum(jnp.square(boxes_lib.corners_to_center(predicted)
                                - boxes_lib.corners_to_center(truth)[..., None, :]), -1)
  key = jnp.where(jnp.any(ious > 0, axis=-1, keepdims=True), ious, -distance)
  return jax.nn.one_hot(jnp.argmax(key, axis=-1), predicted.shape[-2]), ious


def yolo_loss(raw: jax.Array, targets: dict, boxes_per_cell: int, num_classes: int,
              lambda_coord: float = 5.0, lambda_noobj: float = 0.5, rescore: bool = True,
              class_loss: str = "squared") -> tuple[jax.Array, dict]:
  """The loss of the module docstring per image: (loss [N], its terms {"coord", "size",
  "object", "no_object", "class"}, each [N] and unweighted). `targets`: `make_targets`."""
  if class_loss not in CLASS_LOSSES:
    raise ValueError(f"class_loss={class_loss!r}; accepted: {', '.join(CLASS_LOSSES)}")
  out = split_outputs(raw, boxes_per_cell, num_classes)
  predicted = predicted_boxes(out["xy"], out["sqrt_wh"])
  chosen, ious = responsible_predictors(predicted, targets["corners"])
  obj = targets["object"]
  responsible = chosen * obj[..., None]  # [N, S, S, B]
  confidence_target = ious if rescore else jnp.ones_like(ious)
  per_image = lambda x: jnp.sum(x, axis=tuple(range(1, x.ndim)))
  terms = {
      "coord": per_image(responsible * jnp.sum(jnp.square(out["xy"]
                                                          - targets["xy"][..., None, :]), -1)),
      "size": per_image(responsible * jnp.sum(jnp.square(out["sqrt_wh"]
                                                         - targets["sqrt_wh"][..., None, :]),
                                              -1)),
      "object": per_image(responsible * jnp.square(out["confidence"] - confidence_target)),
      "no_object": per_image((1 - responsible) * jnp.square(out["confidence"])),
  }
  if class_loss == "squared":
    one_hot = jax.nn.one_hot(targets["class"], num_classes)
    per_cell = jnp.sum(jnp.square(out["class_probs"] - one_hot), -1)
  else:
    per_cell = optax.softmax_cross_entropy_with_integer_labels(out["class_logits"],
                                                               targets["class"])
  terms["class"] = per_image(obj * per_cell)
  loss = (lambda_coord * (terms["coord"] + terms["size"]) + terms["object"]
          + lambda_noobj * terms["no_object"] + terms["class"])
  return loss, terms


def decode(raw: jax.Array, boxes_per_cell: int, num_classes: int,
           image_size: int) -> tuple[jax.Array, jax.Array]:
  """Every predictor's box in pixels, clipped to the image, [N, S * S * B, 4] (corners), and
  its class-specific scores confidence * p(c) [N, S * S * B, C]. Jittable."""
  out = split_outputs(raw, boxes_per_cell, num_classes)
  corners = jnp.clip(predicted_boxes(out["xy"], out["sqrt_wh"]), 0, 1) * image_size
  scores = out["confidence"][..., None] * out["class_probs"][..., None, :]  # [N, S, S, B, C]
  n = raw.shape[0]
  return corners.reshape(n, -1, 4), scores.reshape(n, -1, num_classes)


def detect(boxes: np.ndarray, scores: np.ndarray, nms_iou: float, score_threshold: float,
           max_detections: int = 100) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Detections per image from `decode`'s boxes [N, P, 4] and scores [N, P, C]: every (box,
  class) with score >= `score_threshold`, through non-maximum suppression per class; a list of
  (boxes [d, 4], classes [d], scores [d]) by descending score."""
  boxes, scores = np.asarray(boxes), np.asarray(scores)
  out = []
  for image_boxes, image_scores in zip(boxes, scores):
    where, cls = np.nonzero(image_scores >= score_threshold)
    candidate_scores = image_scores[where, cls]
    keep = boxes_lib.nms(image_boxes[where], candidate_scores, cls, nms_iou, score_threshold,
                         max_detections)
    out.append((image_boxes[where][keep], cls[keep].astype(np.int32), candidate_scores[keep]))
  return out
