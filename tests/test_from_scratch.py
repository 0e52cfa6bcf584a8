"""The hand-written mechanisms of chapter 2 against `jax.grad`, `jax.jacobian`, optax and the
worked examples of the notes. Gradient comparisons run in float64, where they must agree to ~1e-12."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax.errors import ConfigError
from dl_jax.from_scratch import backprop, neuron, softmax
from dl_jax.nn import activations
from dl_jax.train.optimizers import make_optimizer

TIGHT = {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


def assert_trees_close(a, b, **tol):
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, **(tol or TIGHT)), a, b)


# The neuron and linear regression, sections 2.1-2.2.


def test_neuron_example_of_section_2_1():
  o = neuron.neuron(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.5, 1.0]), 0.5)  # eq. 2.2-2.7
  assert o == 5.5
  assert neuron.neuron(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.5, 1.0]), 0.5, jnp.tanh) == \
      jnp.tanh(5.5)


def test_worked_example_of_section_2_2_2():
  params = {"w": jnp.array([2.0]), "b": jnp.array(1.0)}
  x, y = jnp.array([[2.0]]), jnp.array([2.0])
  assert neuron.squared_loss(params, x, y) == 9.0  # eq. 2.14-2.15
  grads = neuron.squared_loss_grads(params, x, y)
  assert grads["w"][0] == 12.0 and grads["b"] == 6.0  # eq. 2.20-2.21, exact integers
  autodiff = jax.grad(neuron.squared_loss)(params, x, y)
  assert autodiff["w"][0] == 12.0 and autodiff["b"] == 6.0

  # 0.8 and 0.4 are not binary floats, so the step is exact in rational arithmetic: the same
  # functions run on numpy object arrays of Fractions.
  exact = {"w": np.array([Fraction(2)], dtype=object), "b": Fraction(1)}
  xq, yq = np.array([[Fraction(2)]], dtype=object), np.array([Fraction(2)], dtype=object)
  grads_q = neuron.squared_loss_grads(exact, xq, yq)
  assert grads_q["w"][0] == 12 and grads_q["b"] == 6
  stepped = neuron.gd_step(exact, grads_q, Fraction(1, 10))  # eq. 2.22-2.25
  assert stepped["w"][0] == Fraction(4, 5) and stepped["b"] == Fraction(2, 5)
  # ... and in float32 it is the nearest float, give or take the rounding of 0.1 * 12.
  stepped32 = neuron.gd_step(params, grads, 0.1)
  np.testing.assert_array_max_ulp(stepped32["w"], np.float32([0.8]), maxulp=1)
  np.testing.assert_array_max_ulp(stepped32["b"], np.float32(0.4), maxulp=1)


def test_linear_regression_gradients_match_autodiff(x64):
  kx, ky, kw = jax.random.split(jax.random.PRNGKey(0), 3)
  x, y = jax.random.normal(kx, (32, 5)), jax.random.normal(ky, (32,))
  params = {"w": jax.random.normal(kw, (5,)), "b": jnp.array(3.0)}
  assert_trees_close(neuron.squared_loss_grads(params, x, y),
                     jax.grad(neuron.squared_loss)(params, x, y))
  # Gradient descent with the hand gradients lowers the loss.
  stepped = neuron.gd_step(params, neuron.squared_loss_grads(params, x, y), 0.1)
  assert neuron.squared_loss(stepped, x, y) < neuron.squared_loss(params, x, y)


# Logistic regression, section 2.3.1.


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e4])
def test_logistic_regression_gradients_match_autodiff(x64, scale):
  kx, kw = jax.random.split(jax.random.PRNGKey(1))
  x = jax.random.normal(kx, (64, 3))
  y = (jnp.arange(64) % 2).astype(jnp.float64)
  params = {"w": scale * jax.random.normal(kw, (3,)), "b": jnp.array(0.5 * scale)}
  z = neuron.logistic_logits(params, x)
  assert float(jnp.abs(z).max()) > scale / 10  # the logits really are that large
  loss = neuron.binary_cross_entropy(params, x, y)
  grads = neuron.binary_cross_entropy_grads(params, x, y)
  assert jnp.isfinite(loss) and all(jnp.isfinite(g).all() for g in jax.tree.leaves(grads))
  np.testing.assert_allclose(loss, optax.sigmoid_binary_cross_entropy(z, y).mean(), **TIGHT)
  assert_trees_close(grads, jax.grad(neuron.binary_cross_entropy)(params, x, y))
  if scale >= 1e3:  # negative control: eq. 2.40 taken literally overflows here
    o = 1 / (1 + jnp.exp(-z))
    assert not jnp.isfinite(-(y * jnp.log(o) + (1 - y) * jnp.log(1 - o))).all()


def test_sigmoid_is_stable_and_correct(x64):
  z = jnp.array([-1e4, -50.0, -1.0, 0.0, 1.0, 50.0, 1e4])
  np.testing.assert_allclose(neuron.sigmoid(z), jax.nn.sigmoid(z), **TIGHT)
  np.testing.assert_allclose(neuron.log_sigmoid(z), jax.nn.log_sigmoid(z), **TIGHT)


# Softmax and categorical cross-entropy, section 2.5.2.


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_softmax_cross_entropy_matches_optax_and_autodiff(x64, scale):
  kv, ky = jax.random.split(jax.random.PRNGKey(2))
  v = scale * jax.random.normal(kv, (16, 10))
  y = jax.random.randint(ky, (16,), 0, 10)
  p = softmax.softmax(v)
  np.testing.assert_allclose(p.sum(-1), 1.0, **TIGHT)
  np.testing.assert_allclose(p, jax.nn.softmax(v), **TIGHT)
  loss = softmax.cross_entropy(v, y)
  assert jnp.isfinite(loss).all()
  np.testing.assert_allclose(loss, optax.softmax_cross_entropy_with_integer_labels(v, y),
                             rtol=1e-12, atol=1e-12 * scale)
  hand = softmax.cross_entropy_grad(v, y)
  assert jnp.isfinite(hand).all()
  np.testing.assert_allclose(hand, jax.grad(lambda v: softmax.cross_entropy(v, y).sum())(v),
                             **TIGHT)
  if scale >= 1e4:  # negative control: -log(e^{v_y} / sum e^{v_i}) without the shift overflows
    assert not jnp.isfinite(-jnp.log(jnp.exp(v) / jnp.exp(v).sum(-1, keepdims=True))).all()


def test_cross_entropy_at_logits_1e4():
  v = jnp.array([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4]])
  y = jnp.array([0, 2])
  np.testing.assert_allclose(softmax.cross_entropy(v, y), [0.0, 2e4])
  np.testing.assert_allclose(softmax.cross_entropy_grad(v, y), [[0, 0, 0], [1, 0, -1]])


# Backpropagation through an MLP, section 2.4.


def reference_loss(params, x, y, names, loss):
  """The same MLP and loss written independently, for autodiff."""
  h = x
  for layer, name in zip(params, names):
    h = activations.get(name)(h @ layer["W"].T + layer["b"])
  if loss == "squared":
    return ((h - y) ** 2).sum(-1).mean()
  return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()


def random_mlp(seed):
  """A random depth (1-4 layers), widths (1-6), hidden activations and loss."""
  rng = np.random.default_rng(seed)
  depth = int(rng.integers(1, 5))
  sizes = [int(s) for s in rng.integers(1, 7, size=depth + 1)]
  loss = ("squared", "cross_entropy")[seed % 2]
  if loss == "cross_entropy":
    sizes[-1] = max(sizes[-1], 2)
  hidden = [str(a) for a in rng.choice(sorted(backprop.DERIVATIVES), size=depth - 1)]
  names = hidden + ["linear"]
  kp, kx, ky = jax.random.split(jax.random.PRNGKey(seed), 3)
  params = backprop.init_mlp(kp, sizes)
  x = 2 * jax.random.normal(kx, (8, sizes[0]))
  if loss == "squared":
    y = jax.random.normal(ky, (8, sizes[-1]))
  else:
    y = jax.random.randint(ky, (8,), 0, sizes[-1])
  return params, x, y, names, loss


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("explicit", [True, False])
def test_mlp_backprop_matches_autodiff(x64, seed, explicit):
  params, x, y, names, loss = random_mlp(seed)
  value, grads = backprop.loss_and_grads(params, x, y, names, loss, explicit=explicit)
  np.testing.assert_allclose(value, reference_loss(params, x, y, names, loss), **TIGHT)
  assert_trees_close(grads, jax.grad(reference_loss)(params, x, y, names, loss))
  # Negative control: the gradient of the first layer's weights is not zero by accident.
  assert jnp.abs(grads[0]["W"]).max() > 1e-6 or names[0] == "relu"


def test_mlp_backprop_catches_a_wrong_derivative(x64, monkeypatch):
  params, x, y, names, loss = random_mlp(3)
  names = ["tanh"] * (len(params) - 1) + ["linear"]
  params = params if len(params) > 1 else random_mlp(4)[0]
  names = ["tanh"] * (len(params) - 1) + ["linear"]
  x = x[:, :params[0]["W"].shape[1]]
  monkeypatch.setitem(backprop.DERIVATIVES, "tanh", lambda z: 1 - jnp.tanh(z))  # wrong on purpose
  _, grads = backprop.loss_and_grads(params, x, y[:, :params[-1]["W"].shape[0]]
                                     if loss == "squared" else y, names, loss)
  expected = jax.grad(reference_loss)(params, x, y, names, loss)
  assert not np.allclose(grads[0]["W"], expected[0]["W"], rtol=1e-3)


@pytest.mark.parametrize("name", sorted(backprop.DERIVATIVES))
def test_param_jacobian_is_the_block_diagonal_of_eq_2_51(x64, name):
  m, n = 4, 3
  kh, kl = jax.random.split(jax.random.PRNGKey(5))
  layer = backprop.init_mlp(kl, [n, m])[0]
  h = jax.random.normal(kh, (n,))
  z = layer["W"] @ h + layer["b"]
  jac = backprop.param_jacobian(h, z, name)
  assert jac.shape == (m, m * (n + 1))

  def layer_of_theta(theta):
    unpacked = backprop.unpack(theta, m, n)
    return activations.get(name)(unpacked["W"] @ h + unpacked["b"])

  np.testing.assert_allclose(jac, jax.jacobian(layer_of_theta)(backprop.pack(layer)), **TIGHT)
  blocks = jac.reshape(m, m, n + 1)
  off_diagonal = blocks * (1 - jnp.eye(m))[:, :, None]
  assert not off_diagonal.any()  # neurons share no weights

  # The Jacobian with respect to the input is a full matrix (the notes' question after eq. 2.52).
  jac_in = backprop.input_jacobian(layer, z, name)
  np.testing.assert_allclose(
      jac_in, jax.jacobian(lambda h: activations.get(name)(layer["W"] @ h + layer["b"]))(h), **TIGHT)


def test_backprop_rejects_bad_configurations():
  params = backprop.init_mlp(jax.random.PRNGKey(0), [2, 3, 1])
  x, y = jnp.zeros((4, 2)), jnp.zeros((4, 1))
  with pytest.raises(ConfigError, match="1 activations for 2 layers"):
    backprop.loss_and_grads(params, x, y, ["relu"])
  with pytest.raises(ConfigError, match="unknown activation 'swish'.*accepted: linear"):
    backprop.loss_and_grads(params, x, y, ["swish", "linear"])
  with pytest.raises(ConfigError, match="unknown loss 'hinge'.*squared"):
    backprop.loss_and_grads(params, x, y, ["relu", "linear"], loss="hinge")


# Momentum, section 2.6.


def test_momentum_trajectory_is_eq_2_66_with_theta_plus_v(x64):
  """optax's momentum is eq. 2.66 followed by theta <- theta + v.

  Eq. 2.67 prints theta <- theta - v, but with v <- gamma v - alpha grad (eq. 2.66) that would
  climb the loss: the first step would be theta + alpha grad. The standard method (Polyak's heavy
  ball, as in Sutskever et al. 2013) is v <- gamma v - alpha grad, theta <- theta + v. optax keeps
  the trace t <- grad + gamma t and steps theta <- theta - alpha t, so with a constant alpha
  its t is exactly -v / alpha: the same trajectory.
  """
  a = jnp.array([[3.0, 1.0], [1.0, 2.0]])  # L(theta) = 1/2 theta^T A theta - c^T theta
  c = jnp.array([1.0, -1.0])
  loss = lambda theta: 0.5 * theta @ a @ theta - c @ theta
  grad = jax.grad(loss)
  lr, gamma, steps = 0.05, 0.9, 40
  theta0 = jnp.array([2.0, -3.0])

  opt = make_optimizer("momentum", lr)
  theta, state = theta0, opt.init(theta0)
  library = []
  for _ in range(steps):
    updates, state = opt.update(grad(theta), state, theta)
    theta = optax.apply_updates(theta, updates)
    library.append(theta)

  def by_hand(sign):
    theta, v, path = theta0, jnp.zeros(2), []
    for _ in range(steps):
      v = gamma * v - lr * grad(theta)  # eq. 2.66
      theta = theta + sign * v
      path.append(theta)
    return jnp.stack(path), v

  standard, v = by_hand(+1)
  np.testing.assert_allclose(jnp.stack(library), standard, **TIGHT)
  np.testing.assert_allclose(optax.tree_utils.tree_get(state, "trace"), -v / lr, **TIGHT)
  assert loss(standard[-1]) < loss(theta0)
  # Eq. 2.67 as printed goes uphill and leaves the library's trajectory.
  as_printed, _ = by_hand(-1)
  assert loss(as_printed[-1]) > loss(theta0)
  assert not np.allclose(as_printed, standard)
