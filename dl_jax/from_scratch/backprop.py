"""Backpropagation through a multilayer perceptron with explicit Jacobians, section 2.4.

A layer is a dict {"W": (m, n), "b": (m,)} computing F(x) = phi(W x + b): row i of W holds the
weights w_{i,1..n} of neuron f_i, as in eq. 2.50 (a flax `Dense` kernel is W^T). Its parameters
in the order of eq. 2.51 are theta = (theta_1, ..., theta_m) with
theta_i = (w_{i,1}, ..., w_{i,n}, b_i), i.e. the rows of [W | b] one after the other (`pack`).

`backward` follows eq. 2.53-2.57 for one example: the row vector dL/do is multiplied by the
parameter Jacobian of each layer (eq. 2.51, built as a matrix) to give dL/dtheta, and by the input
Jacobian to give dL/d(layer input) for the layer below. With explicit=False the same vector-Jacobian
products are taken without building the matrices, which is what autodiff does for a dense layer.
The matrices grow as m^2 (n + 1): they are for small networks and for checking, not for training.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from dl_jax.errors import ConfigError
from dl_jax.from_scratch import softmax
from dl_jax.from_scratch.neuron import sigmoid
from dl_jax.nn import activations as activations_lib

Layer = dict  # {"W": (m, n), "b": (m,)}

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

# phi'(z) in closed form for every activation of `dl_jax.nn.activations` (kinks: z > 0 branch).
DERIVATIVES = {
    "linear": jnp.ones_like,
    "relu": lambda z: jnp.where(z > 0, 1.0, 0.0).astype(z.dtype),
    "leaky_relu": lambda z: jnp.where(z > 0, 1.0, 0.01).astype(z.dtype),
    "elu": lambda z: jnp.where(z > 0, 1.0, jnp.exp(jnp.minimum(z, 0))),
    "selu": lambda z: SELU_SCALE * jnp.where(z > 0, 1.0, SELU_ALPHA * jnp.exp(jnp.minimum(z, 0))),
    "softplus": sigmoid,
    "sigmoid": lambda z: sigmoid(z) * (1 - sigmoid(z)),
    "tanh": lambda z: 1 - jnp.tanh(z) ** 2,
}

LOSSES = ("squared", "cross_entropy")


def init_mlp(key: jax.Array, sizes: Sequence[int], bias_scale: float = 1.0) -> list[Layer]:
  """Layers n_0 -> n_1 -> ... with W ~ N(0, 1/n_in) and b ~ N(0, bias_scale^2)."""
  params = []
  for n, m in zip(sizes[:-1], sizes[1:]):
    key, kw, kb = jax.random.split(key, 3)
    params.append({"W": jax.random.normal(kw, (m, n)) / jnp.sqrt(n),
                   "b": bias_scale * jax.random.normal(kb, (m,))})
  return params


def forward(params: Sequence[Layer], x, activations: Sequence[str]):
  """The composition of eq. 2.46, keeping what the backward pass needs.

  Returns (hs, zs): hs[0] = x and hs[k + 1] = phi_k(zs[k]) with zs[k] = W_k hs[k] + b_k, so hs[-1]
  is the output o. x is one example (n,) or a batch (N, n).
  """
  _check(params, activations)
  hs, zs = [x], []
  for layer, name in zip(params, activations):
    zs.append(hs[-1] @ layer["W"].T + layer["b"])
    hs.append(activations_lib.get(name)(zs[-1]))
  return hs, zs


def pack(layer: Layer) -> jnp.ndarray:
  """theta = (theta_1, ..., theta_m), theta_i = (w_{i,1}, ..., w_{i,n}, b_i): length m (n + 1)."""
  return jnp.concatenate([layer["W"], layer["b"][:, None]], axis=1).reshape(-1)


def unpack(theta: jnp.ndarray, m: int, n: int) -> Layer:
  """The inverse of `pack` for a layer with n inputs and m neurons."""
  rows = theta.reshape(m, n + 1)
  return {"W": rows[:, :n], "b": rows[:, n]}


def param_jacobian(h, z, activation: str) -> jnp.ndarray:
  """dF/dtheta for one example: the block-diagonal (m, m (n + 1)) matrix of eq. 2.51.

  Neuron f_i = phi(w_i^T h + b_i) depends only on its own theta_i, so block i is the 1 x (n + 1)
  row of eq. 2.52, (df_i/dw_{i,1}, ..., df_i/dw_{i,n}, df_i/db_i) = phi'(z_i) (h_1, ..., h_n, 1),
  and every block off the diagonal is 0.
  """
  m = z.shape[0]
  rows = DERIVATIVES[activation](z)[:, None] * jnp.append(h, 1.0)  # row i: block i, eq. 2.52
  blocks = jnp.eye(m, dtype=rows.dtype)[:, :, None] * rows[:, None, :]  # [i, j] = delta_ij row_i
  return blocks.reshape(m, m * rows.shape[1])


def input_jacobian(layer: Layer, z, activation: str) -> jnp.ndarray:
  """dF/dh = diag(phi'(z)) W, (m, n), for one example.

  The notes ask whether this one is block diagonal too: no, every neuron sees every input, so it is
  a full matrix.
  """
  return DERIVATIVES[activation](z)[:, None] * layer["W"]


def backward(params: Sequence[Layer], hs, zs, activations: Sequence[str], dl_do,
             explicit: bool = True) -> list[Layer]:
  """dL/dW_k and dL/db_k for every layer, for one example, given dL/do, eq. 2.53-2.57."""
  grads = [None] * len(params)
  g = dl_do  # dL/d(output of layer k), a row vector
  for k in reversed(range(len(params))):
    layer, name = params[k], activations[k]
    m, n = layer["W"].shape
    if explicit:
      grads[k] = unpack(g @ param_jacobian(hs[k], zs[k], name), m, n)  # eq. 2.53, 2.55, 2.57
      g = g @ input_jacobian(layer, zs[k], name)  # eq. 2.54, 2.56
    else:
      delta = g * DERIVATIVES[name](zs[k])  # dL/dz_k
      grads[k] = {"W": jnp.outer(delta, hs[k]), "b": delta}
      g = delta @ layer["W"]
  return grads


def loss_and_grads(params: Sequence[Layer], x, y, activations: Sequence[str],
                   loss: str = "squared", explicit: bool = True):
  """Mean loss over a batch and its gradient for every W, b, by hand-written backpropagation.

  loss="squared": L = sum_j (o_j - y_j)^2 with y (N, m_out) (eq. 2.12 per output),
  dL/do = 2 (o - y). loss="cross_entropy": eq. 2.62-2.63 on the logits o with integer labels y
  (N,), dL/do = softmax(o) - e_y. Examples are backpropagated one by one (vmap) and averaged.
  """
  if loss not in LOSSES:
    raise ConfigError(f"unknown loss {loss!r}; accepted: {', '.join(LOSSES)}")
  _check(params, activations)

  def one_example(xi, yi):
    hs, zs = forward(params, xi, activations)
    o = hs[-1]
    if loss == "squared":
      value, dl_do = ((o - yi) ** 2).sum(), 2 * (o - yi)
    else:
      value, dl_do = softmax.cross_entropy(o, yi), softmax.cross_entropy_grad(o, yi)
    return value, backward(params, hs, zs, activations, dl_do, explicit)

  values, grads = jax.vmap(one_example)(x, y)
  return values.mean(), jax.tree.map(lambda g: g.mean(axis=0), grads)


def _check(params: Sequence[Layer], activations: Sequence[str]) -> None:
  if len(activations) != len(params):
    raise ConfigError(f"{len(activations)} activations for {len(params)} layers; "
                      "give one per layer")
  for name in activations:
    if name not in DERIVATIVES:
      raise ConfigError(f"unknown activation {name!r}; accepted: {', '.join(DERIVATIVES)}")
