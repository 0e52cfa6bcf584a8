"""One digit per 64x64 canvas (section 5.3.3, figure 5.32): a CNN with four box outputs and a
class output, MSE on the box plus the cross-entropy of the class, as the notes set it up.

  ./launch.sh localize_mnist
  ./launch.sh localize_mnist --config.dataset=fashion_mnist

Measured on the test canvases (test digits only): the mean IoU of the predicted box with the
true one, the share with IoU >= 0.5, the class accuracy and the share with both. See the
README's localization table for the numbers.
"""

import ml_collections


def localization_config(name: str, head: str, model: str) -> ml_collections.ConfigDict:
  """The keys of the localization task (dl_jax.tasks.localization) with the defaults of
  `head`: "single" (one digit per canvas) or "yolo" (1-5 digits, the detector)."""
  single = head == "single"
  config = ml_collections.ConfigDict()
  config.task = "localization"
  config.experiment = name
  config.head = head
  config.model = model
  config.model_kwargs = ml_collections.ConfigDict()
  config.dataset = "mnist"
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax
  config.canvas_size = 64
  config.min_objects = 1
  config.max_objects = 1 if single else 5
  config.canvas_seed = 0
  config.train_size = 10000 if single else 40000  # canvases of the first 55,000 training digits
  config.val_size = 1000  # canvases of the last 5,000 training digits
  config.test_size = 2000  # canvases of the 10,000 test digits
  config.seed = 0
  config.batch_size = 64
  config.eval_batch_size = 250
  config.num_epochs = 6 if single else 5
  config.max_steps = 0
  config.optimizer = "adam"
  config.learning_rate = 1e-3 if single else 2e-3
  config.lr_schedule = "cosine"
  config.warmup_steps = 0 if single else 200
  config.box_weight = 10.0  # single: the weight of the box MSE beside the cross-entropy
  # yolo: the loss of Redmon et al. (2016)
  config.lambda_coord = 5.0
  config.lambda_noobj = 0.5
  config.rescore = True  # confidence target: the IoU of the responsible box (False: 1)
  config.class_loss = "squared"  # the paper's; or "cross_entropy"
  config.nms_iou = 0.5  # non-maximum suppression per class above this IoU
  config.score_threshold = 0.2  # the detector's answer: boxes with confidence * p(c) >= this
  config.ap_min_score = 0.01  # the mAP ranks every box down to this score
  config.max_detections = 100  # per canvas (COCO: 100)
  config.figure_count = 16
  config.log_every_steps = 50
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 3
  return config


def get_config():
  return localization_config("localize_mnist", "single", "localizer_cnn")
