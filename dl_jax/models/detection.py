"""Localization networks of section 5.3.3 on canvases of digits: one object's box and class
(four box outputs and a classification output, as the notes set it up), and a YOLO v1-style
detector (Redmon et al. 2016) whose output is a grid of boxes and class scores."""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn.pool import max_pool


def _check_input(x: jax.Array, image_size: int) -> None:
  if x.shape[1:] != (image_size, image_size, 1):
    raise ValueError(f"input {x.shape[1:]} is not (image_size, image_size, 1) = "
                     f"({image_size}, {image_size}, 1)")


class Localizer(nn.Module):
  """3x3 convolution -> ReLU blocks of `widths`, a 2x2 max-pool after each but the last, then
  two heads on the last feature map: the box, sigmoid(cx, cy, w, h) relative to the canvas
  (in [0, 1]), by a dense hidden layer on the flattened map (where the digit is), and the
  class logits by a dense layer on its global max-pool (what it is, wherever it is): [batch,
  4 + num_classes], the 4 box outputs first."""
  image_size: int = 64
  num_classes: int = 10
  widths: Sequence[int] = (16, 32, 64, 64)
  hidden: int = 256
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    _check_input(x, self.image_size)
    dense = lambda n: nn.Dense(n, dtype=self.dtype, param_dtype=jnp.float32)
    for i, width in enumerate(self.widths):
      x = nn.relu(nn.Conv(width, (3, 3), padding="SAME", dtype=self.dtype,
                          param_dtype=jnp.float32)(x))
      if i < len(self.widths) - 1:
        x = max_pool(x, (2, 2), (2, 2))
    box = dense(4)(nn.relu(dense(self.hidden)(x.reshape((x.shape[0], -1)))))
    logits = dense(self.num_classes)(jnp.max(x, axis=(1, 2)))
    return jnp.concatenate([nn.sigmoid(box), logits], axis=-1)


class YoloDetector(nn.Module):
  """A YOLO v1-style detector sized for 64x64 canvases: 3x3 convolution -> batch norm ->
  leaky ReLU (slope 0.1, as the paper) blocks of `widths`, a 2x2 max-pool after each of the
  first log2(image_size / grid) blocks (64 / 8: three, stride 8), then a 1x1 convolution to
  the raw grid [batch, grid, grid, boxes_per_cell * 5 + num_classes] (activations:
  `dl_jax.vision.yolo`). The paper's network ends in dense layers on a 448x448 image; on
  small canvases every cell's receptive field already covers the digits, so this one is fully
  convolutional."""
  image_size: int = 64
  num_classes: int = 10
  grid: int = 8
  boxes_per_cell: int = 2
  widths: Sequence[int] = (16, 32, 64, 128, 128)
  batch_norm: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    _check_input(x, self.image_size)
    pools = math.log2(self.image_size / self.grid)
    if self.image_size % self.grid or pools != int(pools) or int(pools) > len(self.widths):
      raise ValueError(f"image_size / grid = {self.image_size} / {self.grid} must be a power "
                       f"of 2 of at most 2 ** len(widths) = {2 ** len(self.widths)}")
    for i, width in enumerate(self.widths):
      x = nn.Conv(width, (3, 3), padding="SAME", use_bias=not self.batch_norm,
                  dtype=self.dtype, param_dtype=jnp.float32)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         dtype=self.dtype, param_dtype=jnp.float32)(x)
      x = nn.leaky_relu(x, 0.1)
      if i < int(pools):
        x = max_pool(x, (2, 2), (2, 2))
    return nn.Conv(self.boxes_per_cell * 5 + self.num_classes, (1, 1), dtype=self.dtype,
                   param_dtype=jnp.float32)(x)


def _localizer_params(widths=(16, 32, 64, 64), hidden=256, image_size=64, classes=10) -> int:
  convs = sum(9 * a * b + b for a, b in zip((1,) + widths[:-1], widths))
  flat = (image_size // 2 ** (len(widths) - 1)) ** 2 * widths[-1]
  return convs + flat * hidden + hidden + hidden * 4 + 4 + widths[-1] * classes + classes


def _yolo_params(widths=(16, 32, 64, 128, 128), outputs=2 * 5 + 10) -> int:
  convs = sum(9 * a * b + 2 * b for a, b in zip((1,) + widths[:-1], widths))  # + scale, bias
  return convs + widths[-1] * outputs + outputs


SPECS = (
    ModelSpec(
        name="localizer_cnn",
        family="localizer",
        factory=Localizer,
        defaults={"image_size": 64, "num_classes": 10, "widths": (16, 32, 64, 64),
                  "hidden": 256, "dtype": "float32"},
        param_count=_localizer_params(),
        description="CNN 64x64 canvas -> one box sigmoid(cx, cy, w, h) and class logits, "
                    "section 5.3.3",
    ),
    ModelSpec(
        name="yolo_cnn",
        family="detector",
        factory=YoloDetector,
        defaults={"image_size": 64, "num_classes": 10, "grid": 8, "boxes_per_cell": 2,
                  "widths": (16, 32, 64, 128, 128), "batch_norm": True, "dtype": "float32"},
        param_count=_yolo_params(),
        description="YOLO v1-style detector 64x64 canvas -> 8x8 grid of 2 boxes and 10 "
                    "class scores per cell, section 5.3.3",
    ),
)
