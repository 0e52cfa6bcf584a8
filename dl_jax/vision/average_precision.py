"""Average precision of detections, COCO-style (the evaluation of section 5.3.3's detector).

For one category set and the COCO protocol of pycocotools' COCOeval with the area range "all",
at most `max_detections` per image and category (COCO: 100), no crowd regions:

- per image and class, the detections by descending score (a stable sort) are matched greedily
  to the ground truths: each takes, among the ground truths not yet taken, the one of highest
  IoU if that IoU >= the threshold t (ties: the last one, as COCOeval); per threshold t in
  0.50, 0.55, ..., 0.95;
- per class, the detections of all images by descending score give the precision-recall curve
  (precision = TP / (TP + FP), recall = TP / number of ground truths); the precision is made
  non-increasing from the right, read at the 101 recall levels 0, 0.01, ..., 1 (the first
  detection reaching each level; 0 beyond the last recall reached) and averaged: AP(t, class);
- mAP@0.5 is the mean AP over the classes that have ground truths at t = 0.5, mAP@[.5:.95]
  the mean over those classes and the ten thresholds.

IoU follows pycocotools' convention on (x, y, w, h) boxes, areas w * h, no +1. The tests check
the numbers against pycocotools itself.
"""

from typing import Sequence

import numpy as np

# As COCOeval's Params, to the last bit (e.g. 0.7000000000000001).
IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
RECALL_LEVELS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)


def coco_iou(detections: np.ndarray, truths: np.ndarray) -> np.ndarray:
  """IoU [d, g] of corner boxes, computed as pycocotools' bbIou does on (x, y, w, h) (float64,
  the same operations in the same order)."""
  d = np.asarray(detections, np.float64).reshape(-1, 4)
  g = np.asarray(truths, np.float64).reshape(-1, 4)
  dx, dy, dw, dh = d[:, 0], d[:, 1], d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]
  gx, gy, gw, gh = g[:, 0], g[:, 1], g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
  w = np.minimum((dw + dx)[:, None], (gw + gx)[None]) - np.maximum(dx[:, None], gx[None])
  h = np.minimum((dh + dy)[:, None], (gh + gy)[None]) - np.maximum(dy[:, None], gy[None])
  inter = w * h
  union = (dw * dh)[:, None] + (gw * gh)[None] - inter
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where((w > 0) & (h > 0), inter / union, 0.0)


def match(scores: np.ndarray, ious: np.ndarray, thresholds: np.ndarray,
          max_detections: int) -> tuple[np.ndarray, np.ndarray]:
  """Greedy matching of one image and class. `ious` [d, g] in the order of `scores` [d].

  Returns (order, matched): the indices of the detections kept, by descending score (stable),
  at most `max_detections`, and matched [T, len(order)] (True: a true positive at threshold t).
  """
  order = np.argsort(-scores, kind="mergesort")[:max_detections]
  ious = ious[order]
  taken = np.zeros((len(thresholds), ious.shape[1]), bool)
  matched = np.zeros((len(thresholds), len(order)), bool)
  limits = np.minimum(thresholds, 1 - 1e-10)
  if ious.shape[1] == 0:
    return order, matched
  rows = np.arange(len(thresholds))
  for d in range(len(order)):
    candidate = np.where(taken, -np.inf, ious[d][None, :])  # [T, g]
    last_best = candidate.shape[1] - 1 - np.argmax(candidate[:, ::-1], axis=1)
    best = candidate[rows, last_best]
    hit = best >= limits
    matched[:, d] = hit
    taken[rows[hit], last_best[hit]] = True
  return order, matched


def evaluate(truth_boxes: Sequence[np.ndarray], truth_classes: Sequence[np.ndarray],
             boxes: Sequence[np.ndarray], classes: Sequence[np.ndarray],
             scores: Sequence[np.ndarray], num_classes: int, max_detections: int = 100,
             thresholds: np.ndarray = IOU_THRESHOLDS) -> dict:
  """COCO-style AP (see the module docstring). Per image i: truth_boxes[i] [g, 4] corners,
  truth_classes[i] [g] ints in [0, num_classes); boxes[i] [d, 4], classes[i] [d], scores[i]
  [d] of the detections. Classes outside [0, num_classes) are ignored.

  Returns {"precision": [T, 101, K] (NaN for a class without ground truth), "ap": [T, K],
  "recall": [T, K] (the recall of all detections), "map": mAP@[.5:.95], "map_50", "map_75"
  (NaN when no class has a ground truth), "truths": [K] counts}.
  """
  if not len(truth_boxes) == len(truth_classes) == len(boxes) == len(classes) == len(scores):
    raise ValueError("truth_boxes, truth_classes, boxes, classes and scores need one entry per "
                     "image")
  thresholds = np.asarray(thresholds, np.float64)
  num_t = len(thresholds)
  per_class_scores = [[] for _ in range(num_classes)]
  per_class_matched = [[] for _ in range(num_classes)]
  truths = np.zeros(num_classes, np.int64)
  for gt_box, gt_cls, det_box, det_cls, det_score in zip(truth_boxes, truth_classes, boxes,
                                                         classes, scores):
    gt_box, gt_cls = np.asarray(gt_box).reshape(-1, 4), np.asarray(gt_cls).reshape(-1)
    det_box, det_cls = np.asarray(det_box).reshape(-1, 4), np.asarray(det_cls).reshape(-1)
    det_score = np.asarray(det_score, np.float64).reshape(-1)
    for k in np.unique(np.concatenate([gt_cls, det_cls])):
      if not 0 <= k < num_classes:
        continue
      gt_k, det_k = gt_box[gt_cls == k], det_cls == k
      truths[k] += len(gt_k)
      order, matched = match(det_score[det_k], coco_iou(det_box[det_k], gt_k), thresholds,
                             max_detections)
      per_class_scores[k].append(det_score[det_k][order])
      per_class_matched[k].append(matched)

  precision = np.full((num_t, len(RECALL_LEVELS), num_classes), np.nan)
  recall = np.full((num_t, num_classes), np.nan)
  for k in range(num_classes):
    if truths[k] == 0:
      continue
    all_scores = np.concatenate(per_class_scores[k]) if per_class_scores[k] else np.zeros(0)
    order = np.argsort(-all_scores, kind="mergesort")
    matched = (np.concatenate(per_class_matched[k], axis=1) if per_class_matched[k]
               else np.zeros((num_t, 0), bool))[:, order]
    tp = np.cumsum(matched, axis=1).astype(float)
    fp = np.cumsum(~matched, axis=1).astype(float)
    for t in range(num_t):
      rc = tp[t] / truths[k]
      pr = tp[t] / (fp[t] + tp[t] + np.spacing(1))
      pr = np.maximum.accumulate(pr[::-1])[::-1]  # non-increasing from the right
      at = np.searchsorted(rc, RECALL_LEVELS, side="left")  # the first detection reaching it
      reached = at < len(pr)
      precision[t, :, k] = 0.0
      precision[t, reached, k] = pr[at[reached]]
      recall[t, k] = rc[-1] if len(rc) else 0.0

  has_truth = truths > 0

  def mean_ap(t_index) -> float:
    values = precision[t_index][..., has_truth]
    return float(np.mean(values)) if values.size else float("nan")

  return {"precision": precision, "ap": precision.mean(axis=1), "recall": recall,
          "map": mean_ap(slice(None)), "map_50": mean_ap(_threshold_index(thresholds, 0.5)),
          "map_75": mean_ap(_threshold_index(thresholds, 0.75)), "truths": truths}


def _threshold_index(thresholds: np.ndarray, value: float):
  """The index of `value` among `thresholds` (as COCOeval: exact equality), or an empty
  selection."""
  hits = np.flatnonzero(np.isclose(thresholds, value, rtol=0, atol=1e-12))
  return hits[0] if len(hits) else slice(0, 0)


def detection_counts(truth_boxes: Sequence[np.ndarray], truth_classes: Sequence[np.ndarray],
                     boxes: Sequence[np.ndarray], classes: Sequence[np.ndarray],
                     scores: Sequence[np.ndarray], iou_threshold: float = 0.5) -> dict:
  """What a detector's final boxes (e.g. those above a score threshold) get right and wrong:
  the notes' question of a shortage or surplus of boxes (section 5.3.3). Per image, the
  detections by descending score are matched greedily: a detection is a "hit" when it has IoU
  >= `iou_threshold` with a ground truth of its class not yet taken (the highest such IoU); a
  "duplicate" when its best same-class overlap >= the threshold is with a ground truth already
  taken; "wrong_class" when it overlaps only ground truths of other classes; a "false_positive"
  otherwise. Ground truths left unmatched are "missed". Also the number of canvases with fewer
  ("too_few"), exactly as many ("exact") or more ("too_many") detections than objects.
  Returns integer counts, with "objects" and "detections" the totals."""
  out = dict.fromkeys(("objects", "detections", "hits", "duplicates", "wrong_class",
                       "false_positives", "missed", "too_few", "exact", "too_many"), 0)
  for gt_box, gt_cls, det_box, det_cls, det_score in zip(truth_boxes, truth_classes, boxes,
                                                         classes, scores):
    gt_box, gt_cls = np.asarray(gt_box).reshape(-1, 4), np.asarray(gt_cls).reshape(-1)
    det_box, det_cls = np.asarray(det_box).reshape(-1, 4), np.asarray(det_cls).reshape(-1)
    ious = coco_iou(det_box, gt_box)  # [d, g]
    same = det_cls[:, None] == gt_cls[None, :]
    taken = np.zeros(len(gt_box), bool)
    for d in np.argsort(-np.asarray(det_score, np.float64).reshape(-1), kind="mergesort"):
      free = np.where(same[d] & ~taken, ious[d], -1.0)
      if len(free) and free.max() >= iou_threshold:
        taken[np.argmax(free)] = True
        out["hits"] += 1
      elif np.any(same[d] & (ious[d] >= iou_threshold)):
        out["duplicates"] += 1
      elif np.any(ious[d] >= iou_threshold):
        out["wrong_class"] += 1
      else:
        out["false_positives"] += 1
    out["objects"] += len(gt_box)
    out["detections"] += len(det_box)
    out["missed"] += int(np.sum(~taken))
    out["too_few" if len(det_box) < len(gt_box) else "exact" if len(det_box) == len(gt_box)
        else "too_many"] += 1
  return out
