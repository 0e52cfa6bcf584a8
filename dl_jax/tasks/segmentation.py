"""Semantic segmentation of digit canvases (section 5.3.4), a task of the engine: a registered
model of the "dense" family (UNet, figure 5.37) gives class logits per pixel, 11 classes
(background and the 10 digits of `dl_jax.data.images.canvas`).

The loss is the one of section 5.3.4: the softmax over the class axis of each pixel and the
pixel-wise categorical cross-entropy, averaged over the pixels,

    L = 1 / (N H W) sum_{n, i, j} w[y_nij] * -log softmax(v_nij)[y_nij],

with w = 1 by default (`class_weight_power=0`). Against the ~93 % of pixels that are
background, which a plain cross-entropy lets win wherever the digit's class is still uncertain,
`class_weight_power=p` > 0 sets w[c] = (median(f) / f[c])**p from the training masks' class
frequencies f (p = 1: the median frequency balancing of Eigen and Fergus 2015). The softmax of a
model trained with weights estimates w[c] P(c | x) / Z rather than P(c | x), so the predicted
class divides the weights out: argmax_c (v_c - log w[c]) (the logit adjustment of Menon et al.
2021), which keeps the borders where the unweighted Bayes decision puts them. Canvases are
pixels / 255 mapped to [-1, 1] (eq. 2.58).

Validation every epoch (loss, mean IoU); at the end on the test canvases (drawn from test
digits only): the mean IoU over the 11 classes and over the 10 digits, the IoU per class, the
pixel accuracy and the boundary F1 score (`dl_jax.vision.segmentation`), the IoU and boundary
F1 of digit against background whatever the class (the borders without the classification),
and the figure `segmentation.png` (canvases, true masks, predicted masks, wrong pixels). The
same config with `model_kwargs.skips=False` is the ablation of the skip connections.
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
from dl_jax.vision import segmentation as metrics_lib

NUM_CLASSES = canvas.NUM_CLASSES + 1  # background, then digit d as class d + 1
CLASS_NAMES = ("background",) + tuple(str(d) for d in range(canvas.NUM_CLASSES))
# Mask colours of the figure: black background, then matplotlib's tab10 for the digits 0-9.
MASK_COLOURS = np.array([
    (0, 0, 0), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)],
    np.float32) / 255.0


def to_inputs(images: jax.Array) -> jax.Array:
  """uint8 canvases [N, S, S, 1] -> float32 in [-1, 1] (eq. 2.58)."""
  return (images.astype(jnp.float32) - 127.5) / 127.5


def pixel_cross_entropy(logits: jax.Array, labels: jax.Array,
                        class_weights: jax.Array | None = None) -> jax.Array:
  """Per-example mean over pixels of w[y] * -log softmax(logits)[y] (section 5.3.4): logits
  [N, H, W, K], labels int [N, H, W], class_weights [K] or None (all 1)."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  if class_weights is not None:
    ce = ce * class_weights[labels]
  return ce.mean((1, 2))


def median_frequency_weights(masks: np.ndarray, num_classes: int,
                             power: float = 1.0) -> np.ndarray:
  """w[c] = (median(f) / f[c])**power from the pixel frequencies f of the classes present in
  `masks` (Eigen and Fergus 2015 for power 1); a class without pixels gets weight 1 (it
  never weighs a pixel, and leaves its logit unadjusted)."""
  frequency = np.bincount(masks.ravel(), minlength=num_classes).astype(np.float64)
  frequency /= frequency.sum()
  present = frequency > 0
  weights = np.ones(num_classes)
  weights[present] = (np.median(frequency[present]) / frequency[present]) ** power
  return weights.astype(np.float32)


def _variables(state, params) -> dict:
  variables = {"params": params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  return variables


def train_step(state, batch: dict, class_weights: jax.Array | None):
  """One gradient step on the mean pixel-wise cross-entropy of `batch` ("image" uint8
  [B, S, S, 1], "label" the class masks [B, S, S])."""
  images, labels = to_inputs(batch["image"]), batch["label"].astype(jnp.int32)

  def loss_fn(params):
    logits, updates = state.apply_fn(_variables(state, params), images, train=True,
                                     mutable=["batch_stats"])
    return pixel_cross_entropy(logits, labels, class_weights).mean(), (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, opt_state=opt_state,
                            params=optax.apply_updates(state.params, param_updates),
                            batch_stats=updates.get("batch_stats", state.batch_stats))
  return new_state, {"loss": loss,
                     "pixel_accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
                     "grad_norm": optax.tree.norm(grads)}


def predict(state, images: jax.Array, labels: jax.Array, class_weights: jax.Array | None):
  """(predicted masks uint8 [B, S, S], per-example loss [B]) in evaluation mode; the predicted
  class is argmax_c (v_c - log w[c]) (see the module docstring)."""
  logits = state.apply_fn(_variables(state, state.params), to_inputs(images), train=False)
  loss = pixel_cross_entropy(logits, labels.astype(jnp.int32), class_weights)
  scores = logits.astype(jnp.float32)
  if class_weights is not None:
    scores = scores - jnp.log(class_weights)
  return jnp.argmax(scores, -1).astype(jnp.uint8), loss


def eval_step(state, batch: dict, class_weights: jax.Array | None) -> dict:
  """Sums over `batch` (padding rows have mask 0): the loss, the confusion matrix, the count."""
  predicted, loss = predict(state, batch["image"], batch["label"], class_weights)
  mask = batch["mask"]
  return {"loss": jnp.sum(loss * mask), "count": jnp.sum(mask),
          "confusion": metrics_lib.confusion_matrix(batch["label"], predicted, NUM_CLASSES,
                                                    mask[:, None, None])}


def colour_masks(masks: np.ndarray) -> np.ndarray:
  """Class masks [N, H, W] -> RGB images [N, H, W, 3] in [0, 1] (MASK_COLOURS)."""
  return MASK_COLOURS[np.asarray(masks, np.int64)]


class Segmentation(Task):
  """`config.model` (a "dense" model) on canvases of `config.dataset` digits: `train_size`
  canvases of training digits, `val_size` of the held-out training digits, `test_size` of test
  digits."""

  CHECKS = {
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
      "class_weight_power": checks.number(0.0, 1.0),
      "boundary_tolerance": checks.positive_number,
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
    registry.get(config.model, family="dense")
    registry.check_output_shape(
        config.model, cls.model_kwargs(config),
        "a canvas_size that the model maps to itself (UNet: divisible by 2**len(features))")

  @staticmethod
  def model_kwargs(config) -> dict:
    """`config.model_kwargs` with image_size, in_channels and out_channels those of the data
    where they are not set; ConfigError where they are set otherwise."""
    kwargs = config.model_kwargs.to_dict()
    for key, value in (("image_size", config.canvas_size), ("in_channels", 1),
                       ("out_channels", NUM_CLASSES)):
      if kwargs.setdefault(key, value) != value:
        raise ConfigError(f"model_kwargs.{key}={kwargs[key]} does not fit the data "
                          f"(canvas_size={config.canvas_size}, grey canvases, {NUM_CLASSES} "
                          f"classes); accepted: model_kwargs.{key}={value}")
    return kwargs

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.model = registry.build(config.model, **self.model_kwargs(config))
    for key in ("batch_size", "eval_batch_size"):
      sharding.check_batch_size(config[key], mesh, key)
    self.train = self._canvases("train", config.train_size)
    self.val = self._canvases("val", config.val_size)
    self.test = self._canvases("test", config.test_size)
    self.steps_per_epoch, self.schedule_steps = classification.epoch_schedule(len(self.train),
                                                                              config)
    self.tx = optim.make_optimizer(config.optimizer, config.learning_rate, config.lr_schedule,
                                   self.schedule_steps, config.warmup_steps)
    self.class_weights = None  # w = 1
    if config.class_weight_power:
      self.class_weights = jnp.asarray(median_frequency_weights(
          self.train.labels, NUM_CLASSES, config.class_weight_power))
    self._train_step = jit_step(functools.partial(train_step, class_weights=self.class_weights),
                                donate_argnums=0)
    self._eval_step = jax.jit(functools.partial(eval_step, class_weights=self.class_weights))
    self._predict = jax.jit(functools.partial(predict, class_weights=self.class_weights))
    self._batches = pipeline.StepBatches(self.train, config.batch_size, config.seed,
                                         jax.process_index(), jax.process_count())

  def _canvases(self, split: str, count: int) -> pipeline.Split:
    """uint8 canvases [count, S, S, 1] and their class masks uint8 [count, S, S]."""
    config = self.config
    if not count:
      size = config.canvas_size
      return pipeline.Split(np.zeros((0, size, size, 1), np.uint8),
                            np.zeros((0, size, size), np.uint8))
    data = canvas.load(config.dataset, split, count, size=config.canvas_size,
                       min_objects=config.min_objects, max_objects=config.max_objects,
                       seed=config.canvas_seed, data_dir=config.data_dir or None)
    return pipeline.Split(data["images"][..., None], data["masks"])

  def plan(self) -> Plan:
    return Plan(self.schedule_steps, self.steps_per_epoch, "canvases", self.config.batch_size,
                eval_every_steps=self.steps_per_epoch if len(self.val) else 0)

  def init(self, key):
    return classification.create_train_state(self.model, self.tx, jax.random.key_data(key),
                                             self.train.images.shape[1:])

  def advance(self, state, step, stop):
    del stop
    state, metrics = self._train_step(state, sharding.shard_batch(self._batches(step),
                                                                  self.mesh))
    return state, step + 1, {"train": metrics}

  def _eval(self, state, split: pipeline.Split) -> dict:
    """Mean loss, pixel accuracy and mean IoU over a whole split (sharded batches)."""
    loss, count, confusion = 0.0, 0.0, np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for batch in pipeline.eval_batches(split, self.config.eval_batch_size, jax.process_index(),
                                       jax.process_count()):
      out = jax.device_get(self._eval_step(state, sharding.shard_batch(batch, self.mesh)))
      loss += float(out["loss"])
      count += float(out["count"])
      confusion += out["confusion"]
    return {"loss": loss / count, "mean_iou": float(metrics_lib.mean_iou(confusion)),
            "pixel_accuracy": float(metrics_lib.pixel_accuracy(confusion))}

  def evaluate(self, state, step):
    return state, {"val": self._eval(state, self.val)}

  def predictions(self, state, split: pipeline.Split) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class masks uint8 [N, S, S], loss per canvas [N]) of a split, in batches of
    eval_batch_size on this process (the last one padded)."""
    size = self.config.eval_batch_size
    masks, losses = [], []
    for start in range(0, len(split), size):
      pad = lambda a: np.concatenate([a, np.zeros((size - len(a), *a.shape[1:]), a.dtype)])
      images, labels = split.images[start:start + size], split.labels[start:start + size]
      predicted, loss = jax.device_get(self._predict(state, pad(images), pad(labels)))
      masks.append(predicted[:len(images)])
      losses.append(loss[:len(images)])
    return np.concatenate(masks), np.concatenate(losses)

  def finish(self, state, step, out_dir):
    config = self.config
    predicted, losses = self.predictions(state, self.test)
    confusion = metrics_lib.confusion_matrix(self.test.labels, predicted, NUM_CLASSES)
    iou = np.asarray(metrics_lib.iou_per_class(confusion))
    bf = metrics_lib.boundary_f1(self.test.labels, predicted, NUM_CLASSES,
                                 config.boundary_tolerance)
    test = {"loss": float(losses.mean()), "mean_iou": float(np.nanmean(iou)),
            "pixel_accuracy": float(metrics_lib.pixel_accuracy(confusion))}
    digits_miou = float(np.nanmean(iou[1:]))
    # digit against background, whatever the class: the borders alone
    true_fg, predicted_fg = self.test.labels > 0, predicted > 0
    fg_iou = float((true_fg & predicted_fg).sum() / max((true_fg | predicted_fg).sum(), 1))
    fg_bf = metrics_lib.boundary_f1(true_fg, predicted_fg, 2, config.boundary_tolerance)["bf"]
    metrics = {**test, "mean_iou_digits": digits_miou, "boundary_f1": bf["bf"],
               "foreground_iou": fg_iou, "foreground_boundary_f1": fg_bf,
               **{f"iou_{name}": float(v) for name, v in zip(CLASS_NAMES, iou)
                  if np.isfinite(v)},  # a class absent from the test canvases has none
               **{f"boundary_f1_{name}": float(v)
                  for name, v in zip(CLASS_NAMES[1:], bf["per_class"][1:]) if np.isfinite(v)}}
    if out_dir is not None:
      self._figure(predicted, out_dir)
    summary = {"dataset": config.dataset, "model": config.model,
               "skips": getattr(self.model, "skips", None),
               "param_count": count_params(state.params), "canvas_size": config.canvas_size,
               "train_size": len(self.train), "test_size": len(self.test),
               "class_weight_power": config.class_weight_power,
               "boundary_tolerance": config.boundary_tolerance,
               **{f"test_{k}": v for k, v in metrics.items()}}
    headline = (f"test mIoU {test['mean_iou']:.4f} (digits {digits_miou:.4f}), boundary F1 "
                f"{bf['bf']:.4f} (tolerance {config.boundary_tolerance:g} px), pixel accuracy "
                f"{100 * test['pixel_accuracy']:.2f}%")
    return summary, {"test": metrics}, headline

  def _figure(self, predicted: np.ndarray, out_dir) -> None:
    """Test canvases, their true and predicted masks, and the wrong pixels in red."""
    count = min(self.config.figure_count, len(self.test))
    images = self.test.images[:count, ..., 0].astype(np.float32) / 255.0
    true, guess = self.test.labels[:count], predicted[:count]
    errors = np.repeat(images[..., None], 3, -1) * 0.5
    errors[true != guess] = (1.0, 0.0, 0.0)
    plots.image_rows({"canvas": images, "true mask": colour_masks(true),
                      f"{self.config.model}": colour_masks(guess), "errors": errors},
                     out_dir / "segmentation.png",
                     f"{self.config.experiment}: test canvases and masks (background black, "
                     "digits 0-9 in tab10 colours)")
