"""Localization and detection (section 5.3.3): boxes, NMS, COCO-style AP against pycocotools, the
YOLO v1 loss (hand-built values, gradient against a loop reference, perfect prediction and a
shifted one), the registered models, and a short real training of each head of the task."""

import contextlib
import io
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax.vision import average_precision as ap_lib
from dl_jax.vision import boxes, yolo

# --------------------------------------------------------------------------------------- boxes


def test_conversions_round_trip_and_iou_values():
  corners = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 0, 30, 4.0]])
  center = boxes.corners_to_center(corners)
  np.testing.assert_allclose(center[0], [5, 5, 10, 10])
  np.testing.assert_allclose(boxes.center_to_corners(center), corners)
  expected = np.array([[1, 25 / 175, 0], [25 / 175, 1, 0], [0, 0, 1]])
  np.testing.assert_allclose(boxes.iou_matrix(corners, corners), expected)
  on_device = boxes.iou_matrix(jnp.asarray(corners, jnp.float32), jnp.asarray(corners,
                                                                               jnp.float32))
  assert isinstance(on_device, jax.Array)
  np.testing.assert_allclose(on_device, expected, rtol=1e-6)
  np.testing.assert_allclose(ap_lib.coco_iou(corners, corners), expected, rtol=1e-12)
  assert boxes.iou(np.zeros(4), np.zeros(4)) == 0  # empty union


def test_nms_keeps_the_best_of_each_overlapping_group_per_class():
  b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [30, 30, 40, 40],
                [31, 30, 41, 40], [50, 50, 60, 60]], float)
  scores = np.array([0.9, 0.95, 0.8, 0.7, 0.6, 0.05])
  classes = np.array([0, 0, 1, 0, 0, 0])
  # 1 suppresses 0 (IoU 0.68), 2 is another class, 3 suppresses 4, 5 is under the threshold.
  np.testing.assert_array_equal(boxes.nms(b, scores, classes, 0.5, 0.1), [1, 2, 3])
  np.testing.assert_array_equal(boxes.nms(b, scores, classes, 0.5, 0.1, max_detections=2),
                                [1, 2])
  # A looser overlap threshold keeps them all (the suppression above is the IoU's doing).
  np.testing.assert_array_equal(boxes.nms(b, scores, classes, 0.9, 0.0), [1, 0, 2, 3, 4, 5])
  assert len(boxes.nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5)) == 0


# ------------------------------------------------------------------------ average precision


def random_detections(seed: int, images: int = 8, classes: int = 4):
  """Ground truths and detections of a mediocre detector: jittered true boxes (some with the
  wrong class, some doubled), misses, false positives, an image without objects and a class
  that never occurs."""
  rng = np.random.default_rng(seed)
  truth_boxes, truth_classes, det_boxes, det_classes, det_scores = [], [], [], [], []
  for i in range(images):
    count = 0 if i == 3 else int(rng.integers(1, 6))
    xy = rng.uniform(0, 50, (count, 2))
    wh = rng.uniform(5, 25, (count, 2))
    gt = np.concatenate([xy, xy + wh], 1)
    gt_cls = rng.integers(0, classes - 1, count)  # the last class never occurs
    dets, cls, scores = [], [], []
    for box, c in zip(gt, gt_cls):
      for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):  # missed, found, found twice
        dets.append(box + rng.normal(0, 0.05 * np.r_[wh.mean(), wh.mean(), wh.mean(),
                                                      wh.mean()] * rng.uniform(0.1, 1.5)))
        cls.append(c if rng.random() > 0.1 else rng.integers(0, classes))
        scores.append(rng.uniform(0.05, 1))
    for _ in range(int(rng.integers(0, 4))):  # false positives anywhere
      lo = rng.uniform(0, 60, 2)
      dets.append(np.concatenate([lo, lo + rng.uniform(3, 20, 2)]))
      cls.append(rng.integers(0, classes))
      scores.append(rng.uniform(0, 0.8))
    dets = np.array(dets).reshape(-1, 4)
    dets[:, 2:] = np.maximum(dets[:, 2:], dets[:, :2] + 0.5)
    truth_boxes.append(gt)
    truth_classes.append(gt_cls)
    det_boxes.append(dets)
    det_classes.append(np.array(cls, int))
    det_scores.append(np.round(np.array(scores), 2))  # rounding makes ties in score
  return truth_boxes, truth_classes, det_boxes, det_classes, det_scores


def pycocotools_eval(truth_boxes, truth_classes, det_boxes, det_classes, det_scores, classes):
  from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
  from pycocotools.cocoeval import COCOeval  # pylint: disable=g-import-not-at-top
  xywh = lambda b: [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]
  annotations, results = [], []
  for i, (gt, gt_cls) in enumerate(zip(truth_boxes, truth_classes)):
    for box, c in zip(gt, gt_cls):
      w, h = xywh(box)[2:]
      annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                          "category_id": int(c) + 1, "bbox": xywh(box), "area": w * h,
                          "iscrowd": 0})
  for i, (dets, cls, scores) in enumerate(zip(det_boxes, det_classes, det_scores)):
    for box, c, s in zip(dets, cls, scores):
      results.append({"image_id": i + 1, "category_id": int(c) + 1, "bbox": xywh(box),
                      "score": float(s)})
  with contextlib.redirect_stdout(io.StringIO()):
    truth = COCO()
    truth.dataset = {"images": [{"id": i + 1} for i in range(len(truth_boxes))],
                     "annotations": annotations,
                     "categories": [{"id": c + 1} for c in range(classes)]}
    truth.createIndex()
    evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
  return evaluation


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_equals_pycocotools(seed):
  data = random_detections(seed)
  ours = ap_lib.evaluate(*data, num_classes=4)
  coco = pycocotools_eval(*data, classes=4)
  coco_precision = coco.eval["precision"][:, :, :, 0, 2]  # area "all", 100 detections
  np.testing.assert_array_equal(np.where(np.isnan(ours["precision"]), -1, ours["precision"]),
                                coco_precision)
  assert np.isnan(ours["ap"][:, 3]).all() and (ours["ap"][0, :3] > 0).all()
  for name, index in (("map", 0), ("map_50", 1), ("map_75", 2)):
    assert math.isclose(ours[name], coco.stats[index], rel_tol=0, abs_tol=1e-9), name
  np.testing.assert_allclose(ours["recall"][:, :3], coco.eval["recall"][:, :3, 0, 2])
  assert 0.1 < ours["map"] < ours["map_50"] < 0.9  # a mediocre detector, as built


def test_average_precision_of_a_perfect_and_of_a_useless_detector():
  truth_boxes, truth_classes, *_ = random_detections(0)
  scores = [np.linspace(1, 0.5, len(c)) for c in truth_classes]
  perfect = ap_lib.evaluate(truth_boxes, truth_classes, truth_boxes, truth_classes, scores, 4)
  assert perfect["map"] == perfect["map_50"] == 1.0
  shifted = [b + np.array([30, 30, 30, 30]) for b in truth_boxes]  # negative control
  useless = ap_lib.evaluate(truth_boxes, truth_classes, shifted, truth_classes, scores, 4)
  assert useless["map_50"] < 0.1


# ------------------------------------------------------------------------------------- YOLO

GRID, B, C, SIZE = 2, 2, 2, 8


def single_object_targets():
  """One object, pixels (0, 0)-(4, 4) on an 8x8 image with a 2x2 grid: cell (0, 0), centre
  (0.5, 0.5) within the cell, sqrt(w) = sqrt(h) = sqrt(0.5), class 0."""
  return yolo.make_targets(jnp.array([[[0, 0, 4, 4], [0, 0, 0, 0]]], jnp.float32),
                           jnp.array([[0, -1]]), GRID, SIZE)


def test_targets_put_each_object_in_the_cell_of_its_centre():
  t = yolo.make_targets(jnp.array([[[0, 0, 4, 4], [5, 1, 8, 3], [1, 1, 3, 3]]], jnp.float32),
                        jnp.array([[1, 0, 0]]), GRID, SIZE)
  np.testing.assert_array_equal(t["object"][0], [[1, 1], [0, 0]])
  np.testing.assert_array_equal(t["class"][0], [[1, 0], [0, 0]])  # cell (0, 0): the first
  np.testing.assert_allclose(t["xy"][0, 0, 1], [(6.5 / 8 * 2) - 1, 2 / 8 * 2])
  np.testing.assert_allclose(t["sqrt_wh"][0, 0, 1], np.sqrt([3 / 8, 2 / 8]), rtol=1e-6)
  np.testing.assert_allclose(t["corners"][0, 0, 0], [0, 0, 0.5, 0.5])


def test_loss_of_a_hand_built_example():
  targets = single_object_targets()
  raw = jnp.zeros((1, GRID, GRID, B * 5 + C))
  # All sigmoids 0.5: every predicted box is centred in its cell, w = h = 0.25, IoU with the
  # truth 0.25; both predictors of cell (0, 0) tie and the first is responsible.
  loss, terms = yolo.yolo_loss(raw, targets, B, C)
  size = 2 * (0.5 - math.sqrt(0.5)) ** 2
  expected = {"coord": 0.0, "size": size, "object": (0.5 - 0.25) ** 2,
              "no_object": 7 * 0.25, "class": 0.25 + 0.25}
  for name, value in expected.items():
    np.testing.assert_allclose(terms[name], [value], rtol=1e-6, atol=1e-7, err_msg=name)
  np.testing.assert_allclose(loss, [5 * size + 0.0625 + 0.5 * 1.75 + 0.5], rtol=1e-6)
  not_rescored, _ = yolo.yolo_loss(raw, targets, B, C, rescore=False)
  np.testing.assert_allclose(not_rescored - loss, [0.25 - 0.0625], rtol=1e-5)
  # The second predictor of cell (0, 0) given the true size: IoU 1, so it is responsible.
  logit = math.log(math.sqrt(0.5) / (1 - math.sqrt(0.5)))
  raw = raw.at[0, 0, 0, 5 + 2:5 + 4].set(logit)
  loss, terms = yolo.yolo_loss(raw, targets, B, C)
  np.testing.assert_allclose(terms["size"], [0.0], atol=1e-7)
  np.testing.assert_allclose(loss, [(0.5 - 1) ** 2 + 0.5 * 7 * 0.25 + 0.5], rtol=1e-6)


def _owners(boxes_px, classes, n):
  owners = {}
  for k in range(boxes_px.shape[1]):
    if classes[n, k] >= 0:
      x0, y0, x1, y1 = [float(v) / SIZE for v in boxes_px[n, k]]
      cell = (min(int((y0 + y1) / 2 * GRID), GRID - 1), min(int((x0 + x1) / 2 * GRID),
                                                             GRID - 1))
      owners.setdefault(cell, (x0, y0, x1, y1, int(classes[n, k])))
  return owners


def _choice(values, row, col, truth):
  """(responsible predictor, its IoU) of one cell from numpy outputs `values` [B * 5 + C]."""
  sig = lambda v: 1 / (1 + np.exp(-v))
  tx0, ty0, tx1, ty1, _ = truth
  best, best_iou, best_key = None, 0.0, -np.inf
  for b in range(B):
    px, py = (col + sig(values[5 * b])) / GRID, (row + sig(values[5 * b + 1])) / GRID
    pw, ph = sig(values[5 * b + 2]) ** 2, sig(values[5 * b + 3]) ** 2
    inter = (max(min(px + pw / 2, tx1) - max(px - pw / 2, tx0), 0)
             * max(min(py + ph / 2, ty1) - max(py - ph / 2, ty0), 0))
    iou = inter / (pw * ph + (tx1 - tx0) * (ty1 - ty0) - inter)
    key = iou if iou > 0 else -10 - ((px - (tx0 + tx1) / 2) ** 2 + (py - (ty0 + ty1) / 2) ** 2
                                     + (pw - (tx1 - tx0)) ** 2 + (ph - (ty1 - ty0)) ** 2)
    if key > best_key:
      best, best_iou, best_key = b, iou, key
  return best, best_iou


def reference_loss(raw, values, boxes_px, classes, lambda_coord=5.0, lambda_noobj=0.5):
  """The paper's loss written out with loops, scalar by scalar (rescore, squared class error).
  The responsible predictors and their IoU (targets, no gradient) are chosen from `values`,
  the outputs as a numpy array, so that jax.grad traces the rest."""
  sig = lambda v: 1 / (1 + jnp.exp(-v))
  total = 0.0
  for n in range(raw.shape[0]):
    owners = _owners(boxes_px, classes, n)
    for row in range(GRID):
      for col in range(GRID):
        out, truth = raw[n, row, col], owners.get((row, col))
        best, best_iou = (None, 0.0) if truth is None else _choice(values[n, row, col], row,
                                                                   col, truth)
        for b in range(B):
          conf = sig(out[5 * b + 4])
          if b != best:
            total += lambda_noobj * conf ** 2
            continue
          tx0, ty0, tx1, ty1, label = truth
          total += lambda_coord * ((sig(out[5 * b]) - ((tx0 + tx1) / 2 * GRID - col)) ** 2
                                   + (sig(out[5 * b + 1]) - ((ty0 + ty1) / 2 * GRID - row)) ** 2
                                   + (sig(out[5 * b + 2]) - math.sqrt(tx1 - tx0)) ** 2
                                   + (sig(out[5 * b + 3]) - math.sqrt(ty1 - ty0)) ** 2)
          total += (conf - best_iou) ** 2
          probs = jax.nn.softmax(out[B * 5:])
          total += sum((probs[c] - (c == label)) ** 2 for c in range(C))
  return total


def test_loss_and_gradient_match_a_loop_reference():
  rng = np.random.default_rng(0)
  boxes_px = np.array([[[0.5, 1, 4, 3.5], [4.5, 4, 7.5, 7.0], [0, 0, 0, 0]],
                       [[1, 4.5, 6, 7.5], [5, 0.5, 7.5, 3], [2, 2, 3, 3]]], np.float32)
  classes = np.array([[1, 0, -1], [0, 1, 1]])
  raw = jnp.asarray(rng.normal(0, 1.0, (2, GRID, GRID, B * 5 + C)), jnp.float32)
  targets = yolo.make_targets(jnp.asarray(boxes_px), jnp.asarray(classes), GRID, SIZE)
  ours = jax.jit(lambda r: yolo.yolo_loss(r, targets, B, C)[0].sum())
  values = np.asarray(raw, np.float64)
  reference = lambda r: reference_loss(r, values, boxes_px, classes)
  np.testing.assert_allclose(ours(raw), reference(raw), rtol=1e-5)
  grad = jax.grad(ours)(raw)
  assert np.isfinite(grad).all() and np.abs(grad).max() > 0
  np.testing.assert_allclose(grad, jax.grad(reference)(raw), rtol=1e-4, atol=1e-6)


def perfect_outputs(targets, confident: float = 12.0):
  """Raw outputs that reproduce the targets: the first predictor of each object cell on the
  true box with confidence ~1, every other confidence ~0, the right class ~certain."""
  logit = lambda p: jnp.log(p / (1 - p))
  clip = lambda p: jnp.clip(p, 1e-6, 1 - 1e-6)
  obj = targets["object"][..., None]
  first = jnp.concatenate([logit(clip(targets["xy"])), logit(clip(targets["sqrt_wh"])),
                           jnp.where(obj > 0, confident, -confident)], -1)
  second = jnp.concatenate([jnp.zeros_like(first[..., :4]),
                            jnp.full_like(first[..., :1], -confident)], -1)
  classes = confident * jax.nn.one_hot(targets["class"], C)
  return jnp.concatenate([first, second, classes], -1)


def test_perfect_prediction_has_zero_loss_and_a_shifted_one_does_not():
  targets = yolo.make_targets(jnp.array([[[0.5, 1, 4, 3.5], [4.5, 4, 7.5, 7.0]]], jnp.float32),
                              jnp.array([[1, 0]]), GRID, SIZE)
  raw = perfect_outputs(targets)
  loss, _ = yolo.yolo_loss(raw, targets, B, C)
  assert float(loss[0]) < 1e-3
  shifted = raw.at[..., 0].add(1.0)  # every predicted x moved: negative control
  assert float(yolo.yolo_loss(shifted, targets, B, C)[0][0]) > 0.1
  # decode + NMS find exactly the two boxes, in pixels, with their classes
  found = yolo.detect(*yolo.decode(raw, B, C, SIZE), nms_iou=0.5, score_threshold=0.5)[0]
  order = np.argsort(found[1])
  np.testing.assert_allclose(found[0][order], [[4.5, 4, 7.5, 7.0], [0.5, 1, 4, 3.5]], atol=1e-3)
  np.testing.assert_array_equal(found[1][order], [0, 1])
  assert (found[2] > 0.99).all()


def test_detection_counts_sort_each_box_into_hit_duplicate_wrong_class_or_false():
  truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50.0]])
  truth_classes = np.array([1, 2, 3])
  found = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [52, 0, 60, 8.0]])
  found_classes = np.array([1, 1, 5, 1])
  counts = ap_lib.detection_counts([truth], [truth_classes], [found], [found_classes],
                                   [np.array([0.9, 0.8, 0.7, 0.6])])
  assert counts == {"objects": 3, "detections": 4, "hits": 1, "duplicates": 1,
                    "wrong_class": 1, "false_positives": 1, "missed": 2, "too_few": 0,
                    "exact": 0, "too_many": 1}
  exact = ap_lib.detection_counts([truth], [truth_classes], [truth], [truth_classes],
                                  [np.ones(3)])
  assert (exact["hits"], exact["missed"], exact["exact"]) == (3, 0, 1)


# ------------------------------------------------------------------------- models and task


@pytest.mark.parametrize("name,hp,shape", [
    ("localizer_cnn", {}, (2, 14)),
    ("yolo_cnn", {}, (2, 8, 8, 20)),
    ("yolo_cnn", {"grid": 4, "boxes_per_cell": 3, "num_classes": 5}, (2, 4, 4, 20)),
])
def test_models_give_the_family_shapes(name, hp, shape):
  from dl_jax.models import registry  # pylint: disable=g-import-not-at-top
  model = registry.build(name, **hp)
  x = jnp.zeros((2, 64, 64, 1))
  out = jax.eval_shape(lambda x: model.init_with_output(jax.random.PRNGKey(0), x)[0], x)
  assert out.shape == shape == registry.get(name).output_shape(2, **hp)
  with pytest.raises(ValueError, match="power of 2"):
    jax.eval_shape(lambda x: registry.build("yolo_cnn", grid=6).init(jax.random.PRNGKey(0), x),
                   x)


def short_run(tmp_path, config_name, **overrides):
  """A few real training steps of an experiment in this process; its results and metrics."""
  import importlib  # pylint: disable=g-import-not-at-top
  from dl_jax import engine  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"experiments.configs.{config_name}").get_config()
  config.update({"train_size": 512, "val_size": 32, "test_size": 64, "batch_size": 32,
                 "eval_batch_size": 64, "num_epochs": 1, "log_every_steps": 4,
                 "checkpoint_every_steps": 100, "figure_count": 4, **overrides})
  results = engine.run(config, str(tmp_path))
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert (tmp_path / "detections.png").read_bytes()[:4] == b"\x89PNG"
  return results, [r for r in records if r["split"] == "train"]


def test_single_object_localizer_trains(tmp_path):
  results, train = short_run(tmp_path, "localize_mnist", learning_rate=3e-3)
  assert train[-1]["box_mse"] < 0.6 * train[0]["box_mse"]  # the boxes are being learnt
  assert 0.2 < results["test_mean_iou"] <= 1 and 0 <= results["test_accuracy"] <= 1
  assert results["test_both"] <= min(results["test_accuracy"], results["test_iou_at_least_half"])


def test_yolo_detector_trains_and_is_measured(tmp_path):
  results, train = short_run(tmp_path, "yolo_mnist", model_kwargs={"widths": (8, 16, 32, 32)},
                             warmup_steps=0, learning_rate=1e-2)
  assert train[-1]["loss"] < 0.5 * train[0]["loss"] and train[-1]["coord"] < train[0]["coord"]
  for key in ("test_map_50", "test_map", "test_hits_per_object", "test_canvases_exact"):
    assert 0 <= results[key] <= 1, key
  assert results["test_map"] <= results["test_map_50"]
  per_object = sum(results[f"test_{k}_per_object"] for k in ("hits", "duplicates",
                                                             "wrong_class", "false_positives"))
  assert math.isclose(per_object, results["test_boxes_per_object"], rel_tol=1e-9)
  assert math.isclose(results["test_hits_per_object"] + results["test_missed_per_object"], 1)
