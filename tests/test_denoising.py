"""Denoising (section 5.3.5): the quality measures against their formulas, the noise models'
statistics, the classical denoisers' tuning, DnCNN's residual learning, the ECG record, and short
real trainings of the task on MNIST and on the ECG."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from dl_jax.data.images import mnist
from dl_jax.data.signals import ecg
from dl_jax.errors import ConfigError
from dl_jax.models import denoiser, registry
from dl_jax.models.spec import count_params
from dl_jax.tasks import denoising
from dl_jax.vision import denoise
from experiments import report
from experiments.configs import denoise_mnist
from tests import in_process

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def digits():
  return mnist.load("mnist")["test_images"][:40].astype(np.float64) / 255


def numpy_ssim(x: np.ndarray, y: np.ndarray) -> float:
  """SSIM (Wang et al. 2004) with 7x7 uniform windows, sample covariances, K1 = 0.01,
  K2 = 0.03, range 1, averaged over the windows that fit inside the image."""
  mean = lambda a: ndimage.uniform_filter(a, 7, mode="reflect")
  n = 49
  ux, uy = mean(x), mean(y)
  vx = n / (n - 1) * (mean(x * x) - ux * ux)
  vy = n / (n - 1) * (mean(y * y) - uy * uy)
  vxy = n / (n - 1) * (mean(x * y) - ux * uy)
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
  return float(s[3:-3, 3:-3].mean())


def test_psnr_and_ssim_match_their_formulas(digits):
  rng = np.random.default_rng(0)
  clean = digits[:8]
  estimate = np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0, 1)
  mse = np.mean((clean - estimate) ** 2, axis=(1, 2))
  np.testing.assert_allclose(denoise.psnr(clean, estimate), 10 * np.log10(1 / mse), rtol=1e-10)
  np.testing.assert_allclose(denoise.psnr_from_mse(mse), 10 * np.log10(1 / mse), rtol=1e-6)
  ssim = denoise.ssim(clean, estimate)
  np.testing.assert_allclose(ssim, [numpy_ssim(c, e) for c, e in zip(clean, estimate)],
                             rtol=1e-6)
  np.testing.assert_allclose(denoise.ssim(clean, clean), 1.0)
  worse = np.clip(clean + 0.3 * rng.standard_normal(clean.shape), 0, 1)
  assert (denoise.ssim(clean, worse) < ssim).all()
  assert (denoise.psnr(clean, worse) < denoise.psnr(clean, estimate)).all()


def test_noise_statistics():
  clean = jnp.full((200, 28, 28, 1), 0.5)
  gaussian = np.asarray(denoise.add_noise(KEY, clean, "gaussian", 0.4)) - 0.5
  assert abs(gaussian.mean()) < 0.005 and abs(gaussian.std() - 0.4) < 0.005
  assert gaussian.min() < -0.5 and gaussian.max() > 0.5  # not clipped
  clipped = np.asarray(denoise.add_noise(KEY, clean, "gaussian", 0.4, clip=True))
  assert clipped.min() == 0 and clipped.max() == 1
  np.testing.assert_array_equal(np.clip(gaussian + 0.5, 0, 1), clipped)  # the same draw
  salt_pepper = np.asarray(denoise.add_noise(KEY, clean, "salt_and_pepper", 0.2))
  hit = salt_pepper != 0.5
  assert abs(hit.mean() - 0.2) < 0.005
  assert set(np.unique(salt_pepper[hit])) == {0.0, 1.0}
  assert abs(salt_pepper[hit].mean() - 0.5) < 0.01
  # Pure in the key.
  np.testing.assert_array_equal(salt_pepper, denoise.add_noise(KEY, clean, "salt_and_pepper",
                                                               0.2))
  other = denoise.add_noise(jax.random.PRNGKey(1), clean, "salt_and_pepper", 0.2)
  assert not np.array_equal(salt_pepper, other)
  with pytest.raises(ValueError, match="accepted: gaussian, salt_and_pepper"):
    denoise.add_noise(KEY, clean, "speckle", 0.1)


def test_tuning_picks_the_grid_value_of_best_validation_psnr(digits):
  rng = np.random.default_rng(1)
  clean = digits[:12]
  noisy = clean + 0.4 * rng.standard_normal(clean.shape)
  std = denoise.noise_std(noisy, clean)
  assert abs(std - 0.4) < 0.01
  tv = next(d for d in denoise.IMAGE_DENOISERS if d.name == "tv_chambolle")
  values = tv.values(std)
  np.testing.assert_allclose(values, np.asarray(tv.grid) * std)  # relative grid
  tuned = denoise.tune(tv, noisy, clean, std)
  by_hand = [np.mean(denoise.psnr(clean, tv(noisy, v, std))) for v in values]
  assert tuned.value == values[int(np.argmax(by_hand))]
  np.testing.assert_allclose([tuned.scores[v] for v in values], by_hand)
  assert not tuned.at_grid_edge and tuned.scores[tuned.value] > denoise.psnr(
      clean, np.clip(noisy, 0, 1)).mean() + 3
  gaussian = next(d for d in denoise.IMAGE_DENOISERS if d.name == "gaussian")
  assert gaussian.values(std) == gaussian.grid  # absolute grid, in pixels
  # A grid whose best value is its largest is flagged.
  narrow = denoise.Classical("tv", "weight", (0.01, 0.02), True, tv.apply)
  assert denoise.tune(narrow, noisy, clean, std).at_grid_edge


@pytest.mark.parametrize("name", ["dncnn", "dncnn_1d"])
def test_dncnn_learns_the_residual(name):
  spec = registry.get(name)
  (x,) = spec.example_inputs(2)
  residual = registry.build(name)
  plain = registry.build(name, residual=False)
  variables = residual.init(KEY, x)
  apply_residual, apply_plain = jax.jit(residual.apply), jax.jit(plain.apply)
  out = apply_residual(variables, x)
  noise = apply_plain(variables, x)  # the same layers, without the subtraction
  np.testing.assert_allclose(out, x - noise, atol=1e-5)
  assert not np.allclose(noise, x - noise, atol=1e-2)  # negative control: the plain network
  # Zero last layer: the residual network is the identity, the plain one outputs zeros.
  zeroed = jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.zeros_like(v) if "conv_out" in jax.tree_util.keystr(path) else v,
      variables)
  np.testing.assert_array_equal(apply_residual(zeroed, x), x)
  np.testing.assert_array_equal(apply_plain(zeroed, x), jnp.zeros_like(x))
  with pytest.raises(ValueError, match="residual learning needs out_channels"):
    registry.build(name, out_channels=2).init(KEY, x)
  small = {"features": 4, "depth": 3, "kernel_size": 5, "batch_norm": False}
  shapes = jax.eval_shape(registry.build(name, **small).init, KEY, x)
  assert count_params(shapes["params"]) == denoiser.param_count(
      1, 1, 4, 3, 5, x.ndim - 2, batch_norm=False)


def test_ecg_record_and_windows():
  record = ecg.load()
  assert record.shape == (108_000,) and record.dtype == np.float32
  assert record.shape[0] / ecg.SAMPLING_RATE_HZ == 300  # five minutes
  assert (record.min(), record.max()) == (-3.485, 3.65)  # (327 - 1024) / 200, (1754 - 1024) / 200
  np.testing.assert_allclose(record.mean(), -0.16510875, atol=1e-6)  # scipy's documented mean
  np.testing.assert_allclose(ecg.to_unit(record)[[record.argmin(), record.argmax()]], [0, 1])
  windows = ecg.windows(256, train_stride=64)
  bounds = {s: ecg.split_bounds(s) for s in ("train", "val", "test")}
  assert bounds == {"train": (0, 75_600), "val": (75_600, 91_800), "test": (91_800, 108_000)}
  for split, stride in (("train", 64), ("val", 256), ("test", 256)):
    start, end = bounds[split]
    starts = np.arange(start, end - 256 + 1, stride)
    assert windows[split].shape == (len(starts), 256, 1)
    np.testing.assert_array_equal(windows[split][:, :, 0], record[starts[:, None]
                                                                  + np.arange(256)])
    assert starts[-1] + 256 <= end  # no window crosses into the next split
  with pytest.raises(ConfigError, match="accepted: 1 <= length <= 16200"):
    ecg.windows(20_000)


def _config(**overrides):
  config = denoise_mnist.get_config()
  config.model_kwargs.update({"features": 8, "depth": 2})
  config.update({"val_size": 100, "train_subset": 512, "test_subset": 40, "batch_size": 32,
                 "eval_batch_size": 20, "num_epochs": 2, "classical_images": 10,
                 "tune_images": 10, "learning_rate": 1e-2, "lr_schedule": "constant",
                 **overrides})
  return config


@pytest.mark.parametrize("dataset", ["mnist", "ecg"])
def test_short_training_lowers_the_loss_and_finishes(dataset, tmp_path):
  config = _config()
  if dataset == "ecg":
    config.model = "dncnn_1d"
    config.model_kwargs = {"length": 256, "out_channels": 1, "features": 8, "depth": 2}
    config.update({"dataset": "ecg", "noise_level": 0.1})
  task, state = in_process.start(config)
  _, before = task.evaluate(state, 0)
  state, _, _ = in_process.train(task, state)
  _, after = task.evaluate(state, 0)
  assert after["val"]["loss"] < 0.5 * before["val"]["loss"], (before, after)
  summary, metrics, headline = task.finish(state, task.plan().total_steps, tmp_path)
  test = metrics["test"]
  assert test["psnr"] > test["noisy_psnr"] + 2 and test["ssim"] > test["noisy_ssim"]
  names = {d.name for d in denoise.classical(1 if dataset == "ecg" else 2)}
  assert set(summary["classical"]["denoisers"]) == names
  assert summary["best_classical"] in names and "dB" in headline
  assert summary["classical"]["network"]["count"] == 10  # classical_images
  assert (tmp_path / "denoised.png").read_bytes()[:4] == b"\x89PNG"
  row = report.denoising_table([{**summary, "model": config.model, "run": "short"}])
  row = row.splitlines()[-1]  # the README's table of every classical denoiser reads it
  best = max(d["test_psnr"] for d in summary["classical"]["denoisers"].values())
  assert all(f"{d['test_psnr']:.2f} / {d['test_ssim']:.3f}" in row
             for d in summary["classical"]["denoisers"].values())
  assert row.endswith(f" | {summary['classical']['network']['psnr'] - best:+.2f} dB |"), row


@pytest.mark.parametrize("overrides, message", [
    ({"model_kwargs.image_size": 64}, "model_kwargs.image_size=64 does not fit the mnist data; "
                                      "accepted: 28"),
    ({"dataset": "ecg"}, "unknown model 'dncnn'; registered dense_1d models: dncnn_1d"),
    ({"model": "unet", "model_kwargs.features": (16, 32, 64)},
     "model_kwargs.features=(16, 32, 64): unet gives no output"),
])
def test_bad_configs_are_refused(overrides, message):
  config = denoise_mnist.get_config()
  for key, value in overrides.items():
    if key.startswith("model_kwargs."):
      config.model_kwargs[key.split(".", 1)[1]] = value
    else:
      config[key] = value
  with pytest.raises(ConfigError, match=re.escape(message)):
    denoising.Denoising.validate(config)
