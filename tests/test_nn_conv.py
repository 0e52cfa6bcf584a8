"""`dl_jax.nn.conv.Conv` and `dl_jax.nn.pool.max_pool` against flax (sections 5.2.2-5.2.7).

Every impl must give flax's forward pass and gradients (w.r.t. the input and all parameters,
jitted) to 1e-5, relative to the largest entry of each compared array.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax.nn import conv as conv_lib
from dl_jax.nn.conv import Conv, conv2d
from dl_jax.nn.pool import max_pool

CONV_IMPLS = ("xla", "im2col", "custom_vjp", "folded")
TOL = 1e-5


def assert_close(actual, expected, what=""):
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape, what
  scale = max(float(np.max(np.abs(expected))), 1e-6)
  np.testing.assert_allclose(actual, expected, rtol=TOL, atol=TOL * scale, err_msg=what)


def _forward_and_grads(module, params, x):
  """Jitted output, and gradients of a nonlinear scalar of it w.r.t. (params, x)."""
  def loss(p, x):
    return jnp.sum(jnp.sin(module.apply(p, x)))
  return jax.jit(module.apply)(params, x), jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)


def _compare(flax_module, our_module, x, seed=0, reference=None):
  """`reference`: flax's (params, forward and gradients), if already computed."""
  params, (y_ref, (gp_ref, gx_ref)) = reference or _reference(flax_module, x, seed)
  ours = our_module.init(jax.random.key(seed), x)
  assert jax.tree.structure(ours) == jax.tree.structure(params)
  assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, params)
  y, (gp, gx) = _forward_and_grads(our_module, params, x)
  assert_close(y, y_ref, "forward")
  assert_close(gx, gx_ref, "input gradient")
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(gp), jax.tree.leaves(gp_ref)):
    assert_close(got, want, f"gradient {jax.tree_util.keystr(path)}")


def _reference(flax_module, x, seed=0):
  params = flax_module.init(jax.random.key(seed), x)
  return params, _forward_and_grads(flax_module, params, x)


# (batch, height, width, in_channels, features, kernel, strides, padding)
CASES = [
    (4, 28, 28, 1, 6, (5, 5), 1, "VALID"),      # 5.3.1, layer 1
    (4, 24, 24, 6, 12, (5, 5), 1, "VALID"),     # 5.3.1, layer 2
    (3, 10, 10, 12, 12, (5, 5), 1, "VALID"),    # 5.3.1, layer 3
    (2, 9, 11, 3, 5, (3, 3), 1, "SAME"),
    (2, 10, 7, 1, 4, (3, 2), 2, "SAME"),
    (5, 12, 13, 2, 3, (4, 3), (2, 3), "VALID"),
    (3, 8, 8, 4, 7, (1, 1), 1, "VALID"),
    (2, 7, 9, 3, 2, (2, 4), (3, 1), "SAME"),
    (2, 6, 6, 2, 3, (3, 3), 1, ((1, 2), (0, 1))),
    (130, 6, 6, 2, 3, (3, 3), 1, "VALID"),      # batch not a multiple of the gradient chunk
    (3, 9, 8, 20, 24, (3, 3), 1, "SAME"),       # above 16 features: the dilated-width forms
    (2, 9, 9, 24, 17, (1, 1), 2, "VALID"),      # a strided 1x1 projection (ResNet shortcut)
]


@pytest.mark.parametrize("impl", CONV_IMPLS)
@pytest.mark.parametrize("case", CASES,
                         ids=lambda c: "x".join(map(str, c[:5])) + f"-{c[5]}-{c[6]}-{c[7]}")
def test_conv_matches_flax(impl, case):
  n, h, w, cin, features, kernel, strides, padding = case
  x, reference = _case_reference(case)
  _compare(None, Conv(features, kernel, strides=strides, padding=padding, impl=impl), x,
           reference=reference)


@functools.lru_cache(maxsize=None)
def _case_reference(case):
  """The input of a case and flax's results on it, computed once for all impls."""
  n, h, w, cin, features, kernel, strides, padding = case
  x = jax.random.normal(jax.random.key(1), (n, h, w, cin))
  return x, _reference(nn.Conv(features, kernel, strides=strides, padding=padding), x)


@pytest.mark.parametrize("impl,trials", [("im2col", 4), ("custom_vjp", 10), ("folded", 10)])
def test_conv_random_shapes(impl, trials):
  """Random shapes, kernel sizes, strides, paddings and biases (im2col compiles slowly)."""
  for trial in range(trials):
    features, kernel, args, x, reference = _random_case(trial)
    _compare(None, Conv(features, kernel, impl=impl, **args), x, seed=trial, reference=reference)


@functools.lru_cache(maxsize=None)
def _random_case(trial: int):
  """Trial `trial` of the random cases (the same for every impl) and flax's results on it."""
  rng = np.random.default_rng(0)
  for _ in range(trial + 1):
    kernel = tuple(int(k) for k in rng.integers(1, 5, 2))
    strides = tuple(int(s) for s in rng.integers(1, 4, 2))
    h, w = (int(d) for d in rng.integers(5, 14, 2))
    n, cin, features = int(rng.integers(1, 20)), int(rng.integers(1, 7)), int(rng.integers(1, 9))
  args = dict(strides=strides, padding=("SAME", "VALID")[trial % 2], use_bias=bool(trial % 3))
  x = jax.random.normal(jax.random.key(trial), (n, h, w, cin))
  return features, kernel, args, x, _reference(nn.Conv(features, kernel, **args), x, seed=trial)


def test_conv_auto_on_the_mnist_cnn_layers():
  """The default impl on the three layers of section 5.3.1 (28x28x1 -> ... -> 6x6x12)."""
  for size, cin, features in ((28, 1, 6), (24, 6, 12), (10, 12, 12)):
    x = jax.random.normal(jax.random.key(size), (9, size, size, cin))
    _compare(nn.Conv(features, (5, 5), padding="VALID"), Conv(features, 5, padding="VALID"), x)


def test_folded_conv_internals():
  """The width folds of the 5.3.1 layers, and the convolution written with a dilated width
  (used above 16 features) against the plain one, padded and not."""
  layers = ((1, 6, 28), (6, 12, 24), (12, 12, 10))  # (C_in, C_out, W) of the 5x5 layers
  assert [conv_lib._fold_factor(cin, cout, w - 4) for cin, cout, w in layers] == [8, 4, 2]
  assert conv_lib._fold_factor(32, 32, 24) == conv_lib._fold_factor(1, 64, 24) == 1
  x = jax.random.normal(jax.random.key(5), (3, 7, 9, 20))
  k = jax.random.normal(jax.random.key(6), (3, 2, 20, 24))
  for pad_w in ((0, 0), (1, 2)):
    want = jax.lax.conv_general_dilated(x, k, (1, 1), ((0, 0), pad_w),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert_close(conv_lib._eigen_conv(x, k, pad_w), want, f"pad_w={pad_w}")
  e = jax.random.normal(jax.random.key(7), (5, 4, 3, 2))
  folded = conv_lib._fold_kernel(e, 4)
  # <fold(k), d> = <k, unfold(d)>: the kernel gradient is mapped back by the transpose.
  d = jax.random.normal(jax.random.key(8), folded.shape)
  assert_close(jnp.vdot(folded, d), jnp.vdot(e, conv_lib._unfold_kernel_grad(d, e.shape, 4)))


def test_conv_folded_bfloat16():
  """bfloat16 compute: the folded layer agrees with flax's to bfloat16 precision."""
  x = jax.random.normal(jax.random.key(9), (16, 24, 24, 6))
  ref = nn.Conv(12, (5, 5), padding="VALID", dtype=jnp.bfloat16)
  ours = Conv(12, 5, padding="VALID", dtype=jnp.bfloat16, impl="folded")
  params = ref.init(jax.random.key(0), x)
  (y_ref, (gp_ref, gx_ref)), (y, (gp, gx)) = (_forward_and_grads(m, params, x) for m in (ref, ours))
  assert y.dtype == y_ref.dtype == jnp.bfloat16 and gx.dtype == gx_ref.dtype
  for got, want in [(y, y_ref), (gx, gx_ref), *zip(jax.tree.leaves(gp), jax.tree.leaves(gp_ref))]:
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    np.testing.assert_allclose(got, want, atol=3e-2 * np.max(np.abs(want)), rtol=0)


def test_conv_kernel_gradient_large_batch_uses_loop():
  """Batches of more than `_MAX_UNROLLED_CHUNKS` chunks take the `lax.scan` path."""
  n = conv_lib._CHUNK * (conv_lib._MAX_UNROLLED_CHUNKS + 1) + 3
  x = jax.random.normal(jax.random.key(2), (n, 6, 6, 2))
  _compare(nn.Conv(3, (3, 3), padding="VALID"),
           Conv(3, (3, 3), padding="VALID", impl="custom_vjp"), x)


def test_conv_unbatched_and_extra_batch_axes():
  x = jax.random.normal(jax.random.key(3), (2, 3, 9, 9, 2))
  for shape in ((9, 9, 2), (2, 3, 9, 9, 2)):
    inputs = x.reshape(shape) if len(shape) == 5 else x[0, 0]
    ref = nn.Conv(4, (3, 3), padding="SAME")
    params = ref.init(jax.random.key(0), inputs)
    ours = Conv(4, (3, 3), impl="custom_vjp")
    assert_close(ours.apply(params, inputs), ref.apply(params, inputs))


def test_conv_defaults_match_flax():
  """Same default padding ('SAME'), initializers and parameter tree as flax's nn.Conv."""
  x = jnp.ones((2, 8, 8, 3))
  ours = Conv(5, (3, 3)).init(jax.random.key(0), x)
  ref = nn.Conv(5, (3, 3)).init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, ours) == {"params": {"kernel": (3, 3, 3, 5), "bias": (5,)}}
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
    np.testing.assert_array_equal(a, b)
  assert Conv(5, 3).init(jax.random.key(0), x)["params"]["kernel"].shape == (3, 3, 3, 5)
  assert "bias" not in Conv(5, (3, 3), use_bias=False).init(jax.random.key(0), x)["params"]


def test_conv_impl_validation():
  x = jnp.ones((1, 6, 6, 1))
  with pytest.raises(ValueError) as err:
    Conv(2, (3, 3), impl="cudnn").init(jax.random.key(0), x)
  message = str(err.value)
  assert "'cudnn'" in message
  for accepted in conv_lib.IMPLS:
    assert repr(accepted) in message
  with pytest.raises(ValueError, match="'winograd'"):
    conv2d(x, jnp.ones((3, 3, 1, 2)), impl="winograd")
  with pytest.raises(ValueError, match="padding"):
    conv2d(x, jnp.ones((3, 3, 1, 2)), padding="FULL", impl="custom_vjp")


def _auto_choice(size: int, kernel_hw=(3, 3), strides=1, cin=20) -> str:
  """What conv2d(impl='auto') traces to: 'hand-written' gradients, 'xla' or 'im2col'."""
  kernel = jnp.ones((*kernel_hw, cin, 20))
  jaxpr = str(jax.make_jaxpr(lambda x: conv2d(x, kernel, strides, "SAME"))(
      jnp.ones((2, size, size, cin))))
  if "custom_vjp" in jaxpr:
    return "hand-written"
  return "xla" if "conv_general_dilated" in jaxpr else "im2col"


def test_auto_rule_on_the_cpu():
  """On the CPU 'auto' computes 1x1 kernels, strides > 1 and inputs smaller than 5x5 as
  matmuls (im2col), 5x5 and 6x6 inputs with XLA's convolution and its derivatives, and larger
  ones (one input channel too) with the hand-written gradients."""
  assert jax.default_backend() == "cpu"
  assert [_auto_choice(size) for size in (4, 5, 6, 7, 28)] == [
      "im2col", "xla", "xla", "hand-written", "hand-written"]
  assert _auto_choice(28, kernel_hw=(1, 1)) == "im2col"
  assert _auto_choice(28, strides=2) == "im2col"
  assert _auto_choice(28, cin=1) == "hand-written"
  assert "custom_vjp" in str(jax.make_jaxpr(  # the named impl is always taken
      lambda x: conv2d(x, jnp.ones((3, 3, 20, 20)), padding="SAME", impl="custom_vjp"))(
          jnp.ones((2, 4, 4, 20))))


def test_auto_picks_per_backend(monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  assert conv_lib.resolve_impl("auto") == "folded"
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert conv_lib.resolve_impl("auto") == "xla"
  assert conv_lib.resolve_impl("im2col") == "im2col"


# --- max pooling ---------------------------------------------------------------------------

POOL_CASES = [((3, 20, 20, 12), (2, 2)), ((2, 6, 6, 12), (2, 2)), ((2, 9, 7, 3), (2, 2)),
              ((2, 9, 9, 1), (3, 3)), ((2, 6, 8, 2), (2, 4))]


def _pool_forward_and_grad(x, window, impl):
  f = lambda x: max_pool(x, window, window, impl=impl)
  loss = lambda x: jnp.sum(jnp.cos(f(x)) * jnp.arange(1, f(x).size + 1).reshape(f(x).shape))
  return jax.jit(f)(x), jax.jit(jax.grad(loss))(x)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("shape,window", POOL_CASES)
def test_max_pool_matches_flax(shape, window, ties):
  """Exactly flax's values and gradients; with ties, the first maximum of a window gets it all."""
  key = jax.random.key(4)
  x = (jax.random.randint(key, shape, 0, 3).astype(jnp.float32) if ties
       else jax.random.normal(key, shape))
  y_ref, g_ref = _pool_forward_and_grad(x, window, "xla")
  for impl in ("slices", "reshape", "auto"):
    y, g = _pool_forward_and_grad(x, window, impl)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_array_equal(y, nn.max_pool(x, window, strides=window))


# Overlapping windows (GoogLeNet's 3x3/1 and ceil-mode 3x3/2, AlexNet's 3x3/2), padding of
# every kind, odd sizes, a non-square window.
OVERLAP_CASES = [((2, 9, 9, 3), (3, 3), (1, 1), [(1, 1), (1, 1)]),
                 ((2, 9, 9, 3), (3, 3), (2, 2), "VALID"),
                 ((2, 10, 9, 3), (3, 3), (2, 2), [(0, 1), (0, 2)]),
                 ((2, 7, 8, 2), (3, 3), (2, 2), "SAME"),
                 ((1, 5, 6, 2), (2, 3), (1, 2), "SAME")]


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("shape,window,strides,padding", OVERLAP_CASES)
def test_max_pool_shifts_match_flax_on_overlapping_windows(shape, window, strides, padding, ties):
  """'shifts' (and 'auto' on CPU): flax's values exactly, its gradients up to the order in which
  an input's contributions from several windows are added."""
  key = jax.random.key(5)
  x = (jax.random.randint(key, shape, 0, 3).astype(jnp.float32) if ties
       else jax.random.normal(key, shape))

  def forward_and_grad(impl):
    f = lambda x: max_pool(x, window, strides, padding, impl=impl)
    weights = jnp.arange(1.0, f(x).size + 1).reshape(f(x).shape) / f(x).size
    return jax.jit(f)(x), jax.jit(jax.grad(lambda x: jnp.sum(jnp.cos(f(x)) * weights)))(x)

  y_ref, g_ref = forward_and_grad("xla")
  for impl in ("shifts", "auto"):
    y, g = forward_and_grad(impl)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("impl", ["slices", "reshape", "shifts"])
def test_max_pool_tie_goes_to_first_in_window(impl):
  x = jnp.array([[1., 3.], [3., 0.]]).reshape(1, 2, 2, 1)
  grad = jax.grad(lambda x: max_pool(x, (2, 2), (2, 2), impl=impl).sum())(x)
  np.testing.assert_array_equal(grad.reshape(2, 2), [[0., 1.], [0., 0.]])


def test_max_pool_impl_validation():
  x = jnp.ones((1, 6, 6, 1))
  with pytest.raises(ValueError) as err:
    max_pool(x, (2, 2), (2, 2), impl="reshape2")
  assert "'reshape2'" in str(err.value) and "'slices'" in str(err.value)
  for impl in ("slices", "reshape"):
    with pytest.raises(ValueError, match="strides equal to the window"):
      max_pool(x, (3, 3), (2, 2), impl=impl)
  with pytest.raises(ValueError, match="'shifts' needs an NHWC input"):
    max_pool(jnp.ones((6, 6, 1)), (3, 3), (1, 1), impl="shifts")
  # 'auto' takes the shifted views where the slices cannot do it.
  np.testing.assert_array_equal(max_pool(x, (3, 3), (2, 2), padding="SAME"),
                                nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME"))
