"""Activations, PReLU, L1/L2 regularizers and initializers of section 2.5 (dl_jax.nn)."""

import functools
import sys

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from dl_jax.errors import ConfigError
from dl_jax.from_scratch import backprop
from dl_jax.nn import activations, initializers, regularizers
from tests.conftest import run


# Activations.


def test_every_activation_has_a_closed_form_derivative():
  assert set(activations.ACTIVATIONS) == set(backprop.DERIVATIVES)
  assert {"relu", "leaky_relu", "elu", "selu", "softplus", "sigmoid", "tanh"} <= set(
      activations.ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_derivative_matches_its_closed_form(name):
  z = np.float32(4 * np.random.default_rng(0).normal(size=512))
  autodiff, closed_form = jax.jit(lambda z: (jax.vmap(jax.grad(activations.get(name)))(z),
                                             backprop.DERIVATIVES[name](z)))(z)
  np.testing.assert_allclose(autodiff, closed_form, rtol=1e-5, atol=1e-6)


def test_activation_values():
  z = np.float32([-2.0, -0.5, 0.5, 2.0])
  get = lambda name: jax.jit(activations.get(name))
  np.testing.assert_allclose(get("relu")(z), [0, 0, 0.5, 2])  # eq. 2.64
  np.testing.assert_allclose(get("leaky_relu")(z), [-0.02, -0.005, 0.5, 2], rtol=1e-6)
  np.testing.assert_allclose(get("elu")(z), [np.expm1(-2), np.expm1(-0.5), 0.5, 2], rtol=1e-6)
  np.testing.assert_allclose(get("selu")(z), 1.0507009873554805 * np.where(
      z > 0, z, 1.6732632423543772 * np.expm1(z)), rtol=1e-6)
  np.testing.assert_allclose(get("softplus")(z), np.log1p(np.exp(z)), rtol=1e-6)
  np.testing.assert_allclose(get("sigmoid")(z), 1 / (1 + np.exp(-z)), rtol=1e-6)
  np.testing.assert_allclose(get("tanh")(z), np.tanh(z), rtol=1e-6)
  np.testing.assert_allclose(get("linear")(z), z)


def test_unknown_activation():
  with pytest.raises(ConfigError, match="unknown activation 'swish'; accepted: .*relu.*tanh"):
    activations.get("swish")


@pytest.mark.parametrize("per_feature", [True, False])
def test_prelu_alpha_gets_its_gradient(per_feature):
  x = np.float32([[-2.0, 1.0, -0.5], [3.0, -1.0, -4.0]])
  model = activations.PReLU(per_feature=per_feature)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), x)["params"]
  assert params["alpha"].shape == ((3,) if per_feature else ())
  np.testing.assert_array_equal(params["alpha"], 0.25)
  out, grad = jax.jit(lambda p: (model.apply({"params": p}, x), jax.grad(
      lambda p: model.apply({"params": p}, x).sum())(p)["alpha"]))(params)
  np.testing.assert_allclose(out, np.where(x > 0, x, 0.25 * x))
  # d/dalpha sum(PReLU(x)) = sum of the negative inputs (per feature, or all together).
  negative = np.where(x > 0, 0.0, x)
  np.testing.assert_allclose(grad, negative.sum(0) if per_feature else negative.sum())


def test_prelu_learns_alpha():
  true_alpha = np.float32([0.05, 0.5, -0.3])
  x = np.float32(np.random.default_rng(1).normal(size=(256, 3)))
  target = np.where(x > 0, x, true_alpha * x)
  model = activations.PReLU()
  params = {"alpha": np.full(3, 0.25, np.float32)}
  opt = optax.sgd(0.5)

  @jax.jit
  def train(params):
    def step(carry, _):
      params, state = carry
      grads = jax.grad(lambda p: ((model.apply({"params": p}, x) - target) ** 2).mean())(params)
      updates, state = opt.update(grads, state)
      return (optax.apply_updates(params, updates), state), None
    return jax.lax.scan(step, (params, opt.init(params)), length=200)[0][0]

  np.testing.assert_allclose(train(params)["alpha"], true_alpha, atol=1e-4)


# Regularizers.


class TwoLayers(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(5)(x))
    h = regularizers.ActivityRegularization(l1=0.3, l2=0.7)(h)
    return nn.Dense(2)(h)


@functools.cache
def two_layer_params():
  model = TwoLayers()
  x = np.float32(np.random.default_rng(2).normal(size=(4, 3)))
  params = jax.device_get(jax.jit(model.init)(jax.random.PRNGKey(3), x)["params"])
  # Large biases, so that counting them would show.
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: p + 100.0 if path[-1].key == "bias" else p, params)
  return model, x, params


def test_weight_penalties_are_sums_over_kernels_only():
  _, _, params = two_layer_params()
  k0, k1 = params["Dense_0"]["kernel"], params["Dense_1"]["kernel"]
  l1 = float(np.abs(np.asarray(k0)).sum() + np.abs(np.asarray(k1)).sum())
  l2 = float((np.asarray(k0, np.float64) ** 2).sum() + (np.asarray(k1, np.float64) ** 2).sum())
  penalties = jax.jit(lambda p: (regularizers.l1_penalty(p), regularizers.l2_penalty(p),
                                 regularizers.l1_penalty(p, include=lambda path, leaf: True)))
  kernels_l1, kernels_l2, everything = penalties(params)
  np.testing.assert_allclose(kernels_l1, l1, rtol=1e-6)
  np.testing.assert_allclose(kernels_l2, l2, rtol=1e-6)
  np.testing.assert_allclose(everything, l1 + 100.0 * 7, rtol=1e-4)  # 7 biases of 100
  # The hand-written MLP names its weights "W".
  rng = np.random.default_rng(4)
  mlp = [{"W": rng.normal(size=(4, 3)), "b": rng.normal(size=4)},
         {"W": rng.normal(size=(2, 4)), "b": rng.normal(size=2)}]
  np.testing.assert_allclose(
      jax.jit(lambda p: regularizers.l2_penalty(p, include=lambda path, leaf: path.endswith("W")))(
          mlp), sum((layer["W"] ** 2).sum() for layer in mlp), rtol=1e-6)


def test_l2_gradient_is_twice_the_kernel_and_zero_on_biases():
  _, _, params = two_layer_params()
  grads = jax.jit(jax.grad(regularizers.l2_penalty))(params)
  np.testing.assert_allclose(grads["Dense_0"]["kernel"], 2 * params["Dense_0"]["kernel"])
  assert not grads["Dense_0"]["bias"].any() and not grads["Dense_1"]["bias"].any()


def test_activity_penalty_is_sown_and_differentiable():
  model, x, params = two_layer_params()
  h = np.maximum(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"], 0)
  hand = (0.3 * np.abs(h).sum() + 0.7 * (h ** 2).sum()) / x.shape[0]

  def penalty(p):
    return regularizers.sown_penalty(
        model.apply({"params": p}, x, mutable=[regularizers.LOSSES])[1])

  @jax.jit
  def check(p):
    out, mutated = model.apply({"params": p}, x, mutable=[regularizers.LOSSES])
    plain = model.apply({"params": p}, x)  # without the mutable collection: nothing is sown
    return (out, plain, regularizers.sown_penalty(mutated),
            regularizers.activity_penalty(h, 0.3, 0.7), jax.grad(penalty)(p))

  out, plain, sown, direct, grads = check(params)
  np.testing.assert_allclose(sown, hand, rtol=1e-6)
  np.testing.assert_allclose(direct, hand, rtol=1e-6)
  np.testing.assert_array_equal(plain, out)  # the layer itself is the identity
  assert np.abs(grads["Dense_0"]["kernel"]).max() > 0  # the penalty trains the layer below it
  assert not grads["Dense_1"]["kernel"].any()  # ... and not the one above


# Initializers.

FAN_IN, FAN_OUT = 4000, 250  # 10^6 weights: the sample variance is within ~0.3 % of the truth
VARIANCE = {
    "glorot_uniform": 2 / (FAN_IN + FAN_OUT),
    "glorot_normal": 2 / (FAN_IN + FAN_OUT),
    "he_uniform": 2 / FAN_IN,
    "he_normal": 2 / FAN_IN,
    "lecun_normal": 1 / FAN_IN,
}


@pytest.mark.parametrize("name", sorted(VARIANCE))
def test_initializer_variance(name):
  assert set(VARIANCE) == set(initializers.INITIALIZERS)
  w = np.asarray(initializers.get(name)(jax.random.PRNGKey(0), (FAN_IN, FAN_OUT)), np.float64)
  target = VARIANCE[name]
  # The standard error of the sample variance is below sqrt(2 / 10^6) ~ 0.14 % of it, and the
  # key is fixed: 3 % leaves 20 standard errors, while the formulas differ by 15 % or more.
  np.testing.assert_allclose(w.var(), target, rtol=0.03)
  assert abs(w.mean()) < 5 * np.sqrt(target / w.size)
  # Support: U(-a, a) with a = sqrt(3 var); the truncated normal stops at 2 untruncated std.
  bound = np.sqrt(3 * target) if name.endswith("uniform") else 2 * np.sqrt(target) / 0.8796
  assert np.abs(w).max() <= bound * (1 + 1e-6)


def test_unknown_initializer():
  with pytest.raises(ConfigError, match="unknown initializer 'orthogonal'; accepted: glorot"):
    initializers.get("orthogonal")


def test_activations_plot_writes_png(tmp_path):
  result = run([sys.executable, "-m", "experiments.activations_plot", f"--workdir={tmp_path}"],
               timeout=120)
  assert result.returncode == 0, result.stderr
  png = tmp_path / "activations.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
