"""PixelCNN and the gated PixelCNN (`dl_jax.models.pixelcnn`, `dl_jax.tasks.pixelcnn`): the masks
against the paper's figure, the masked convolution against `flax.linen.Conv` with the masked
kernel transplanted; the autoregressive property as a structural test (the Jacobian of the logit
at pixel i with respect to the input is zero at every pixel >= i), with its negative controls
(no mask; mask B on the first layer, so that pixel i sees itself); the blind spot of the plain
stack and its absence in the gated one; the exact likelihood summing to 1 over every binary
4x4 image (and not for the negative controls); ancestral sampling (the frequencies of its
samples equal the model's probabilities, pixels are drawn in order, the given pixels kept); a
short real training and the config errors."""

import itertools
import re
import zlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax import engine
from dl_jax.errors import ConfigError
from dl_jax.models import pixelcnn, registry
from dl_jax.tasks import pixelcnn as pixelcnn_task
from experiments.configs import gated_pixelcnn_mnist, pixelcnn_mnist
from tests import in_process
from tests.conftest import experiment_cmd, run

KEY = jax.random.PRNGKey(0)


def tiny(kind: str, **overrides) -> nn.Module:
  """A small plain or gated PixelCNN (the registry's masks unless overridden)."""
  if kind == "plain":
    return pixelcnn.PixelCNN(**{"features": 8, "num_layers": 4, "output_features": 32,
                                **overrides})
  return pixelcnn.GatedPixelCNN(**{"features": 4, "num_layers": 5, "output_features": 32,
                                   **overrides})


def _bits(shape, seed) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).random(shape) < 0.5, jnp.float32)


def _init(model: nn.Module, x: jax.Array) -> dict:
  """The model's variables with random biases (the kernels as initialized): no ReLU is off for
  every input by accident (with zero biases a zero input pixel would give a zero gradient)."""
  variables = model.init(KEY, x)
  def bias(path, a):
    key = jax.random.fold_in(KEY, zlib.crc32(str(path).encode()))
    return a + 0.1 * jax.random.normal(key, a.shape) if "bias" in str(path) else a
  return jax.tree_util.tree_map_with_path(bias, variables)


def dependence(model: nn.Module, size: int, inputs: int = 4) -> np.ndarray:
  """[P, P] booleans, P = size * size pixels in raster order: entry (i, j) is True when the
  Jacobian of the logit at pixel i with respect to input pixel j is nonzero at one of `inputs`
  random images, binary and N(0, 1) in turn (the union, so that a ReLU off at one input hides
  nothing)."""
  variables = _init(model, _bits((1, size, size, 1), 0))
  logits = lambda x: model.apply(variables, x[None])[0].reshape(-1)
  jac = jax.jit(jax.jacrev(logits))
  out = np.zeros((size * size, size * size), bool)
  for seed in range(inputs):
    x = (_bits((size, size, 1), seed + 1) if seed % 2 == 0 else
         jax.random.normal(jax.random.PRNGKey(seed), (size, size, 1)))
    out |= np.asarray(jac(x)).reshape(size * size, size * size) != 0
  return out


P8 = 64
FUTURE = np.triu(np.ones((P8, P8), bool))  # (i, j) with j >= i
PAST = ~FUTURE  # j < i
SELF = np.eye(P8, dtype=bool)


# ------------------------------------------------------------------------ the masked convolution

def test_masks_are_the_papers_figure():
  want = {
      "A": [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0] * 5, [0] * 5],
      "B": [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0] * 5, [0] * 5],
      "vertical_A": [[1] * 5, [1] * 5, [0] * 5, [0] * 5, [0] * 5],
      "vertical_B": [[1] * 5, [1] * 5, [1] * 5, [0] * 5, [0] * 5],
      "none": [[1] * 5] * 5,
  }
  for mask_type, rows in want.items():
    np.testing.assert_array_equal(pixelcnn.mask((5, 5), mask_type), rows, err_msg=mask_type)
  np.testing.assert_array_equal(pixelcnn.mask((1, 3), "A"), [[1, 0, 0]])  # horizontal stack
  np.testing.assert_array_equal(pixelcnn.mask((1, 3), "B"), [[1, 1, 0]])
  np.testing.assert_array_equal(pixelcnn.mask((1, 1), "B"), [[1]])
  with pytest.raises(ValueError, match="unknown mask type 'C'"):
    pixelcnn.mask((3, 3), "C")


@pytest.mark.parametrize("kernel_size, mask_type", [
    ((7, 7), "A"), ((3, 3), "B"), ((5, 5), "vertical_A"), ((3, 3), "vertical_B"),
    ((1, 7), "A"), ((1, 3), "B"), ((1, 1), "B"), ((3, 3), "none"), ((3, 5), "A")])
def test_masked_conv_equals_flax_conv_with_the_masked_kernel(kernel_size, mask_type):
  """Output and input gradient equal `flax.linen.Conv(padding="SAME")` with kernel * mask
  (to 1e-5); the masked entries of the kernel get exactly zero gradient."""
  x = jax.random.normal(KEY, (2, 9, 8, 3))
  layer = pixelcnn.MaskedConv(5, kernel_size, mask_type)
  variables = layer.init(KEY, x)
  variables = jax.tree.map(lambda a: a + 0.3, variables)  # a nonzero bias
  m = pixelcnn.mask(kernel_size, mask_type)[:, :, None, None]
  reference = nn.Conv(5, kernel_size, padding="SAME")
  transplanted = {"params": {"kernel": variables["params"]["kernel"] * m,
                             "bias": variables["params"]["bias"]}}
  np.testing.assert_allclose(layer.apply(variables, x), reference.apply(transplanted, x),
                             rtol=1e-5, atol=1e-5)
  cotangent = jax.random.normal(jax.random.PRNGKey(1), (2, 9, 8, 5))
  grad_x = lambda f, v: jax.grad(lambda x: jnp.sum(f(v, x) * cotangent))(x)
  np.testing.assert_allclose(grad_x(layer.apply, variables),
                             grad_x(reference.apply, transplanted), rtol=1e-5, atol=1e-5)
  grad_kernel = jax.grad(lambda v: jnp.sum(layer.apply(v, x) * cotangent))(variables)
  kernel_grad = np.asarray(grad_kernel["params"]["kernel"])
  assert np.all(kernel_grad[np.broadcast_to(m == 0, kernel_grad.shape)] == 0)
  assert np.all(np.abs(kernel_grad[np.broadcast_to(m == 1, kernel_grad.shape)]).max() > 0)


def test_masked_conv_keeps_the_compute_dtype_and_float32_parameters():
  layer = pixelcnn.MaskedConv(4, (3, 3), "A", dtype=jnp.bfloat16)
  x = jnp.ones((1, 5, 5, 2))
  variables = layer.init(KEY, x)
  assert variables["params"]["kernel"].dtype == jnp.float32
  assert layer.apply(variables, x).dtype == jnp.bfloat16


# --------------------------------------------------------------- the autoregressive property

@pytest.mark.parametrize("kind", ["plain", "gated"])
def test_logit_i_depends_on_pixels_before_i_only(kind):
  """Every pixel i of an 8x8 image: the Jacobian of logit i is zero at every pixel j >= i."""
  depends = dependence(tiny(kind), 8)
  assert not np.any(depends & FUTURE), np.argwhere(depends & FUTURE)[:5]
  assert depends[1:].any(axis=1).all()  # and every logit but the first depends on something


@pytest.mark.parametrize("kind", ["plain", "gated"])
def test_autoregressive_on_28x28(kind):
  """The Jacobian rows of several pixels of a 28x28 image (by `jax.vjp`): zero at j >= i,
  nonzero just before i."""
  model = tiny(kind, num_layers=2)
  variables = _init(model, _bits((1, 28, 28, 1), 5))
  pixels = np.asarray([1, 29, 300, 405, 406, 783])
  rows = 0
  for x in (_bits((1, 28, 28, 1), 5), jax.random.normal(KEY, (1, 28, 28, 1))):  # the union
    logits, vjp = jax.vjp(lambda x: model.apply(variables, x).reshape(-1), x)
    rows += np.abs(np.asarray(jax.vmap(lambda e: vjp(e)[0])(jnp.eye(logits.size)[pixels])))
  rows = rows.reshape(len(pixels), -1)
  for i, row in zip(pixels, rows):
    assert np.all(row[i:] == 0), (i, np.nonzero(row[i:])[0][:5] + i)
    assert row[:i].any(), i


@pytest.mark.parametrize("kind", ["plain", "gated"])
def test_negative_control_no_mask_sees_the_future(kind):
  depends = dependence(tiny(kind, masked=False), 8)
  assert (depends & FUTURE).sum() > FUTURE.sum() // 2
  assert np.all(depends[SELF])


@pytest.mark.parametrize("kind", ["plain", "gated"])
def test_negative_control_mask_b_first_lets_pixel_i_see_itself(kind):
  depends = dependence(tiny(kind, first_mask="B"), 8)
  assert np.all(depends[SELF])  # every logit sees its own pixel: -log p(x) is no likelihood
  assert not np.any(depends & FUTURE & ~SELF)  # but nothing after it


def test_plain_pixelcnn_has_a_blind_spot_the_gated_one_has_none():
  """Plain: some pixels before i never reach logit i however deep the stack; with a 7x7 mask A
  layer and 3x3 mask B blocks the logit at (r, c) never sees (r - 1, c + 4). Gated: every
  pixel before i matters (an 8x8 image lies inside its receptive field)."""
  for num_layers in (2, 4, 8):
    plain = dependence(tiny("plain", num_layers=num_layers), 8)
    blind = PAST & ~plain
    assert blind.any(), num_layers
    for r, c in itertools.product(range(1, 8), range(4)):
      assert blind[r * 8 + c, (r - 1) * 8 + c + 4], (num_layers, r, c)
  gated = dependence(tiny("gated"), 8)
  assert np.all(gated[PAST]), np.argwhere(PAST & ~gated)[:5]


# ------------------------------------------------------------------------- the exact likelihood

def test_nll_is_the_sum_of_the_per_pixel_binary_cross_entropy():
  logits = jax.random.normal(KEY, (3, 4, 4, 1)) * 3
  x = _bits((3, 4, 4, 1), 1)
  p = jax.nn.sigmoid(logits)
  direct = -jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log(1 - p), axis=(1, 2, 3))
  np.testing.assert_allclose(pixelcnn.nll(logits, x), direct, rtol=1e-5)
  np.testing.assert_allclose(pixelcnn.nll(jnp.zeros((1, 28, 28, 1)), x[:1].repeat(7, 1)
                                          .repeat(7, 2)), 784 * np.log(2), rtol=1e-6)


ALL_4X4 = jnp.asarray(((np.arange(2 ** 16)[:, None] >> np.arange(15, -1, -1)) & 1)
                      .reshape(-1, 4, 4, 1), jnp.float32)


def _total_probability(model: nn.Module) -> float:
  variables = model.init(KEY, ALL_4X4[:1])
  nll = jax.jit(lambda x: pixelcnn.nll(model.apply(variables, x), x))(ALL_4X4)
  return float(np.sum(np.exp(-np.asarray(nll, np.float64))))


@pytest.mark.parametrize("kind", ["plain", "gated"])
def test_exact_likelihood_sums_to_one_over_all_binary_images(kind):
  """sum over the 65,536 binary 4x4 images of exp(-NLL) = 1: a normalized distribution; the
  negative controls' "likelihoods" are not."""
  assert abs(_total_probability(tiny(kind)) - 1) < 1e-4
  for control in ({"first_mask": "B"}, {"masked": False}):
    assert abs(_total_probability(tiny(kind, **control)) - 1) > 1e-2, control


# ------------------------------------------------------------------------- ancestral sampling

def test_samples_follow_the_models_probabilities():
  """20,000 ancestral samples of 2x3 images from a random PixelCNN: the frequency of each of the
  64 images is its exp(-NLL) within 4.5 standard errors."""
  model = tiny("plain", num_layers=2)
  all_2x3 = jnp.asarray(((np.arange(64)[:, None] >> np.arange(5, -1, -1)) & 1).reshape(
      -1, 2, 3, 1), jnp.float32)
  variables = model.init(KEY, all_2x3[:1])
  variables = jax.tree.map(lambda a: a * 2.0, variables)  # a less uniform distribution
  logits_fn = lambda x: model.apply(variables, x)
  probability = np.exp(-np.asarray(pixelcnn.nll(logits_fn(all_2x3), all_2x3), np.float64))
  n = 20_000
  samples = jax.jit(lambda key, canvas: pixelcnn.ancestral_sample(logits_fn, key, canvas))(
      jax.random.PRNGKey(3), jnp.zeros((n, 2, 3, 1)))
  codes = np.asarray(samples, int).reshape(n, 6) @ (1 << np.arange(5, -1, -1))
  frequency = np.bincount(codes, minlength=64) / n
  stderr = np.sqrt(probability * (1 - probability) / n)
  assert abs(probability.sum() - 1) < 1e-5
  assert np.all(np.abs(frequency - probability) < 4.5 * stderr + 1e-4), (
      np.max(np.abs(frequency - probability) / (stderr + 1e-9)))
  assert probability.max() > 3 / 64  # the check can tell the distribution from uniform


def test_sampling_goes_pixel_by_pixel_and_keeps_the_given_pixels():
  """A "model" whose logit at pixel i copies pixel i - 1 (logit +-50; pixel 0: logit 0): every
  sample is all zeros or all ones, about half each; started at pixel `start`, the pixels before
  it are kept and every later one copies pixel start - 1."""
  def copy_previous(canvas):
    flat = canvas.reshape(canvas.shape[0], -1)
    previous = jnp.concatenate([jnp.full((len(flat), 1), 0.5), flat[:, :-1]], axis=1)
    return ((previous - 0.5) * 100).reshape(canvas.shape)

  sample = jax.jit(pixelcnn.ancestral_sample, static_argnums=0)
  samples = np.asarray(sample(copy_previous, KEY, jnp.zeros((400, 5, 5, 1)), 0)).reshape(400, -1)
  assert np.all((samples == 0).all(1) | (samples == 1).all(1))
  assert 0.4 < samples[:, 0].mean() < 0.6
  given = np.asarray(_bits((50, 5, 5, 1), 2))
  completed = np.asarray(sample(copy_previous, KEY, jnp.asarray(given), 12)).reshape(50, -1)
  flat = given.reshape(50, -1)
  np.testing.assert_array_equal(completed[:, :12], flat[:, :12])
  np.testing.assert_array_equal(completed[:, 12:], np.repeat(flat[:, 11:12], 13, axis=1))


# ------------------------------------------------------------------------------------ the task

def _short_config(config, **overrides):
  config.update({"val_size": 500, "train_subset": 1280, "test_subset": 200, "batch_size": 64,
                 "num_epochs": 3, "learning_rate": 3e-3, "num_samples": 4,
                 "completion_images": 2, "completion_samples": 2, **overrides})
  config.model_kwargs.update({"features": 8, "num_layers": 2, "output_features": 8})
  return config


@pytest.mark.parametrize("config_module", [pixelcnn_mnist, gated_pixelcnn_mnist])
def test_short_training_lowers_the_nll_and_writes_the_figures(config_module, tmp_path):
  config = _short_config(config_module.get_config())
  task, state = in_process.start(config)
  _, before = task.evaluate(state, 0)
  state, _, _ = in_process.train(task, state)
  _, after = task.evaluate(state, 0)
  assert 450 < before["val"]["loss"] < 650, before  # about 784 ln 2 = 543 at the start
  assert after["val"]["loss"] < before["val"]["loss"] - 100, (before, after)
  assert np.isclose(after["val"]["bits_per_pixel"], after["val"]["loss"] / (784 * np.log(2)))
  summary, metrics, headline = task.finish(state, task.plan().total_steps, tmp_path)
  assert summary["test_size"] == 200 and summary["param_count"] == registry.count_params(
      state.params)
  assert metrics["test"]["loss"] == summary["test_nll"] and "test NLL" in headline
  for figure in ("samples", "completions"):
    assert (tmp_path / f"{figure}.png").read_bytes()[:4] == b"\x89PNG", figure


@pytest.mark.parametrize("overrides, message", [
    ({"model": "vae_mlp"}, "unknown model 'vae_mlp'; registered autoregressive models: "
                           "gated_pixelcnn, pixelcnn ('vae_mlp' is a vae model)"),
    ({"model_kwargs.kernel_size": 4}, "model_kwargs.kernel_size=4 must be odd"),
    ({"model_kwargs.first_kernel_size": 6}, "model_kwargs.first_kernel_size=6 must be odd"),
    ({"model_kwargs.features": 1}, "model_kwargs.features=1 must be >= 2"),
])
def test_bad_configs_are_refused(overrides, message):
  config = pixelcnn_mnist.get_config()
  for key, value in overrides.items():
    if key.startswith("model_kwargs."):
      config.model_kwargs[key.split(".", 1)[1]] = value
    else:
      config[key] = value
  with pytest.raises(ConfigError, match=re.escape(message)) as info:
    pixelcnn_task.Autoregressive.validate(config)
  assert "\n" not in str(info.value)


@pytest.mark.parametrize("key, value, message", [
    ("num_samples", -1, "num_samples=-1 must be 0 (no samples figure) or a positive integer"),
    ("completion_samples", 0, "completion_samples=0 must be a positive integer"),
    ("binarization_seed", -2, "binarization_seed=-2 must be 0 (the first binarization) or a "
                              "positive integer"),
])
def test_bad_values_are_refused_by_the_checks(key, value, message):
  config = gated_pixelcnn_mnist.get_config()
  config[key] = value
  with pytest.raises(ConfigError, match="^" + re.escape(message)):
    engine.validate(config)


def test_a_bad_value_is_one_error_line_and_exit_2(tmp_path):
  out = run(experiment_cmd("pixelcnn_mnist", tmp_path / "w", "--config.model_kwargs.kernel_size=2"))
  assert out.returncode == 2, out.stderr[-2000:]
  errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
  assert errors == ["error: model_kwargs.kernel_size=2 must be odd (a kernel centred on its "
                    "pixel); accepted: 1, 3, 5, ..."], errors
  assert "Traceback" not in out.stderr and not (tmp_path / "w").exists()
