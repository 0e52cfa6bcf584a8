"""A YOLO v1-style detector (Redmon et al. 2016; section 5.3.3, figures 5.33-5.34) on 64x64
canvases of 1-5 real MNIST digits: an 8x8 grid, 2 boxes per cell, the paper's loss
(lambda_coord = 5, lambda_noobj = 0.5, square roots of w and h), non-maximum suppression.

  ./launch.sh yolo_mnist
  ./launch.sh yolo_mnist --config.dataset=fashion_mnist

Goal (issue 12): test mAP@0.5 >= 0.95 (a from-scratch YOLO11s on a similar MNIST detection set
reports 0.883); mAP@[.5:.95] as COCO computes it, with dl_jax's own code (equal to pycocotools
in the tests). See the README's detection table for the numbers and for what the detector does
with too few or too many boxes.
"""

from experiments.configs.localize_mnist import localization_config


def get_config():
  return localization_config("yolo_mnist", "yolo", "yolo_cnn")
