"""Localization of digits on canvases (section 5.3.3), a task of the engine, with two heads:

- `head="single"`: canvases with exactly one digit and a "localizer" model (four box outputs and
  class logits): the notes' set-up, MSE on the box (cx, cy, w, h), relative to the canvas, plus
  the cross-entropy of the class,

      L = box_weight * 1/4 sum_i (b_i - b^_i)^2 - log softmax(v)_y;

  measured by the IoU of the predicted box with the true one (its mean, the share >= 0.5), the
  class accuracy and the share with both the right class and IoU >= 0.5.
- `head="yolo"`: canvases with min_objects..max_objects digits and a "detector" model (a YOLO v1
  grid), the loss of Redmon et al. (`dl_jax.vision.yolo`: lambda_coord, lambda_noobj, the square
  roots of w and h, `rescore`, `class_loss`); measured by decoding every predictor's box (score
  = confidence * class probability) above `ap_min_score`, non-maximum suppression per class at
  IoU `nms_iou`, at most `max_detections` per canvas, then COCO-style mAP@0.5 and mAP@[.5:.95]
  (`dl_jax.vision.average_precision`, checked against pycocotools in the tests). The boxes with
  score >= `score_threshold` are the detector's answer: how many objects they hit, miss, find
  twice, label wrongly or invent (`average_precision.detection_counts`), and how often a
  canvas gets fewer, as many or more boxes than it has digits.

Canvases (`dl_jax.data.images.canvas`): `train_size` of the first 55,000 training digits,
`val_size` of the last 5,000, `test_size` of the test digits only; pixels / 255 mapped to
[-1, 1] (eq. 2.58); no augmentation (positions and scales are already random). Boxes are tight
around each digit's pixels. Validation every epoch; at the end the test metrics and the figure
`detections.png` (true boxes green, predicted red).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl_jax import optim, plots
from dl_jax.data.images import canvas, pipeline
from dl_jax.engine import checks, sharding
from dl_jax.engine.task import Plan, Task, jit_step
from dl_jax.errors import ConfigError
from dl_jax.models import registry
from dl_jax.models.spec import count_params
from dl_jax.tasks import image_classification as classification
from dl_jax.vision import average_precision as ap_lib
from dl_jax.vision import boxes as boxes_lib
from dl_jax.vision import yolo

HEADS = {"single": "localizer", "yolo": "detector"}  # head -> model family


def to_inputs(images: jax.Array) -> jax.Array:
  """uint8 canvases [N, S, S, 1] -> float32 in [-1, 1] (eq. 2.58)."""
  return (images.astype(jnp.float32) - 127.5) / 127.5


def single_loss(outputs: jax.Array, boxes: jax.Array, classes: jax.Array, image_size: int,
                box_weight: float) -> tuple[jax.Array, dict]:
  """The one-object loss per canvas (module docstring) from a localizer's outputs [N, 4 + C],
  the true boxes [N, 1, 4] (corners, pixels) and classes [N, 1]: (loss [N], {"box_mse",
  "cross_entropy", "iou", "correct"} each [N])."""
  outputs = outputs.astype(jnp.float32)
  target = boxes_lib.corners_to_center(boxes[:, 0] / image_size)
  box_mse = jnp.mean(jnp.square(outputs[:, :4] - target), -1)
  labels = classes[:, 0]
  cross_entropy = classification.cross_entropy(outputs[:, 4:], labels)
  iou = boxes_lib.iou(boxes_lib.center_to_corners(outputs[:, :4]), boxes[:, 0] / image_size)
  parts = {"box_mse": box_mse, "cross_entropy": cross_entropy, "iou": iou,
           "correct": (jnp.argmax(outputs[:, 4:], -1) == labels).astype(jnp.float32)}
  return box_weight * box_mse + cross_entropy, parts


def detector_loss(outputs: jax.Array, boxes: jax.Array, classes: jax.Array, image_size: int,
                  grid: int, **loss_kwargs) -> tuple[jax.Array, dict]:
  """The YOLO loss per canvas from a detector's raw grid, boxes [N, K, 4] (pixels) and classes
  [N, K] (-1: none): (loss [N], its terms each [N])."""
  targets = yolo.make_targets(boxes, classes, grid, image_size)
  return yolo.yolo_loss(outputs, targets, **loss_kwargs)


def _variables(state, params) -> dict:
  variables = {"params": params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  return variables


def train_step(state, batch: dict, loss_fn):
  """One gradient step on the mean of `loss_fn(outputs, boxes, classes)` over `batch` ("image"
  uint8 [B, S, S, 1], "boxes", "classes")."""
  images = to_inputs(batch["image"])

  def objective(params):
    outputs, updates = state.apply_fn(_variables(state, params), images, train=True,
                                      mutable=["batch_stats"])
    loss, parts = loss_fn(outputs, batch["boxes"], batch["classes"])
    return loss.mean(), (parts, updates)

  (loss, (parts, updates)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, opt_state=opt_state,
                            params=optax.apply_updates(state.params, param_updates),
                            batch_stats=updates.get("batch_stats", state.batch_stats))
  return new_state, {"loss": loss, **{k: v.mean() for k, v in parts.items()},
                     "grad_norm": optax.tree.norm(grads)}


def predict(state, images: jax.Array) -> jax.Array:
  """The model's outputs on uint8 canvases, in evaluation mode."""
  return state.apply_fn(_variables(state, state.params), to_inputs(images), train=False)


class Localization(Task):
  """`config.model` on canvases of `config.dataset` digits, trained and measured as `head`
  says (module docstring)."""

  CHECKS = {
      "head": checks.one_of(*HEADS),
      "model": checks.string,
      "model_kwargs": checks.hyper_parameters,
      "dataset": checks.one_of(*canvas.DATASETS),
      "canvas_size": checks.int_at_least(canvas.SIDE_RANGE[1]),
      "min_objects": checks.positive_int,
      "max_objects": checks.positive_int,
      "canvas_seed": checks.int_at_least(0),
      "train_size": checks.positive_int,
      "val_size": checks.nonnegative_int("no validation canvases"),
      "test_size": checks.positive_int,
      "batch_size": checks.positive_int,
      "eval_batch_size": checks.positive_int,
      "num_epochs": checks.positive_int,
      "optimizer": checks.one_of(*optim.OPTIMIZERS),
      "learning_rate": checks.positive_number,
      "lr_schedule": checks.one_of(*optim.SCHEDULES),
      "warmup_steps": checks.nonnegative_int("no warm-up"),
      "box_weight": checks.nonnegative_number,
      "lambda_coord": checks.nonnegative_number,
      "lambda_noobj": checks.nonnegative_number,
      "rescore": checks.boolean,
      "class_loss": checks.one_of(*yolo.CLASS_LOSSES),
      "nms_iou": checks.number(0.0, 1.0),
      "score_threshold": checks.number(0.0, 1.0),
      "ap_min_score": checks.number(0.0, 1.0),
      "max_detections": checks.positive_int,
      "figure_count": checks.positive_int,
  }

  @classmethod
  def validate(cls, config):
    if config.canvas_size > canvas.MAX_CANVAS:
      raise ConfigError(f"canvas_size={config.canvas_size} must be an integer from "
                        f"{canvas.SIDE_RANGE[1]} to {canvas.MAX_CANVAS}")
    if not config.min_objects <= config.max_objects <= canvas.MAX_OBJECTS:
      raise ConfigError(f"min_objects={config.min_objects}, max_objects={config.max_objects}: "
                        f"accepted: 1 <= min_objects <= max_objects <= {canvas.MAX_OBJECTS}")
    if config.head == "single" and config.max_objects != 1:
      raise ConfigError(f"head='single' localizes one digit per canvas, max_objects="
                        f"{config.max_objects}; accepted: min_objects=1, max_objects=1 (or "
                        "head='yolo')")
    if config.ap_min_score > config.score_threshold:
      raise ConfigError(f"ap_min_score={config.ap_min_score} must not exceed score_threshold="
                        f"{config.score_threshold} (the mAP ranks every box down to "
                        "ap_min_score)")
    registry.get(config.model, family=HEADS[config.head])
    registry.check_output_shape(config.model, cls.model_kwargs(config),
                                "hyper-parameters that fit the canvas (YOLO: canvas_size / "
                                "grid a power of 2 of at most 2 ** len(widths))")

  @staticmethod
  def model_kwargs(config) -> dict:
    """`config.model_kwargs` with image_size and num_classes those of the data where they are
    not set; ConfigError where they are set otherwise."""
    kwargs = config.model_kwargs.to_dict()
    for key, value in (("image_size", config.canvas_size), ("num_classes", canvas.NUM_CLASSES)):
      if kwargs.setdefault(key, value) != value:
        raise ConfigError(f"model_kwargs.{key}={kwargs[key]} but the data needs {value} "
                          f"(canvas_size={config.canvas_size}, {canvas.NUM_CLASSES} digit "
                          "classes); leave it unset")
    return kwargs

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    kwargs = self.model_kwargs(config)
    self.model = registry.build(config.model, **kwargs)
    self.hp = registry.get(config.model).hyperparameters(**kwargs)
    for key in ("batch_size", "eval_batch_size"):
      sharding.check_batch_size(config[key], mesh, key)
    self.data = {split: self._canvases(split, count) for split, count in (
        ("train", config.train_size), ("val", config.val_size), ("test", config.test_size))}
    train = self.data["train"]
    self.steps_per_epoch, self.schedule_steps = classification.epoch_schedule(
        len(train["images"]), config)
    self.tx = optim.make_optimizer(config.optimizer, config.learning_rate, config.lr_schedule,
                                   self.schedule_steps, config.warmup_steps)
    if config.head == "single":
      loss_fn = functools.partial(single_loss, image_size=config.canvas_size,
                                  box_weight=float(config.box_weight))
    else:
      loss_fn = functools.partial(
          detector_loss, image_size=config.canvas_size, grid=self.hp["grid"],
          boxes_per_cell=self.hp["boxes_per_cell"], num_classes=canvas.NUM_CLASSES,
          lambda_coord=float(config.lambda_coord), lambda_noobj=float(config.lambda_noobj),
          rescore=config.rescore, class_loss=config.class_loss)
      self._decode = jax.jit(functools.partial(
          yolo.decode, boxes_per_cell=self.hp["boxes_per_cell"],
          num_classes=canvas.NUM_CLASSES, image_size=config.canvas_size))
    self._loss = jax.jit(loss_fn)
    self._train_step = jit_step(functools.partial(train_step, loss_fn=loss_fn),
                                donate_argnums=0)
    self._predict = jax.jit(predict)
    # The batch of a step is a pure function of (seed, step): canvases drawn by index.
    indices = pipeline.Split(train["images"], np.arange(len(train["images"]), dtype=np.int32))
    self._batches = pipeline.StepBatches(indices, config.batch_size, config.seed,
                                         jax.process_index(), jax.process_count())

  def _canvases(self, split: str, count: int) -> dict:
    """images uint8 [count, S, S, 1], boxes float32 [count, K, 4], classes int32 [count, K],
    counts int32 [count]."""
    config = self.config
    if not count:
      size, k = config.canvas_size, config.max_objects
      return {"images": np.zeros((0, size, size, 1), np.uint8),
              "boxes": np.zeros((0, k, 4), np.float32), "classes": np.zeros((0, k), np.int32),
              "counts": np.zeros(0, np.int32)}
    data = canvas.load(config.dataset, split, count, size=config.canvas_size,
                       min_objects=config.min_objects, max_objects=config.max_objects,
                       seed=config.canvas_seed, data_dir=config.data_dir or None)
    return {"images": data["images"][..., None], "boxes": data["boxes"],
            "classes": data["classes"], "counts": data["counts"]}

  def plan(self) -> Plan:
    return Plan(self.schedule_steps, self.steps_per_epoch, "canvases", self.config.batch_size,
                eval_every_steps=self.steps_per_epoch if self.config.val_size else 0)

  def init(self, key):
    return classification.create_train_state(self.model, self.tx, jax.random.key_data(key),
                                             self.data["train"]["images"].shape[1:])

  def advance(self, state, step, stop):
    del stop
    drawn = self._batches(step)  # "label": the canvases' indices
    train, ids = self.data["train"], drawn["label"]
    batch = {"image": drawn["image"], "boxes": train["boxes"][ids],
             "classes": train["classes"][ids]}
    state, metrics = self._train_step(state, sharding.shard_batch(batch, self.mesh))
    return state, step + 1, {"train": metrics}

  # ------------------------------------------------------------------ evaluation

  def outputs(self, state, split: str) -> np.ndarray:
    """The model's outputs on every canvas of a split, in batches of eval_batch_size."""
    return pipeline.map_batches(functools.partial(self._predict, state),
                                self.data[split]["images"], self.config.eval_batch_size)

  def detections(self, outputs: np.ndarray, score_threshold: float) -> list:
    """Per canvas (boxes [d, 4] pixels, classes [d], scores [d]) by descending score: the
    localizer's one box (score: the class probability), or the detector's boxes after
    non-maximum suppression."""
    config = self.config
    if config.head == "single":
      box = boxes_lib.center_to_corners(outputs[:, :4]) * config.canvas_size
      probs = np.asarray(jax.nn.softmax(outputs[:, 4:]))
      cls = probs.argmax(-1)
      score = probs.max(-1)
      return [(box[i:i + 1], cls[i:i + 1], score[i:i + 1]) for i in range(len(outputs))]
    found = []
    for start in range(0, len(outputs), config.eval_batch_size):
      chunk = outputs[start:start + config.eval_batch_size]
      found += yolo.detect(*self._decode(jnp.asarray(chunk)), nms_iou=config.nms_iou,
                           score_threshold=score_threshold,
                           max_detections=config.max_detections)
    return found

  def measure(self, state, split: str) -> tuple[dict, list]:
    """The metrics of a split (module docstring) and its detections (above ap_min_score for
    the detector)."""
    config, data = self.config, self.data[split]
    outputs = self.outputs(state, split)
    loss, parts = jax.device_get(self._loss(jnp.asarray(outputs), jnp.asarray(data["boxes"]),
                                            jnp.asarray(data["classes"])))
    metrics = {"loss": float(np.mean(loss))}
    if config.head == "single":
      iou, correct = parts["iou"], parts["correct"]
      metrics.update({"box_mse": float(np.mean(parts["box_mse"])),
                      "mean_iou": float(np.mean(iou)), "iou_at_least_half": float(np.mean(
                          iou >= 0.5)), "accuracy": float(np.mean(correct)),
                      "both": float(np.mean((iou >= 0.5) * correct))})
      return metrics, self.detections(outputs, 0.0)
    found = self.detections(outputs, config.ap_min_score)
    truths = [(data["boxes"][i, :n], data["classes"][i, :n]) for i, n in enumerate(
        data["counts"])]
    evaluation = ap_lib.evaluate([t[0] for t in truths], [t[1] for t in truths],
                                 [f[0] for f in found], [f[1] for f in found],
                                 [f[2] for f in found], canvas.NUM_CLASSES,
                                 config.max_detections)
    kept = [tuple(a[f[2] >= config.score_threshold] for a in f) for f in found]
    counts = ap_lib.detection_counts([t[0] for t in truths], [t[1] for t in truths],
                                     [k[0] for k in kept], [k[1] for k in kept],
                                     [k[2] for k in kept])
    metrics.update({"map_50": evaluation["map_50"], "map": evaluation["map"],
                    "map_75": evaluation["map_75"],
                    **{f"{k}_loss": float(np.mean(v)) for k, v in parts.items()}})
    objects, canvases = max(counts["objects"], 1), max(len(truths), 1)
    metrics.update({f"{k}_per_object": counts[k] / objects
                    for k in ("hits", "missed", "duplicates", "wrong_class", "false_positives")})
    metrics.update({f"canvases_{k}": counts[k] / canvases
                    for k in ("too_few", "exact", "too_many")})
    metrics["boxes_per_object"] = counts["detections"] / objects
    metrics.update({f"ap_50_class_{c}": float(v) for c, v in enumerate(evaluation["ap"][0])})
    return metrics, kept

  def evaluate(self, state, step):
    metrics, _ = self.measure(state, "val")
    return state, {"val": metrics}

  def finish(self, state, step, out_dir):
    config = self.config
    metrics, found = self.measure(state, "test")
    if out_dir is not None:
      self._figure(found, out_dir)
    summary = {"dataset": config.dataset, "head": config.head, "model": config.model,
               "param_count": count_params(state.params), "canvas_size": config.canvas_size,
               "objects_per_canvas": f"{config.min_objects}-{config.max_objects}",
               "train_size": config.train_size, "test_size": config.test_size,
               **{f"test_{k}": v for k, v in metrics.items()}}
    if config.head == "single":
      headline = (f"test mean IoU {metrics['mean_iou']:.4f}, IoU >= 0.5 "
                  f"{100 * metrics['iou_at_least_half']:.2f}%, class accuracy "
                  f"{100 * metrics['accuracy']:.2f}%, both {100 * metrics['both']:.2f}%")
    else:
      headline = (f"test mAP@0.5 {metrics['map_50']:.4f}, mAP@[.5:.95] {metrics['map']:.4f}; "
                  f"boxes with score >= {config.score_threshold:g}: per object "
                  f"{metrics['boxes_per_object']:.3f}, missed "
                  f"{100 * metrics['missed_per_object']:.2f}%, duplicates "
                  f"{100 * metrics['duplicates_per_object']:.2f}%, wrong class "
                  f"{100 * metrics['wrong_class_per_object']:.2f}%, false positives "
                  f"{100 * metrics['false_positives_per_object']:.2f}%; canvases with as many "
                  f"boxes as digits {100 * metrics['canvases_exact']:.2f}%")
    return summary, {"test": metrics}, headline

  def _figure(self, found: list, out_dir) -> None:
    """The first test canvases with their true boxes and the predicted ones."""
    config, data = self.config, self.data["test"]
    count = min(config.figure_count, len(data["images"]))
    width = max([len(f[0]) for f in found[:count]] + [1])
    pred_boxes = np.zeros((count, width, 4), np.float32)
    pred_classes = np.full((count, width), -1, np.int64)
    pred_scores = np.zeros((count, width), np.float32)
    for i, (b, c, s) in enumerate(found[:count]):
      pred_boxes[i, :len(b)], pred_classes[i, :len(b)], pred_scores[i, :len(b)] = b, c, s
    what = ("the localizer's box, class:probability" if config.head == "single" else
            f"detections with score >= {config.score_threshold:g}")
    plots.canvas_grid(data["images"][:count, ..., 0], data["boxes"][:count],
                      data["classes"][:count], out_dir / "detections.png",
                      f"{config.experiment}: test canvases, {what}", pred_boxes=pred_boxes,
                      pred_classes=pred_classes, pred_scores=pred_scores)
