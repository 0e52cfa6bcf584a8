"""The hand-written mechanisms of chapter 2 against `jax.grad`, `jax.jacobian`, optax and the
worked examples of the notes. Gradient comparisons run in float64 and must agree to ~1e-12."""

import functools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax.errors import ConfigError
from dl_jax.from_scratch import backprop, neuron, softmax
from dl_jax.nn import activations
from dl_jax.optim import make_optimizer

TIGHT = {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


def assert_trees_close(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, **TIGHT), a, b)


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
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(32, 5)), rng.normal(size=32)
  params = {"w": rng.normal(size=5), "b": np.float64(3.0)}

  @jax.jit
  def check(p, x, y):
    grads = neuron.squared_loss_grads(p, x, y)
    stepped = neuron.gd_step(p, grads, 0.1)
    return (grads, jax.grad(neuron.squared_loss)(p, x, y), neuron.squared_loss(p, x, y),
            neuron.squared_loss(stepped, x, y))

  hand, expected, before, after = check(params, x, y)
  assert_trees_close(hand, expected)
  assert after < before  # a gradient-descent step with the hand gradients lowers the loss


# Logistic regression, section 2.3.1.


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e4])
def test_logistic_regression_gradients_match_autodiff(x64, scale):
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(64, 3)), (np.arange(64) % 2).astype(np.float64)
  params = {"w": scale * rng.normal(size=3), "b": np.float64(0.5 * scale)}
  z, loss, grads, expected, library = jax.jit(lambda p, x, y: (
      neuron.logistic_logits(p, x), neuron.binary_cross_entropy(p, x, y),
      neuron.binary_cross_entropy_grads(p, x, y), jax.grad(neuron.binary_cross_entropy)(p, x, y),
      optax.sigmoid_binary_cross_entropy(neuron.logistic_logits(p, x), y).mean()))(params, x, y)
  assert np.abs(z).max() > scale / 10  # the logits really are that large
  assert np.isfinite(loss) and all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  np.testing.assert_allclose(loss, library, **TIGHT)
  assert_trees_close(grads, expected)
  if scale >= 1e3:  # negative control: eq. 2.40 taken literally overflows here
    with np.errstate(all="ignore"):
      o = 1 / (1 + np.exp(-np.asarray(z)))
      assert not np.isfinite(-(y * np.log(o) + (1 - y) * np.log(1 - o))).all()


def test_sigmoid_is_stable_and_correct(x64):
  z = np.array([-1e4, -50.0, -1.0, 0.0, 1.0, 50.0, 1e4])
  ours, library = jax.jit(lambda z: ((neuron.sigmoid(z), neuron.log_sigmoid(z)),
                                     (jax.nn.sigmoid(z), jax.nn.log_sigmoid(z))))(z)
  assert_trees_close(ours, library)


# Softmax and categorical cross-entropy, section 2.5.2.


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_softmax_cross_entropy_matches_optax_and_autodiff(x64, scale):
  rng = np.random.default_rng(2)
  v, y = scale * rng.normal(size=(16, 10)), rng.integers(0, 10, size=16)
  p, loss, hand, expected, library_p, library_loss = jax.jit(lambda v, y: (
      softmax.softmax(v), softmax.cross_entropy(v, y), softmax.cross_entropy_grad(v, y),
      jax.grad(lambda v: softmax.cross_entropy(v, y).sum())(v),
      jax.nn.softmax(v), optax.softmax_cross_entropy_with_integer_labels(v, y)))(v, y)
  np.testing.assert_allclose(p.sum(-1), 1.0, **TIGHT)
  np.testing.assert_allclose(p, library_p, **TIGHT)
  assert np.isfinite(loss).all() and np.isfinite(hand).all()
  np.testing.assert_allclose(loss, library_loss, rtol=1e-12, atol=1e-12 * scale)
  np.testing.assert_allclose(hand, expected, **TIGHT)  # softmax(v) - e_y
  if scale >= 1e4:  # negative control: -log(e^{v_y} / sum e^{v_i}) without the shift overflows
    with np.errstate(all="ignore"):
      assert not np.isfinite(-np.log(np.exp(v) / np.exp(v).sum(-1, keepdims=True))).all()


def test_cross_entropy_at_logits_1e4():
  v = np.float32([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4]])
  loss, grad = jax.jit(lambda v, y: (softmax.cross_entropy(v, y),
                                     softmax.cross_entropy_grad(v, y)))(v, np.array([0, 2]))
  np.testing.assert_array_equal(loss, [0.0, 2e4])
  np.testing.assert_array_equal(grad, [[0, 0, 0], [1, 0, -1]])


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
  params = [{"W": rng.normal(size=(m, n)) / np.sqrt(n), "b": rng.normal(size=m)}
            for n, m in zip(sizes[:-1], sizes[1:])]  # large biases, so bias bugs show
  x = 2 * rng.normal(size=(8, sizes[0]))
  if loss == "squared":
    y = rng.normal(size=(8, sizes[-1]))
  else:
    y = rng.integers(0, sizes[-1], size=8)
  return params, x, y, names, loss


def hand_grads(names, loss, explicit=True):
  return functools.partial(backprop.loss_and_grads, activations=tuple(names), loss=loss,
                           explicit=explicit)


def autodiff_grads(names, loss):
  return jax.value_and_grad(functools.partial(reference_loss, names=names, loss=loss))


@pytest.mark.parametrize("seed", range(6))
def test_mlp_backprop_matches_autodiff(x64, seed):
  params, x, y, names, loss = random_mlp(seed)
  # Jacobian matrices, the same products without them, and autodiff: compiled together.
  compare = jax.jit(lambda *args: (hand_grads(names, loss, True)(*args),
                                   hand_grads(names, loss, False)(*args),
                                   autodiff_grads(names, loss)(*args)))
  explicit, vjp, (value, expected) = compare(params, x, y)
  for hand_value, grads in (explicit, vjp):
    np.testing.assert_allclose(hand_value, value, **TIGHT)
    assert_trees_close(grads, expected)
  assert np.abs(expected[-1]["W"]).max() > 1e-3  # not zero by accident


def test_mlp_backprop_catches_a_wrong_derivative(x64, monkeypatch):
  """Negative control: one wrong closed-form derivative is caught by the comparison above."""
  params = jax.jit(backprop.init_mlp, static_argnums=1)(jax.random.PRNGKey(7), (3, 4, 2))
  rng = np.random.default_rng(7)
  x, y = rng.normal(size=(8, 3)), np.ones((8, 2))
  names = ("tanh", "linear")
  _, expected = jax.jit(autodiff_grads(names, "squared"))(params, x, y)
  monkeypatch.setitem(backprop.DERIVATIVES, "tanh", lambda z: 1 - jnp.tanh(z))  # should be tanh^2
  _, grads = jax.jit(hand_grads(names, "squared"))(params, x, y)
  assert not np.allclose(grads[0]["W"], expected[0]["W"], rtol=1e-3)
  np.testing.assert_allclose(grads[1]["W"], expected[1]["W"], **TIGHT)  # above the bug: still right


@pytest.mark.parametrize("name", sorted(backprop.DERIVATIVES))
def test_param_jacobian_is_the_block_diagonal_of_eq_2_51(x64, name):
  m, n = 4, 3
  rng = np.random.default_rng(5)
  layer, h = {"W": rng.normal(size=(m, n)), "b": rng.normal(size=m)}, rng.normal(size=n)
  phi = activations.get(name)

  @jax.jit
  def jacobians(layer, h):
    z = layer["W"] @ h + layer["b"]

    def layer_of_theta(theta):
      unpacked = backprop.unpack(theta, m, n)
      return phi(unpacked["W"] @ h + unpacked["b"])

    return ((backprop.param_jacobian(h, z, name), backprop.input_jacobian(layer, z, name)),
            (jax.jacobian(layer_of_theta)(backprop.pack(layer)),
             jax.jacobian(lambda h: phi(layer["W"] @ h + layer["b"]))(h)))

  (jac, jac_in), expected = jacobians(layer, h)
  assert jac.shape == (m, m * (n + 1))
  assert_trees_close((jac, jac_in), expected)
  blocks = np.asarray(jac).reshape(m, m, n + 1)
  assert not (blocks * (1 - np.eye(m))[:, :, None]).any()  # neurons share no weights
  # The Jacobian with respect to the input is a full matrix (the notes' question after eq. 2.52).
  assert jac_in.shape == (m, n) and (name in ("relu", "leaky_relu") or np.all(jac_in != 0))


def test_backprop_rejects_bad_configurations():
  params = [{"W": np.zeros((3, 2)), "b": np.zeros(3)}, {"W": np.zeros((1, 3)), "b": np.zeros(1)}]
  x, y = np.zeros((4, 2)), np.zeros((4, 1))
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
  t = -v / alpha and the trajectories coincide.
  """
  a = jnp.array([[3.0, 1.0], [1.0, 2.0]])  # L(theta) = 1/2 theta^T A theta - c^T theta
  c = jnp.array([1.0, -1.0])
  loss = lambda theta: 0.5 * theta @ a @ theta - c @ theta
  grad = jax.jit(jax.grad(loss))
  lr, gamma, steps = 0.05, 0.9, 40
  theta0 = jnp.array([2.0, -3.0])

  opt = make_optimizer("momentum", lr)
  update = jax.jit(lambda theta, state: opt.update(grad(theta), state, theta))
  theta, state = theta0, opt.init(theta0)
  library = []
  for _ in range(steps):
    updates, state = update(theta, state)
    theta = theta + updates
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
