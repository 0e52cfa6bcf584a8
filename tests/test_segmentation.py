"""Segmentation (section 5.3.4): the measures of `dl_jax.vision.segmentation` against
scikit-learn and a brute-force boundary F1, the UNet with and without its skip connections,
the pixel-wise cross-entropy, the refusals of bad configurations and a short real training.
(tests/test_tasks.py runs the `unet_mnist` experiment itself, killed and resumed.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from sklearn import metrics as sk_metrics

from dl_jax.engine import loop
from dl_jax.errors import ConfigError
from dl_jax.models import registry, unet
from dl_jax.models.spec import count_params
from dl_jax.tasks import segmentation as task_lib
from dl_jax.vision import segmentation as seg
from experiments import main, overrides
from tests import in_process
from tests.conftest import ROOT

K = 11  # background and 10 digits
KEY = jax.random.PRNGKey(0)


def _labels_and_predictions(seed=0, shape=(4, 16, 16), error_rate=0.3, classes=K):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, shape)
  wrong = rng.random(shape) < error_rate
  return labels, np.where(wrong, rng.integers(0, classes, shape), labels)


# ---------------------------------------------------------------------------------------------
# Confusion matrix, IoU, pixel accuracy

def test_confusion_matrix_is_sklearns_jitted_and_accumulable():
  labels, predicted = _labels_and_predictions()
  want = sk_metrics.confusion_matrix(labels.ravel(), predicted.ravel(), labels=range(K))
  confusion = seg.confusion_matrix(labels, predicted, K)
  np.testing.assert_array_equal(confusion, want)
  assert confusion.dtype == jnp.int32
  jitted = jax.jit(seg.confusion_matrix, static_argnums=2)
  np.testing.assert_array_equal(jitted(labels, predicted, K), want)
  halves = sum(seg.confusion_matrix(labels[i:i + 2], predicted[i:i + 2], K) for i in (0, 2))
  np.testing.assert_array_equal(halves, want)
  # padding rows (mask 0) are left out
  masked = seg.confusion_matrix(labels, predicted, K, jnp.asarray([1, 1, 0, 0])[:, None, None])
  np.testing.assert_array_equal(masked, seg.confusion_matrix(labels[:2], predicted[:2], K))
  assert int(masked.sum()) == labels[:2].size


def test_iou_and_pixel_accuracy_are_sklearns():
  labels, predicted = _labels_and_predictions(seed=1)
  confusion = seg.confusion_matrix(labels, predicted, K)
  y, p = labels.ravel(), predicted.ravel()
  np.testing.assert_allclose(seg.iou_per_class(confusion),
                             sk_metrics.jaccard_score(y, p, labels=range(K), average=None),
                             rtol=1e-6)
  np.testing.assert_allclose(seg.mean_iou(confusion),
                             sk_metrics.jaccard_score(y, p, labels=range(K), average="macro"),
                             rtol=1e-6)
  np.testing.assert_allclose(seg.mean_iou(confusion, range(1, K)),
                             sk_metrics.jaccard_score(y, p, labels=range(1, K),
                                                      average="macro"), rtol=1e-6)
  np.testing.assert_allclose(seg.pixel_accuracy(confusion), sk_metrics.accuracy_score(y, p),
                             rtol=1e-6)


def test_a_class_in_neither_mask_is_nan_and_left_out_of_the_mean():
  labels, predicted = _labels_and_predictions(seed=2, classes=K - 1)  # no class 10
  confusion = seg.confusion_matrix(labels, predicted, K)
  iou = np.asarray(seg.iou_per_class(confusion))
  assert np.isnan(iou[K - 1]) and not np.isnan(iou[:K - 1]).any()
  np.testing.assert_allclose(seg.mean_iou(confusion), iou[:K - 1].mean(), rtol=1e-6)
  perfect = seg.confusion_matrix(labels, labels, K)
  assert float(seg.mean_iou(perfect)) == 1.0 and float(seg.pixel_accuracy(perfect)) == 1.0
  assert float(seg.mean_iou(confusion)) < 0.8  # 30 % of the pixels re-drawn


# ---------------------------------------------------------------------------------------------
# Boundary F1

def _square(x0=20, y0=20, side=12, value=3, size=64) -> np.ndarray:
  mask = np.zeros((size, size), np.int64)
  mask[y0:y0 + side, x0:x0 + side] = value
  return mask


def _brute_force_bf(true_region, predicted_region, tolerance) -> float:
  """BF from all pairwise distances between boundary pixels (no distance transform)."""
  true_edge = np.argwhere(seg.boundary(true_region))
  predicted_edge = np.argwhere(seg.boundary(predicted_region))
  distances = np.linalg.norm(true_edge[:, None] - predicted_edge[None], axis=-1)
  precision = np.mean(distances.min(0) <= tolerance)
  recall = np.mean(distances.min(1) <= tolerance)
  return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def test_boundary_is_the_ring_of_the_region():
  edge = seg.boundary(_square(side=10) == 3)
  assert edge.sum() == 4 * 10 - 4
  assert not edge[21:29, 21:29].any() and edge[20, 20:30].all() and edge[20:30, 29].all()


def test_boundary_f1_is_one_for_identical_masks_and_falls_with_the_shift():
  true = _square()
  assert seg.boundary_f1(true[None], true[None], K)["bf"] == 1.0
  scores = [seg.boundary_f1(true[None], np.roll(true, shift, axis=1)[None], K)["bf"]
            for shift in range(9)]
  assert scores[1] == scores[2] == 1.0  # within the 2-pixel tolerance
  assert all(a >= b for a, b in zip(scores, scores[1:])) and scores[3] < 1.0
  assert scores[8] < 0.5
  # tolerance 0: a one-pixel shift already costs
  assert seg.boundary_f1(true[None], np.roll(true, 1, axis=1)[None], K, tolerance=0)["bf"] < 1


def test_boundary_f1_falls_with_erosion():
  """Eroding a square by k pixels moves its whole boundary by k: within the tolerance of 2 px
  for k <= 2 (but the corners, sqrt(8) px away, at k = 2), beyond it from k = 3."""
  true = _square(side=20)
  scores = []
  for iterations in range(1, 5):
    eroded = ndimage.binary_erosion(true == 3, iterations=iterations)
    scores.append(seg.boundary_f1(true[None], (3 * eroded)[None], K)["bf"])
  assert scores[0] == 1.0 and 0.8 < scores[1] < 1.0 and scores[2] == scores[3] == 0.0
  widened = seg.boundary_f1(true[None], (3 * eroded)[None], K, tolerance=6)["bf"]
  assert widened == 1.0  # the erosion by 4 within a wider tolerance (corners: 4 sqrt(2))


def test_boundary_f1_matches_brute_force_on_random_blobs():
  rng = np.random.default_rng(3)
  true, predicted = [], []
  for _ in range(4):
    noise = ndimage.gaussian_filter(rng.normal(size=(2, 40, 40)), (0, 3, 3))
    true.append(np.where(noise[0] > 0.05, 2, 0))
    predicted.append(np.where(noise[0] + 0.5 * noise[1] > 0.05, 2, 0))
  out = seg.boundary_f1(np.stack(true), np.stack(predicted), K, tolerance=1.5)
  want = [_brute_force_bf(t == 2, p == 2, 1.5) for t, p in zip(true, predicted)]
  assert 0.2 < np.mean(want) < 0.95  # neither trivial nor perfect
  np.testing.assert_allclose(out["bf"], np.mean(want), rtol=1e-12)
  np.testing.assert_allclose(out["per_class"][2], np.mean(want), rtol=1e-12)
  assert out["images"] == 4 and np.isnan(out["per_class"][[0, 1, 3]]).all()


def test_boundary_f1_negative_controls():
  true = _square()
  # the right region under the wrong class: both classes score 0
  assert seg.boundary_f1(true[None], (true // 3 * 4)[None], K)["bf"] == 0.0
  # an unrelated prediction scores far below a good one
  rng = np.random.default_rng(4)
  noise = np.where(rng.random((64, 64)) < 0.1, 3, 0)
  assert seg.boundary_f1(true[None], noise[None], K)["bf"] < 0.3
  # the background is not scored by default, so an empty prediction scores 0
  assert seg.boundary_f1(true[None], np.zeros_like(true)[None], K)["bf"] == 0.0
  with pytest.raises(ValueError, match="masks must be"):
    seg.boundary_f1(true, true, K)


# ---------------------------------------------------------------------------------------------
# UNet with and without skips

def _concatenations(model, x) -> int:
  variables = model.init(KEY, x)
  jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x))(variables)
  return str(jaxpr).count("concatenate")


def test_unet_skips_are_concatenations_and_the_ablation_has_none():
  x = jnp.zeros((1, 32, 32, 1))
  with_skips = unet.UNet(image_size=32, features=(8, 16), dtype=jnp.float32)
  without = unet.UNet(image_size=32, features=(8, 16), skips=False, dtype=jnp.float32)
  assert _concatenations(with_skips, x) == 2
  assert _concatenations(without, x) == 0
  counts = []
  for model in (with_skips, without):
    params = model.init(KEY, x)["params"]
    counts.append(count_params(params))
    assert counts[-1] == unet.param_count(1, 11, (8, 16), model.skips, True)
    # the first convolution after each up-convolution takes the concatenation, or not
    assert params["up0_conv0"]["kernel"].shape == (3, 3, 16 if model.skips else 8, 8)
  assert counts[0] - counts[1] == 9 * (8 * 8 + 16 * 16)


def test_unet_sizes_and_refusals():
  denoiser = unet.UNet(image_size=28, out_channels=1, features=(16, 32), batch_norm=False)
  x = jnp.ones((2, 28, 28, 1))
  variables = denoiser.init(KEY, x)
  assert denoiser.apply(variables, x).shape == (2, 28, 28, 1)
  assert count_params(variables) == unet.param_count(1, 1, (16, 32), True, False)
  with pytest.raises(ValueError, match=r"image_size=28 is not divisible by 2\*\*len\(features\)"):
    unet.UNet(image_size=28).init(KEY, x)
  with pytest.raises(ValueError, match=r"takes \[batch, \*\(64, 64, 1\)\]"):
    unet.UNet().init(KEY, x)


def test_unet_batch_norm_updates_its_statistics_in_training_only():
  model = registry.build("unet", image_size=32, features=(8, 16))
  x = jax.random.normal(KEY, (2, 32, 32, 1))
  variables = model.init(KEY, x)
  _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  before = variables["batch_stats"]["down0_bn0"]["mean"]
  assert not np.allclose(updates["batch_stats"]["down0_bn0"]["mean"], before)
  _, unchanged = model.apply(variables, x, train=False, mutable=["batch_stats"])
  np.testing.assert_array_equal(unchanged["batch_stats"]["down0_bn0"]["mean"], before)


# ---------------------------------------------------------------------------------------------
# The task

def test_pixel_cross_entropy_is_the_formula_of_section_5_3_4():
  rng = np.random.default_rng(5)
  logits = rng.normal(size=(2, 4, 4, K)).astype(np.float32)
  labels = rng.integers(0, K, (2, 4, 4))
  weights = rng.uniform(0.5, 2.0, K).astype(np.float32)
  log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  picked = -np.take_along_axis(log_softmax, labels[..., None], -1)[..., 0]
  np.testing.assert_allclose(task_lib.pixel_cross_entropy(logits, labels), picked.mean((1, 2)),
                             rtol=1e-5)
  np.testing.assert_allclose(task_lib.pixel_cross_entropy(logits, labels, jnp.asarray(weights)),
                             (weights[labels] * picked).mean((1, 2)), rtol=1e-5)


def test_median_frequency_weights():
  masks = np.array([0] * 6 + [1] * 3 + [2] * 1).reshape(1, 2, 5)  # frequencies .6, .3, .1
  want = np.array([0.3 / 0.6, 1.0, 0.3 / 0.1, 1.0])  # class 3 is absent: weight 1
  np.testing.assert_allclose(task_lib.median_frequency_weights(masks, 4), want, rtol=1e-6)
  np.testing.assert_allclose(task_lib.median_frequency_weights(masks, 4, 0.5), np.sqrt(want),
                             rtol=1e-6)


def test_weighted_predictions_divide_the_weights_out():
  """The softmax q of a model trained with weights w estimates w P / Z: the prediction
  argmax(log q - log w) is argmax P, the decision of the unweighted model."""
  rng = np.random.default_rng(6)
  probabilities = rng.dirichlet(np.ones(K), (2, 8, 8))
  weights = rng.uniform(0.01, 5.0, K).astype(np.float32)
  trained = np.log(weights * probabilities)  # the logits that minimize the weighted loss

  class State:
    params, batch_stats = {}, {}
    apply_fn = staticmethod(lambda variables, x, train: jnp.asarray(trained, jnp.float32))

  images, labels = np.zeros((2, 8, 8, 1), np.uint8), np.zeros((2, 8, 8), np.uint8)
  predicted, _ = task_lib.predict(State(), images, labels, jnp.asarray(weights))
  np.testing.assert_array_equal(predicted, probabilities.argmax(-1))
  unadjusted, _ = task_lib.predict(State(), images, labels, None)
  assert (np.asarray(unadjusted) != probabilities.argmax(-1)).any()  # the weights did move it


def _config(*flags: str):
  config = overrides.load_config_file(str(ROOT / "experiments" / "configs" / "unet_mnist.py"))
  pairs = [flag[len("--config."):].split("=", 1) for flag in flags]
  return overrides.apply_overrides(config, [(key, text) for key, text in pairs],
                                   on_first=main.fill_model_kwargs)


def test_the_ablation_config_differs_only_by_its_skips():
  ablation = overrides.load_config_file(
      str(ROOT / "experiments" / "configs" / "unet_mnist_noskip.py"))
  config = _config()
  assert ablation.model_kwargs.skips is False and config.model_kwargs.skips is True
  with ablation.unlocked():
    ablation.model_kwargs.skips, ablation.experiment = True, config.experiment
  main.fill_model_kwargs(ablation)
  assert ablation.to_dict() == config.to_dict()


@pytest.mark.parametrize("flags, message", [
    (("--config.model=mnist_cnn",), "unknown model 'mnist_cnn'; registered dense models: "),
    (("--config.canvas_size=60", "--config.model_kwargs.image_size=60"),
     "model_kwargs.features=(16, 32, 64, 128): unet gives no output (ValueError) for one example, "
     "not (1, 60, 60, 11)"),
    (("--config.canvas_size=40",), "model_kwargs.image_size=64 does not fit the data "
     "(canvas_size=40, grey canvases, 11 classes); accepted: model_kwargs.image_size=40"),
    (("--config.model_kwargs.out_channels=10",), "model_kwargs.out_channels=10 does not fit"),
    (("--config.min_objects=3", "--config.max_objects=2"),
     "min_objects=3, max_objects=2: accepted: 1 <= min_objects <= max_objects <= 20"),
    (("--config.class_weight_power=2.0",),
     "class_weight_power=2.0 must be a finite number in [0, 1]"),
    (("--config.canvas_size=20",), "canvas_size=20 must be an integer >= 34"),
])
def test_bad_configurations_are_refused_before_loading(flags, message):
  with pytest.raises(ConfigError) as info:
    loop.validate(_config(*flags))
  assert str(info.value).startswith(message), str(info.value)
  assert "\n" not in str(info.value)


def test_a_short_training_lowers_the_loss_and_finishes(tmp_path):
  config = _config("--config.canvas_size=40", "--config.model_kwargs.image_size=40",
                   "--config.model_kwargs.features=(8,16)", "--config.train_size=64",
                   "--config.val_size=16", "--config.test_size=16", "--config.batch_size=16",
                   "--config.eval_batch_size=16", "--config.num_epochs=6",
                   "--config.learning_rate=0.01", "--config.figure_count=4")
  task, state = in_process.start(config)
  assert task.train.images.shape == (64, 40, 40, 1) and task.train.labels.shape == (64, 40, 40)
  losses, step = [], 0
  while step < task.plan().total_steps:
    state, step, logs = task.advance(state, step, task.plan().total_steps)
    losses.append(float(logs["train"]["loss"]))
  assert len(losses) == 24 and np.isfinite(losses).all()
  assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses
  _, val = task.evaluate(state, step)
  assert 0 < val["val"]["mean_iou"] <= 1 and val["val"]["pixel_accuracy"] > 0.85
  summary, by_split, headline = task.finish(state, step, tmp_path)
  test = by_split["test"]
  assert 0 <= test["boundary_f1"] <= 1 and test["iou_background"] > 0.85
  assert summary["skips"] is True and summary["test_mean_iou"] == test["mean_iou"]
  assert headline.startswith("test mIoU ")
  assert (tmp_path / "segmentation.png").read_bytes()[:4] == b"\x89PNG"
