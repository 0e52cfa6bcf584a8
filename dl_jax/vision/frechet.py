"""The Frechet distance between two sets of features, each summarized by a Gaussian (Heusel et al.
2017, "GANs trained by a two time-scale update rule converge to a local Nash equilibrium", the
FID; Dowson and Landau 1982 for the distance between Gaussians):

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).

The trace of (S1 S2)^(1/2) is computed without a non-symmetric matrix square root: S1 S2 is
similar to the symmetric positive semi-definite S1^(1/2) S2 S1^(1/2) (conjugate by S1^(1/2)),
so Tr (S1 S2)^(1/2) = sum_i sqrt(lambda_i) over the eigenvalues lambda_i of that symmetric
product; S1^(1/2) and the eigenvalues come from `numpy.linalg.eigh`, in float64, with the
round-off's negative eigenvalues set to 0. The FID's features are those of Inception-v3; here
they are the penultimate layer of a classifier trained on the same data (`dl_jax.tasks.gan`).

Also the entropy, in bits, of the histogram of predicted classes (the class coverage of a set
of samples: log2 10 = 3.32 bits when the 10 classes are equally frequent, 0 when one class
holds every sample).
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Gaussian:
  """Mean [d] and covariance [d, d] (float64) of a set of feature vectors."""
  mean: np.ndarray
  covariance: np.ndarray
  count: int


def gaussian(features: np.ndarray) -> Gaussian:
  """The mean and the unbiased covariance (denominator n - 1) of features [n, d], n >= 2."""
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"features must be [n >= 2, d], got shape {x.shape}")
  return Gaussian(x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]), len(x))


def sqrt_psd(matrix: np.ndarray) -> np.ndarray:
  """The symmetric square root of a symmetric positive semi-definite matrix, by eigh (negative
  round-off eigenvalues clipped to 0)."""
  a = np.asarray(matrix, np.float64)
  values, vectors = np.linalg.eigh((a + a.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
  """Tr (S1 S2)^(1/2) = sum sqrt(eig(S1^(1/2) S2 S1^(1/2))) for symmetric PSD S1, S2."""
  root = sqrt_psd(s1)
  product = root @ np.asarray(s2, np.float64) @ root
  values = np.linalg.eigvalsh((product + product.T) / 2)
  return float(np.sum(np.sqrt(np.clip(values, 0.0, None))))


def frechet_distance(a: Gaussian, b: Gaussian) -> float:
  """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), >= 0 (0 for equal Gaussians, up to
  round-off)."""
  diff = a.mean - b.mean
  value = (float(diff @ diff) + float(np.trace(a.covariance)) + float(np.trace(b.covariance))
           - 2.0 * trace_sqrt_product(a.covariance, b.covariance))
  return max(value, 0.0)


def class_histogram(predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """The fraction of `predictions` (class ids) in each of `num_classes` classes."""
  counts = np.bincount(np.asarray(predictions, np.int64), minlength=num_classes)
  return counts / max(counts.sum(), 1)


def entropy_bits(histogram: np.ndarray) -> float:
  """-sum p log2 p over the classes with p > 0."""
  p = np.asarray(histogram, np.float64)
  p = p[p > 0]
  return float(-np.sum(p * np.log2(p)))
