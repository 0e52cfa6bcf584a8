"""The artificial neuron (section 2.1), linear regression trained by gradient descent (section 2.2)
and logistic regression (section 2.3.1), with hand-derived gradients.

Parameters are a dict {"w": (d,), "b": ()}; inputs x are (N, d) and targets y are (N,). The
linear-regression functions use only arithmetic operators and array methods, so they run on
`jax.numpy` arrays and equally on numpy object arrays of `fractions.Fraction`, in exact arithmetic.
"""

from typing import Callable

import jax
import jax.numpy as jnp

Params = dict  # {"w": weights (d,), "b": bias ()}


def neuron(x, w, b, phi: Callable = lambda z: z):
  """o = phi(w^T x + b), eq. 2.1; with the default linear phi, linear regression (eq. 2.8)."""
  return phi(x @ w + b)


# Linear regression with the squared loss.


def squared_loss(params: Params, x, y):
  """Empirical risk (1/N) sum_i (o_i - y_i)^2, eq. 2.9 with the loss of eq. 2.12.

  The worked example of section 2.2.2 uses this loss: eq. 2.15 writes a factor 1/2 but evaluates
  (5 - 2)^2 = 9 and differentiates it as 2(o - y) (eq. 2.17), so the factor is a typo.
  """
  r = neuron(x, params["w"], params["b"]) - y
  return (r ** 2).mean()


def squared_loss_grads(params: Params, x, y) -> Params:
  """Backward pass of the computation graph of figure 2.6, eq. 2.16-2.21, averaged over N."""
  o = neuron(x, params["w"], params["b"])  # forward pass, eq. 2.14
  dl_do = 2 * (o - y)  # eq. 2.17 (and dL/dq = dL/dr = dL/do, eq. 2.18-2.19)
  return {"w": x.T @ dl_do / len(y),  # dq/dw = x, eq. 2.20
          "b": dl_do.mean()}  # dr/db = 1, eq. 2.21


def gd_step(params: Params, grads: Params, learning_rate) -> Params:
  """theta <- theta - alpha dL/dtheta for every parameter, eq. 2.13 (and eq. 2.22-2.25)."""
  return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)


# Logistic regression with the binary cross-entropy.


def softplus(t):
  """log(1 + e^t), written so that e^t never overflows: max(t, 0) + log(1 + e^-|t|)."""
  return jnp.maximum(t, 0) + jnp.log1p(jnp.exp(-jnp.abs(t)))


def sigmoid(z):
  """1 / (1 + e^-z) (section 2.3), evaluated through e^-|z| <= 1 so it never overflows."""
  e = jnp.exp(-jnp.abs(z))
  return jnp.where(z >= 0, 1 / (1 + e), e / (1 + e))


def log_sigmoid(z):
  """log sigmoid(z) = -log(1 + e^-z) = -softplus(-z): finite for every finite z."""
  return -softplus(-z)


def logistic_logits(params: Params, x):
  """z = w^T x + b; the neuron's output is o = sigmoid(z) = P(y = 1 | x), eq. 2.31-2.36."""
  return neuron(x, params["w"], params["b"])


def binary_cross_entropy(params: Params, x, y):
  """Mean of -(y log o + (1 - y) log(1 - o)), eq. 2.40, computed from the logit z.

  log o = log_sigmoid(z) and log(1 - o) = log_sigmoid(-z), so no probability is rounded to 0 or 1
  before the logarithm: the loss stays finite (and exact) at logits like +-1e4.
  """
  z = logistic_logits(params, x)
  return -(y * log_sigmoid(z) + (1 - y) * log_sigmoid(-z)).mean()


def binary_cross_entropy_grads(params: Params, x, y) -> Params:
  """Hand-derived gradient of eq. 2.40 (the notes' exercise for figure 2.10).

  Case y = 1: L = -log sigmoid(z), dL/dz = -(1 - sigmoid(z)) = sigmoid(z) - 1.
  Case y = 0: L = -log(1 - sigmoid(z)), dL/dz = sigmoid(z).
  Both cases: dL/dz = o - y; then dz/dw = x and dz/db = 1, as in eq. 2.20-2.21.
  """
  dl_dz = sigmoid(logistic_logits(params, x)) - y
  return {"w": x.T @ dl_dz / len(y), "b": dl_dz.mean()}
