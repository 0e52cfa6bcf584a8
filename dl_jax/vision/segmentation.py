"""Measures of a segmentation (section 5.3.4): a class per pixel against the true class mask.

    confusion = confusion_matrix(true, predicted, num_classes)   # jittable; sums over batches
    iou_per_class(confusion), mean_iou(confusion), pixel_accuracy(confusion)
    boundary_f1(true, predicted, num_classes, tolerance=2)         # numpy / scipy.ndimage

The confusion matrix counts pixels: row = true class, column = predicted class (the convention
of `sklearn.metrics.confusion_matrix`). The IoU (Jaccard index) of class c is
TP / (TP + FP + FN) = C[c, c] / (row c + column c - C[c, c]); NaN where the class is neither in
the truth nor in the predictions, and the means skip NaN.

The boundary F1 (BF) score of Csurka, Larlus and Perronnin (2013), "What is a good evaluation
measure for semantic segmentation?", scores the borders the IoU hardly sees: for each image and
each class in its true or predicted mask, the boundary pixels of the class's true and predicted
regions; precision is the share of predicted boundary pixels within `tolerance` pixels
(Euclidean) of a true boundary pixel, recall the share of true boundary pixels within
`tolerance` of a predicted one, and BF their harmonic mean (0 where the class is in one mask
only). An image's score is the mean over its classes, the data set's the mean over images. The
default tolerance is 2 px (Csurka et al. take 0.75 % of the image diagonal, 0.7 px on 64x64
canvases: less than the one-pixel ambiguity of a resampled digit's edge).
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

DEFAULT_TOLERANCE = 2.0  # pixels
_CROSS = ndimage.generate_binary_structure(2, 1)  # 4-connected neighbourhood


def confusion_matrix(labels: jax.Array, predictions: jax.Array, num_classes: int,
                     mask: jax.Array | None = None) -> jax.Array:
  """int32 [num_classes, num_classes]: C[i, j] = the number of pixels of true class i predicted
  as j, over all pixels of `labels` and `predictions` (int arrays of one shape); `mask`
  (broadcastable to them, e.g. [batch, 1, 1]) leaves out the pixels where it is 0 (padding)."""
  labels = jnp.asarray(labels, jnp.int32)
  predictions = jnp.asarray(predictions, jnp.int32)
  index = labels * num_classes + predictions
  if mask is not None:  # masked pixels go to an extra bin that is dropped
    index = jnp.where(jnp.broadcast_to(mask, index.shape) > 0, index, num_classes ** 2)
  counts = jnp.bincount(index.ravel(), length=num_classes ** 2 + 1)
  return counts[:-1].reshape(num_classes, num_classes).astype(jnp.int32)


def iou_per_class(confusion: jax.Array) -> jax.Array:
  """float32 [K]: TP / (TP + FP + FN) per class; NaN for a class in neither truth nor
  prediction."""
  confusion = jnp.asarray(confusion, jnp.float32)
  true_positive = jnp.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - true_positive
  return jnp.where(union > 0, true_positive / jnp.where(union > 0, union, 1.0), jnp.nan)


def mean_iou(confusion: jax.Array, classes=None) -> jax.Array:
  """The mean IoU over `classes` (default all; e.g. range(1, K) for the digits alone),
  classes with a NaN IoU left out."""
  iou = iou_per_class(confusion)
  if classes is not None:
    iou = iou[jnp.asarray(list(classes))]
  return jnp.nanmean(iou)


def pixel_accuracy(confusion: jax.Array) -> jax.Array:
  """The share of pixels whose class is predicted right."""
  confusion = jnp.asarray(confusion, jnp.float32)
  return jnp.trace(confusion) / confusion.sum()


def boundary(region: np.ndarray) -> np.ndarray:
  """bool [H, W]: the pixels of the region (bool [H, W]) with a 4-neighbour outside it (the
  outside of the image counts as outside)."""
  region = np.asarray(region, bool)
  return region & ~ndimage.binary_erosion(region, _CROSS, border_value=0)


def boundary_f1_image(true_mask: np.ndarray, predicted_mask: np.ndarray, classes,
                      tolerance: float = DEFAULT_TOLERANCE) -> dict[int, float]:
  """{class: BF score} of one image (int masks [H, W]) for each of `classes` present in the
  true or the predicted mask."""
  out = {}
  for c in classes:
    true_region, predicted_region = true_mask == c, predicted_mask == c
    has_true, has_predicted = true_region.any(), predicted_region.any()
    if not (has_true or has_predicted):
      continue
    if not (has_true and has_predicted):
      out[c] = 0.0
      continue
    true_edge, predicted_edge = boundary(true_region), boundary(predicted_region)
    to_true = ndimage.distance_transform_edt(~true_edge)  # distance to the nearest true edge
    to_predicted = ndimage.distance_transform_edt(~predicted_edge)
    precision = float(np.mean(to_true[predicted_edge] <= tolerance))
    recall = float(np.mean(to_predicted[true_edge] <= tolerance))
    total = precision + recall
    out[c] = 2 * precision * recall / total if total > 0 else 0.0
  return out


def boundary_f1(true_masks: np.ndarray, predicted_masks: np.ndarray, num_classes: int,
                tolerance: float = DEFAULT_TOLERANCE, classes=None) -> dict:
  """The BF score of masks [N, H, W] (int class ids) over `classes` (default: 1..num_classes-1,
  the objects; the background's boundary is the union of theirs).

  Returns {"bf": mean over images of each image's mean over its classes, "per_class":
  float [num_classes] mean over the images holding the class (NaN for a class never present
  and the classes not scored), "images": the number of images with a scored class}.
  """
  classes = range(1, num_classes) if classes is None else classes
  true_masks, predicted_masks = np.asarray(true_masks), np.asarray(predicted_masks)
  if true_masks.shape != predicted_masks.shape or true_masks.ndim != 3:
    raise ValueError(f"masks must be [N, H, W] of one shape, not {true_masks.shape} and "
                     f"{predicted_masks.shape}")
  per_image, sums, counts = [], np.zeros(num_classes), np.zeros(num_classes)
  for true_mask, predicted_mask in zip(true_masks, predicted_masks):
    scores = boundary_f1_image(true_mask, predicted_mask, classes, tolerance)
    if scores:
      per_image.append(np.mean(list(scores.values())))
    for c, score in scores.items():
      sums[c] += score
      counts[c] += 1
  per_class = np.divide(sums, counts, out=np.full(num_classes, np.nan), where=counts > 0)
  return {"bf": float(np.mean(per_image)) if per_image else float("nan"),
          "per_class": per_class, "images": len(per_image)}
