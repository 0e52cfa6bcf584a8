"""Linear baselines for learned representations (section 5.5): PCA, the linear autoencoder that
eq. 5.25-5.26 reduce to with a linear f and g and the squared loss, and the linear probe, a
logistic regression trained on frozen features (the frozen transfer of section 5.4).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

_FTOL = 1e-7  # relative decrease of the objective below which L-BFGS stops


def pca_fit(x, n_components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(mean [D], components [k, D], explained_variance [k]) of the rows of x [N, D].

  By an SVD of the centred data in float64 (of its R factor when N > D, the same singular values
  and right vectors in D x D memory). Components are orthonormal rows, by decreasing variance,
  each signed so that its largest-magnitude entry is positive; the variances divide by N - 1, as
  scikit-learn's.
  """
  x = np.asarray(x, dtype=np.float64)
  n, d = x.shape
  if not 1 <= n_components <= min(n, d):
    raise ValueError(f"n_components={n_components} must be between 1 and min(N, D) = {min(n, d)}")
  mean = x.mean(axis=0)
  centred = x - mean
  if n > d:
    centred = np.linalg.qr(centred, mode="r")
  _, singular, vt = np.linalg.svd(centred, full_matrices=False)
  components = vt[:n_components]
  peak = np.argmax(np.abs(components), axis=1)
  components *= np.sign(components[np.arange(n_components), peak])[:, None]
  return mean, components, singular[:n_components] ** 2 / max(n - 1, 1)


def pca_encode(x, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
  """The code h = f(x) (eq. 5.26): coordinates of x - mean along the components, [N, k]."""
  return (np.asarray(x, dtype=np.float64) - mean) @ components.T


def pca_reconstruct(codes, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
  """The decoding g(h) (eq. 5.25): the best rank-k approximation of x in squared error, [N, D]."""
  return np.asarray(codes, dtype=np.float64) @ components + mean


def _standardize(train_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Both sets scaled by the train mean and standard deviation (constant features: scale 1)."""
  train_x = np.asarray(train_x, dtype=np.float32).reshape(len(train_x), -1)
  test_x = np.asarray(test_x, dtype=np.float32).reshape(len(test_x), -1)
  mean = train_x.mean(axis=0, dtype=np.float64)
  std = train_x.std(axis=0, dtype=np.float64)
  scale = (1.0 / np.where(std > 0, std, 1.0)).astype(np.float32)
  mean = mean.astype(np.float32)
  return (train_x - mean) * scale, (test_x - mean) * scale


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit_logistic(x, y, num_classes: int, l2, steps: int, tol):
  """L-BFGS on mean cross-entropy + l2 / 2 ||W||^2 (intercept unpenalized), from zero.

  Stops after `steps` iterations, when no gradient entry exceeds tol in magnitude (scikit-learn's
  criterion for its lbfgs solver), or when an iteration lowers the objective by less than _FTOL
  of max(objective, 1) (the float32 floor, where a line search only adds noise); the best
  iterate seen is returned.
  """
  params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros(num_classes)}

  def objective(p):
    logits = x @ p["w"] + p["b"]
    nll = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    return nll + 0.5 * l2 * jnp.sum(p["w"] ** 2)

  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry):
    p, state, best, best_value, _, i = carry
    value, grad = value_and_grad(p, state=state)
    stalled = best_value - value <= _FTOL * jnp.maximum(jnp.abs(value), 1.0)
    converged = (optax.tree.norm(grad, ord=jnp.inf) <= tol) | stalled
    better = value < best_value
    best = jax.tree.map(lambda new, old: jnp.where(better, new, old), p, best)
    best_value = jnp.minimum(value, best_value)
    updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=objective)
    return optax.apply_updates(p, updates), state, best, best_value, converged, i + 1

  def running(carry):
    *_, converged, i = carry
    return (i < steps) & ~converged

  init = (params, opt.init(params), params, jnp.asarray(jnp.inf), jnp.asarray(False),
          jnp.asarray(0))
  last, _, best, best_value, converged, done = jax.lax.while_loop(running, step, init)
  last_value = objective(last)
  take_last = ~converged & (last_value < best_value)  # the final update, not yet evaluated
  best = jax.tree.map(lambda new, old: jnp.where(take_last, new, old), last, best)
  return best, jnp.where(take_last, last_value, best_value), done


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int, l2: float = 1e-4,
                 steps: int = 500, tol: float = 1e-4) -> dict[str, float]:
  """Multinomial logistic regression on frozen features, standardized by the train statistics.

  Minimizes the mean cross-entropy + l2 / 2 ||W||^2 (scikit-learn's LogisticRegression with
  C = 1 / (l2 N_train)) by full-batch L-BFGS in one jitted loop, deterministic, for at most
  `steps` iterations, until no gradient entry exceeds tol (scikit-learn's stopping rule and
  default) or the objective stops decreasing (to float32 precision). Features may be of any
  shape [N, ...] (flattened). Returns the train and test accuracies, the final objective and the
  iterations taken.
  """
  train_x, test_x = _standardize(train_x, test_x)
  train_y = np.asarray(train_y, dtype=np.int32)
  test_y = np.asarray(test_y, dtype=np.int32)
  for name, y in (("train_y", train_y), ("test_y", test_y)):
    if len(y) and not 0 <= y.min() <= y.max() < num_classes:
      raise ValueError(f"{name} has labels outside [0, {num_classes})")
  params, objective, done = _fit_logistic(jnp.asarray(train_x), jnp.asarray(train_y), num_classes,
                                          l2, steps, tol)
  w, b = np.asarray(params["w"]), np.asarray(params["b"])

  def accuracy(x, y):
    return float(np.mean(np.argmax(x @ w + b, axis=1) == y))

  return {"train_accuracy": accuracy(train_x, train_y), "test_accuracy": accuracy(test_x, test_y),
          "objective": float(objective), "steps": int(done)}
