"""Denoising (section 5.3.5; the input corruption n(x) of eq. 5.29): noise models, the quality
measures PSNR and SSIM, and scikit-image's classical denoisers with a parameter tuned on
validation examples, the baselines of the networks of `dl_jax.tasks.denoising`.

Examples are images [N, H, W] or 1-D signals [N, L] (no channel axis) with values in [0, 1];
every estimate is clipped to [0, 1] before it is measured (the range is known, so clipping is
free for any denoiser, the networks' included).

Noise, pure in its key:
- "gaussian": y = x + level * N(0, 1) per pixel, by default NOT clipped to [0, 1] (additive
  white Gaussian noise, the model the classical denoisers and the DnCNN paper assume; clipping
  would make the noise biased and signal-dependent, e.g. a black pixel's noisy value would have
  mean level / sqrt(2 pi) > 0); `clip=True` clips y to [0, 1];
- "salt_and_pepper": a fraction `level` of the pixels, drawn independently, set to 0 or 1 with
  equal probability.

Measures (`skimage.metrics`, data_range 1): PSNR = 10 log10(1 / MSE) per example, averaged over
the examples (as denoising benchmarks report it); SSIM of Wang et al. (2004) per example with
scikit-image's defaults (7-sample uniform windows along every axis), averaged.

Classical denoisers: each has one parameter tuned on validation pairs (noisy, clean) by the
mean PSNR over a fixed grid (`tune`), then measured on test examples. Grids of parameters that
scale with the noise are multiples of `noise_std`, the standard deviation of (noisy - clean)
over the validation examples; the others are in pixels (samples). Images (`IMAGE_DENOISERS`):
- gaussian: `skimage.filters.gaussian`, sigma in {0.25, ..., 3} pixels;
- median: `skimage.filters.median` over a k x k square, k in {3, 5, 7} (for salt and pepper);
- tv_chambolle: `skimage.restoration.denoise_tv_chambolle`, weight = noise_std x {0.1 .. 3},
  10 values spaced geometrically;
- nl_means: `skimage.restoration.denoise_nl_means`, fast mode, 5 x 5 patches searched within
  6 pixels (a 13 x 13 window of the 28 x 28 images), sigma = noise_std (the mode that subtracts
  the expected noise distance), h = noise_std x {0.1 .. 2} (10 values, geometric);
- wavelet: `skimage.restoration.denoise_wavelet`, sym4, 2 levels, BayesShrink soft
  thresholds, its noise sigma = noise_std x {0.05 .. 2} (10 values, geometric).
Signals (`SIGNAL_DENOISERS`), in one dimension: gaussian (sigma in {0.5 .. 12} samples), median
(k in {3 .. 31} samples), tv_chambolle (weight = noise_std x {0.3 .. 30}, 15 values, geometric)
and wavelet (sym4, 4 levels, otherwise as above); no non-local means (scikit-image has it for
images only).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from skimage import filters, metrics, restoration

NOISES = ("gaussian", "salt_and_pepper")


def add_noise(key: jax.Array, clean: jax.Array, kind: str, level: float,
              clip: bool = False) -> jax.Array:
  """n(x) of eq. 5.29 (see the module docstring), pure in `key`."""
  if kind == "gaussian":
    noisy = clean + level * jax.random.normal(key, clean.shape, clean.dtype)
    return jnp.clip(noisy, 0, 1) if clip else noisy
  if kind == "salt_and_pepper":
    k_where, k_value = jax.random.split(key)
    hit = jax.random.bernoulli(k_where, level, clean.shape)
    salt = jax.random.bernoulli(k_value, 0.5, clean.shape).astype(clean.dtype)
    return jnp.where(hit, salt, clean)
  raise ValueError(f"noise={kind!r}; accepted: {', '.join(NOISES)}")


def psnr_from_mse(mse, data_range: float = 1.0):
  """10 log10(data_range^2 / mse), elementwise (numpy or jax)."""
  return 10.0 * jnp.log10(data_range ** 2 / mse)


def psnr(clean: np.ndarray, estimate: np.ndarray) -> np.ndarray:
  """PSNR in dB of each example [N] (`skimage.metrics.peak_signal_noise_ratio`, range 1)."""
  return np.asarray([metrics.peak_signal_noise_ratio(c, e, data_range=1.0)
                     for c, e in zip(np.asarray(clean, np.float64),
                                     np.asarray(estimate, np.float64))])


def ssim(clean: np.ndarray, estimate: np.ndarray) -> np.ndarray:
  """SSIM of each example [N] (`skimage.metrics.structural_similarity`, range 1)."""
  return np.asarray([metrics.structural_similarity(c, e, data_range=1.0)
                     for c, e in zip(np.asarray(clean, np.float64),
                                     np.asarray(estimate, np.float64))])


@dataclasses.dataclass(frozen=True)
class Classical:
  """A classical denoiser with one parameter.

  Attributes:
    name: e.g. "nl_means".
    parameter: the name of the tuned parameter, e.g. "h".
    grid: the values tried; multiples of noise_std when `relative`.
    relative: whether the grid scales with the noise.
    apply: (one example, parameter value, noise_std) -> its estimate.
  """
  name: str
  parameter: str
  grid: tuple[float, ...]
  relative: bool
  apply: Callable[[np.ndarray, float, float], np.ndarray]

  def values(self, noise_std: float) -> tuple[float, ...]:
    """The grid's parameter values for noise of standard deviation `noise_std`."""
    return tuple(float(v * noise_std) if self.relative else float(v) for v in self.grid)

  def __call__(self, noisy: np.ndarray, value: float, noise_std: float) -> np.ndarray:
    """The estimates of every example [N, ...] at parameter `value`, clipped to [0, 1]."""
    noisy = np.asarray(noisy, np.float64)
    return np.clip(np.stack([self.apply(x, value, noise_std) for x in noisy]), 0, 1)


@dataclasses.dataclass(frozen=True)
class Tuned:
  """A denoiser's grid search: the chosen value and the mean validation PSNR of each value."""
  value: float
  scores: dict[float, float]

  @property
  def at_grid_edge(self) -> bool:
    """Whether the best value is the grid's smallest or largest (the grid may be too narrow)."""
    values = sorted(self.scores)
    return len(values) > 1 and self.value in (values[0], values[-1])


def noise_std(noisy: np.ndarray, clean: np.ndarray) -> float:
  """The standard deviation of the noise, noisy - clean, over all the examples' values."""
  return float(np.std(np.asarray(noisy, np.float64) - np.asarray(clean, np.float64)))


def tune(denoiser: Classical, noisy: np.ndarray, clean: np.ndarray, std: float) -> Tuned:
  """The grid value of the highest mean PSNR on (noisy, clean) validation pairs (the first of
  equal ones)."""
  scores = {v: float(np.mean(psnr(clean, denoiser(noisy, v, std))))
            for v in denoiser.values(std)}
  return Tuned(max(scores, key=scores.get), scores)


def _geometric(low: float, high: float, count: int = 10) -> tuple[float, ...]:
  return tuple(float(v) for v in np.geomspace(low, high, count))


def _median(x: np.ndarray, size: float, std: float) -> np.ndarray:
  del std
  return filters.median(x, footprint=np.ones((int(size),) * x.ndim, bool))


def _tv(x: np.ndarray, weight: float, std: float) -> np.ndarray:
  del std
  return restoration.denoise_tv_chambolle(x, weight=weight)


def _wavelet(levels: int) -> Callable[[np.ndarray, float, float], np.ndarray]:
  def apply(x, sigma, std):
    del std
    return restoration.denoise_wavelet(x, sigma=sigma, wavelet="sym4", mode="soft",
                                       wavelet_levels=levels, method="BayesShrink",
                                       rescale_sigma=True)
  return apply


def _nl_means(x: np.ndarray, h: float, std: float) -> np.ndarray:
  return restoration.denoise_nl_means(x, h=h, sigma=std, fast_mode=True, patch_size=5,
                                      patch_distance=6)


IMAGE_DENOISERS = (
    Classical("gaussian", "sigma", (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0), False,
              lambda x, sigma, std: filters.gaussian(x, sigma=sigma)),
    Classical("median", "size", (3, 5, 7), False, _median),
    Classical("tv_chambolle", "weight", _geometric(0.1, 3.0), True, _tv),
    Classical("nl_means", "h", _geometric(0.1, 2.0), True, _nl_means),
    Classical("wavelet", "sigma", _geometric(0.05, 2.0), True, _wavelet(2)),
)
SIGNAL_DENOISERS = (
    Classical("gaussian", "sigma", (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0), False,
              lambda x, sigma, std: filters.gaussian(x, sigma=sigma)),
    Classical("median", "size", (3, 5, 7, 9, 11, 15, 21, 31), False, _median),
    Classical("tv_chambolle", "weight", _geometric(0.3, 30.0, 15), True, _tv),
    Classical("wavelet", "sigma", _geometric(0.05, 2.0), True, _wavelet(4)),
)


def classical(ndim: int) -> tuple[Classical, ...]:
  """The classical denoisers of examples with `ndim` axes: 2 (images) or 1 (signals)."""
  if ndim not in (1, 2):
    raise ValueError(f"examples of {ndim} axes; accepted: 1 (signals) or 2 (images)")
  return IMAGE_DENOISERS if ndim == 2 else SIGNAL_DENOISERS
