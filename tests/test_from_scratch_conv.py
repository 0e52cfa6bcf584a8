"""Convolution and pooling from first principles (section 5.2) against lax / flax / jax.grad."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dl_jax.errors import ConfigError
from dl_jax.from_scratch import conv as fs
from dl_jax.from_scratch import pool as fp

SPATIAL = "DHW"


def _err(a, b) -> float:
  """Max absolute error relative to max(1, max |b|)."""
  b = np.asarray(b)
  return float(np.abs(np.asarray(a) - b).max() / max(1.0, np.abs(b).max()))


def _lax_correlate(x, kernel, strides, padding, channels):
  """The same correlation with `lax.conv_general_dilated` ('circular': wrap-padded first)."""
  n = kernel.ndim - 2
  sp = SPATIAL[-n:]
  if channels == "last":
    dn = (f"N{sp}C", f"{sp}IO", f"N{sp}C")
    in_shape = x.shape[1:-1]
    kernel_shape = kernel.shape[:-2]
  else:
    dn = (f"NC{sp}", f"OI{sp}", f"NC{sp}")
    in_shape = x.shape[2:]
    kernel_shape = kernel.shape[2:]
  strides = (strides,) * n if isinstance(strides, int) else strides
  pads = fs.explicit_padding(padding, in_shape, kernel_shape, strides)
  if padding == "circular":
    widths = [(0, 0), *pads, (0, 0)] if channels == "last" else [(0, 0), (0, 0), *pads]
    x, pads = jnp.pad(x, widths, mode="wrap"), "VALID"
  return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=dn)


def _random_cases(num: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  for _ in range(num):
    n = int(rng.integers(1, 4))
    paddings = ["valid", "same", "circular", int(rng.integers(0, 3))]
    paddings += ["causal"] if n == 1 else []
    padding = paddings[int(rng.integers(len(paddings)))]
    spatial = tuple(int(v) for v in rng.integers(4, 9 if n < 3 else 7, n))
    kernel_shape = tuple(int(v) for v in rng.integers(1, 4, n))
    strides = tuple(int(v) for v in rng.integers(1, 3, n))
    c_in, c_out = (int(v) for v in rng.integers(1, 4, 2))
    channels = ("last", "first")[int(rng.integers(2))]
    x = rng.normal(size=(2, *spatial, c_in)).astype(np.float32)
    kernel = rng.normal(size=(*kernel_shape, c_in, c_out)).astype(np.float32)
    if channels == "first":
      x = np.moveaxis(x, -1, 1)
      kernel = np.moveaxis(kernel, (-1, -2), (0, 1))
    yield jnp.asarray(x), jnp.asarray(kernel), strides, padding, channels


def test_correlate_and_convolve_match_lax_on_random_cases():
  worst = 0.0
  for x, kernel, strides, padding, channels in _random_cases(20):
    axes = tuple(range(kernel.ndim - 2)) if channels == "last" else tuple(range(2, kernel.ndim))

    @jax.jit
    def both(x, k, s=strides, p=padding, c=channels, axes=axes):
      ours = (fs.correlate(x, k, s, p, channels=c), fs.convolve(x, k, s, p, channels=c))
      # Eq. 5.1: true convolution is the correlation with the flipped kernel.
      ref = (_lax_correlate(x, k, s, p, c), _lax_correlate(x, jnp.flip(k, axes), s, p, c))
      return ours, ref

    ours, ref = both(x, kernel)
    for a, b in zip(ours, ref):
      assert a.shape == b.shape, (strides, padding, channels)
      worst = max(worst, _err(a, b))
  assert worst < 1e-5


def test_convolve_is_eq_5_1_in_1d():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=7), rng.normal(size=3)
  full = fs.convolve(jnp.asarray(a[None, :, None], jnp.float32),
                     jnp.asarray(b[:, None, None], jnp.float32), padding=len(b) - 1)
  np.testing.assert_allclose(np.asarray(full)[0, :, 0], np.convolve(a, b), atol=1e-5)


@pytest.mark.parametrize("padding,strides", [("SAME", 1), ("VALID", 2), ("CIRCULAR", 1),
                                             ("SAME", 2)])
def test_correlate_matches_flax_conv_2d(padding, strides):
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(3, 9, 8, 2)), jnp.float32)
  layer = nn.Conv(4, (3, 2), strides=strides, padding=padding, use_bias=False)
  params = layer.init(jax.random.PRNGKey(0), x)
  ours = fs.correlate(x, params["params"]["kernel"], strides, padding.lower())
  assert _err(ours, layer.apply(params, x)) < 1e-5


def test_causal_matches_flax_and_sees_no_future():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(2, 10, 2)), jnp.float32)
  layer = nn.Conv(3, (4,), padding="CAUSAL", use_bias=False)
  params = layer.init(jax.random.PRNGKey(0), x)
  y = fs.correlate(x, params["params"]["kernel"], 1, "causal")
  assert _err(y, layer.apply(params, x)) < 1e-5
  y_changed = fs.correlate(x.at[:, 6:].set(5.0), params["params"]["kernel"], 1, "causal")
  np.testing.assert_array_equal(y[:, :6], y_changed[:, :6])


def _grads(x, kernel, strides, padding, channels, r, impl):
  def loss(x, k):
    if impl == "lax":
      axes = tuple(range(k.ndim - 2)) if channels == "last" else tuple(range(2, k.ndim))
      y = _lax_correlate(x, jnp.flip(k, axes), strides, padding, channels)
    else:
      y = fs.convolve(x, k, strides, padding, channels=channels, impl=impl)
    return (y * r).sum()
  return jax.jit(jax.grad(loss, (0, 1)))(x, kernel)


def test_custom_vjp_equals_jax_grad_on_random_cases():
  """The hand-written backward pass vs jax.grad of lax's convolution (20 cases) and of the
  plain tap sum (the first 6 cases: its autodiff graph is slow to compile)."""
  worst = 0.0
  for i, case in enumerate(_random_cases(20, seed=4)):
    x, kernel, strides, padding, channels = case
    out_shape = fs.convolve(x, kernel, strides, padding, channels=channels).shape
    r = jnp.asarray(np.random.default_rng(i).normal(size=out_shape), jnp.float32)
    ours = _grads(*case, r, "custom_vjp")
    refs = [_grads(*case, r, "lax")] + ([_grads(*case, r, "autodiff")] if i < 6 else [])
    for ref in refs:
      worst = max(worst, *(_err(a, b) for a, b in zip(ours, ref)))
  assert worst < 1e-5


def test_backward_pass_helpers_are_eq_5_13_and_5_14_with_strides():
  """kernel_grad / input_grad against the sums of eq. 5.13-5.14 written as numpy loops."""
  rng = np.random.default_rng(5)
  x = rng.normal(size=(1, 9, 1)).astype(np.float32)
  k = rng.normal(size=(3, 1, 1)).astype(np.float32)
  s = 2
  y = fs.correlate(jnp.asarray(x), jnp.asarray(k), s)
  g = rng.normal(size=y.shape).astype(np.float32)
  dk = np.array([sum(g[0, i, 0] * x[0, s * i + j, 0] for i in range(y.shape[1]))
                 for j in range(3)])
  dx = np.array([sum(g[0, i, 0] * k[l - s * i, 0, 0] for i in range(y.shape[1])
                     if 0 <= l - s * i < 3) for l in range(9)])
  np.testing.assert_allclose(np.asarray(fs.kernel_grad(x, g, (3,), (s,)))[:, 0, 0], dk, atol=1e-5)
  np.testing.assert_allclose(np.asarray(fs.input_grad(g, k, (9,), (s,)))[0, :, 0], dx, atol=1e-5)


def test_worked_question_of_section_5_2_3():
  """x = (x0, x1, x2), k = (k0, k1) = (w1, w0), 'same' padding, b = 0, phi = identity.

  'same' pads one zero after x (P_lo = 0, P_hi = 1), so o_i = y_{i+1} of eq. 5.7:
    o0 = k0 x1 + k1 x0 = w0 x0 + w1 x1
    o1 = k0 x2 + k1 x1 = w0 x1 + w1 x2
    o2 =         k1 x2 = w0 x2
  and with g_i = dL/do_i, eq. 5.13 and 5.14 give
    dL/dw0 = dL/dk1 = g0 x0 + g1 x1 + g2 x2,   dL/dw1 = dL/dk0 = g0 x1 + g1 x2,
    dL/dx0 = g0 w0,   dL/dx1 = g0 w1 + g1 w0,   dL/dx2 = g1 w1 + g2 w0.
  """
  x0, x1, x2, w0, w1 = 0.3, -1.2, 2.0, 0.7, -0.4
  g0, g1, g2 = 1.5, -0.5, 2.5
  x = jnp.array([x0, x1, x2], jnp.float32)[None, :, None]
  k = jnp.array([w1, w0], jnp.float32)[:, None, None]  # (k0, k1)
  g = jnp.array([g0, g1, g2], jnp.float32)[None, :, None]
  o, vjp = jax.vjp(lambda x, k: fs.convolve(x, k, padding="same"), x, k)
  np.testing.assert_allclose(o.ravel(), [w0 * x0 + w1 * x1, w0 * x1 + w1 * x2, w0 * x2],
                             rtol=1e-6)
  dx, dk = vjp(g)
  np.testing.assert_allclose(dk.ravel(), [g0 * x1 + g1 * x2,                 # dL/dk0 = dL/dw1
                                          g0 * x0 + g1 * x1 + g2 * x2],      # dL/dk1 = dL/dw0
                             rtol=1e-6)
  np.testing.assert_allclose(dx.ravel(), [g0 * w0, g0 * w1 + g1 * w0, g1 * w1 + g2 * w0],
                             rtol=1e-6)


def test_strided_convolution_is_subsampled_convolution():
  rng = np.random.default_rng(6)
  x = jnp.asarray(rng.normal(size=(2, 11, 10, 3)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 3, 3, 2)), jnp.float32)
  assert _err(fs.correlate(x, k, (2, 3)), fs.subsample(fs.correlate(x, k, 1), (2, 3))) < 1e-6


@pytest.mark.parametrize("w1,f,p,s", [(28, 5, 0, 1), (24, 5, 0, 1), (10, 5, 0, 1), (32, 5, 2, 1),
                                      (9, 3, 1, 2), (12, 4, 0, 2)])
def test_output_size_matches_real_shapes(w1, f, p, s):
  w2 = fs.output_size(w1, f, p, s)
  x = jnp.zeros((1, w1, w1, 1))
  k = jnp.zeros((f, f, 1, 1))
  assert fs.correlate(x, k, s, p).shape[1:3] == (w2, w2)
  assert lax.conv_general_dilated(x, k, (s, s), [(p, p)] * 2,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC")).shape[1:3] == (w2, w2)


def test_output_size_rejects_non_integers_naming_the_values():
  with pytest.raises(ConfigError, match=r"W1=10, F=3, P=0, S=2"):
    fs.output_size(10, 3, 0, 2)


def test_bad_arguments_raise_config_errors():
  x, k = jnp.zeros((1, 5, 1)), jnp.zeros((2, 1, 1))
  with pytest.raises(ConfigError, match="unknown padding 'full'"):
    fs.correlate(x, k, padding="full")
  with pytest.raises(ConfigError, match="'causal' is for 1-D"):
    fs.correlate(jnp.zeros((1, 5, 5, 1)), jnp.zeros((2, 2, 1, 1)), padding="causal")
  with pytest.raises(ConfigError, match="channels"):
    fs.correlate(jnp.zeros((1, 5, 2)), k)


@pytest.mark.parametrize("kind", fp.KINDS)
@pytest.mark.parametrize("n,window,strides", [(1, 3, 2), (2, (2, 2), None), (2, (3, 2), (1, 2)),
                                              (3, 2, 1)])
def test_pool_and_its_vjp_match_reference(kind, n, window, strides):
  rng = np.random.default_rng(7)
  x = jnp.asarray(rng.normal(size=(2, *([6] * n), 3)), jnp.float32)  # ties have probability 0
  ref = fp.reference_pool(x, window, strides, kind)
  assert _err(fp.pool(x, window, strides, kind), ref) < 1e-6
  r = jnp.asarray(rng.normal(size=ref.shape), jnp.float32)
  ours = jax.grad(lambda x: (fp.pool(x, window, strides, kind) * r).sum())(x)
  theirs = jax.grad(lambda x: (fp.reference_pool(x, window, strides, kind) * r).sum())(x)
  assert _err(ours, theirs) < 1e-6


def test_pool_derivatives_are_eq_5_18_and_5_20():
  x = jnp.array([1.0, 4.0, 2.0, -3.0, 0.5, 0.25])[None, :, None]
  np.testing.assert_array_equal(jax.grad(lambda x: fp.pool(x, 3, kind="max").sum())(x).ravel(),
                                [0, 1, 0, 0, 1, 0])
  np.testing.assert_array_equal(jax.grad(lambda x: fp.pool(x, 3, kind="min").sum())(x).ravel(),
                                [1, 0, 0, 1, 0, 0])
  np.testing.assert_allclose(jax.grad(lambda x: fp.pool(x, 3, kind="avg").sum())(x).ravel(),
                             [1 / 3] * 6)


def test_max_pool_ties_follow_footnote_6():
  """At a tie only one-sided derivatives exist: 1 from the right, 0 from the left, per index.

  The backward pass gives the gradient to the first tied index, as `jax.grad` of lax does.
  """
  x = jnp.array([2.0, 2.0, 1.0, 3.0, 3.0, 3.0])[None, :, None]

  def f(x):
    return fp.pool(x, 3, kind="max").sum()

  grad = jax.grad(f)(x).ravel()
  np.testing.assert_array_equal(grad, [1, 0, 0, 1, 0, 0])
  np.testing.assert_array_equal(grad, jax.grad(lambda x: fp.reference_pool(x, 3).sum())(x).ravel())
  eps = 1e-3
  for i in (0, 1, 3, 4, 5):
    right = (f(x.at[0, i, 0].add(eps)) - f(x)) / eps
    left = (f(x) - f(x.at[0, i, 0].add(-eps))) / eps
    assert abs(float(right) - 1) < 1e-2 and abs(float(left)) < 1e-2


def test_pool_channels_first_and_jit():
  rng = np.random.default_rng(8)
  x = jnp.asarray(rng.normal(size=(2, 3, 6, 6)), jnp.float32)
  y = jax.jit(lambda x: fp.pool(x, 2, kind="max", channels="first"))(x)
  np.testing.assert_array_equal(y, jnp.moveaxis(fp.pool(jnp.moveaxis(x, 1, -1), 2), -1, 1))
