"""The style transfer of section 5.3.5 (Gatys et al. 2015): Gram matrices against numpy, the
losses' zeros and their negative controls, the Gram matrix's blindness to where features are,
the colour channels through the grey network, and a few optimization steps (Adam, L-BFGS)
lowering both losses."""

import functools
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dl_jax import engine
from dl_jax.errors import ConfigError
from dl_jax.models import style_features
from dl_jax.tasks import style_transfer
from dl_jax.vision import style
from experiments.configs import style_transfer as style_config

RNG = np.random.default_rng(0)


def features(*shape) -> jnp.ndarray:
  return jnp.asarray(RNG.standard_normal(shape), jnp.float32)


def test_gram_matrix_equals_numpy():
  f = features(2, 5, 6, 7)
  flat = np.asarray(f).reshape(2, 30, 7).astype(np.float64)
  want = np.stack([x.T @ x for x in flat]) / 30
  np.testing.assert_allclose(style.gram_matrix(f), want, rtol=1e-5, atol=1e-5)
  assert style.gram_matrix(f[0]).shape == (7, 7)


def test_style_layer_loss_is_the_papers_formula():
  f, a = features(4, 5, 6), features(4, 5, 6)  # M = 20 positions, N = 6 channels
  g_paper = np.asarray(f).reshape(20, 6).T @ np.asarray(f).reshape(20, 6)  # undivided
  a_paper = np.asarray(a).reshape(20, 6).T @ np.asarray(a).reshape(20, 6)
  want = np.sum((g_paper - a_paper) ** 2) / (4 * 6 ** 2 * 20 ** 2)
  got = style.style_layer_loss(style.gram_matrix(f), style.gram_matrix(a))
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_losses_vanish_on_identical_inputs_only():
  f = {"a": features(1, 8, 8, 3), "b": features(1, 4, 4, 5)}
  other = {k: v + 0.1 * features(*v.shape) for k, v in f.items()}
  grams = {k: style.gram_matrix(v)[0] for k, v in f.items()}
  assert float(style.content_loss(f["a"], f["a"])) == 0
  assert float(style.style_loss(f, grams)) == pytest.approx(0, abs=1e-12)
  assert float(style.content_loss(other["a"], f["a"])) > 1e-4
  assert float(style.style_loss(other, grams)) > 1e-6
  flat = jnp.full((1, 9, 9, 3), 0.3)
  assert float(style.total_variation(flat)) == 0
  assert float(style.total_variation(flat.at[0, 4, 4, 1].set(0.8))) > 0


def test_style_loss_ignores_where_features_are_content_loss_does_not():
  f = features(1, 6, 6, 4)
  grams = {"x": style.gram_matrix(f)[0]}
  order = RNG.permutation(36)
  shuffled = f.reshape(1, 36, 4)[:, order].reshape(1, 6, 6, 4)
  assert float(style.style_loss({"x": shuffled}, grams)) == pytest.approx(0, abs=1e-10)
  assert float(style.content_loss(shuffled, f)) > 0.5  # the negative control


def tiny_model():
  return style_features.StyleVGG(widths=(4, 8), convs_per_block=1)


def test_each_colour_channel_goes_through_the_grey_network():
  model = tiny_model()
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))["params"]
  images = jnp.asarray(RNG.uniform(size=(2, 12, 12, 3)), jnp.float32)
  joined = jax.jit(style.channel_features, static_argnums=(0, 3))(
      model, params, images, ("conv1_1", "conv2_1"))
  assert joined["conv2_1"].shape == (2, 6, 6, 24)
  grey = jax.jit(lambda x: model.apply({"params": params}, x * 2 - 1, ("conv2_1",),
                                       method="features")["conv2_1"])
  for c in range(3):
    np.testing.assert_allclose(joined["conv2_1"][..., 8 * c:8 * (c + 1)],
                               grey(images[..., c:c + 1]), atol=1e-6)
  with pytest.raises(ValueError, match="no layer 'conv3_1'; accepted: conv1_1, conv2_1"):
    style.channel_features(model, params, images, ("conv3_1",))


def test_photo_is_a_square_colour_image_in_unit_range():
  brick = style.photo("brick", 24)
  assert brick.shape == (24, 24, 3) and brick.dtype == np.float32
  np.testing.assert_array_equal(brick[..., 0], brick[..., 2])  # grey texture on 3 channels
  cat = style.photo("chelsea", 24)
  assert 0 <= cat.min() and cat.max() <= 1 and np.abs(cat[..., 0] - cat[..., 2]).max() > 0.1
  with pytest.raises(ValueError, match="unknown image 'lena'"):
    style.photo("lena", 24)


@pytest.mark.parametrize("optimizer, learning_rate", [("adam", 0.05), ("lbfgs", 1.0)])
def test_a_few_steps_lower_both_losses(optimizer, learning_rate):
  model = tiny_model()
  params = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 28, 28, 1)))["params"]
  content = jnp.asarray(style.photo("chelsea", 16))[None]
  texture = jnp.asarray(style.photo("gravel", 16))[None]
  layers = ("conv1_1", "conv2_1")
  extract = functools.partial(style.channel_features, model, params, layers=layers)
  targets = {"content": extract(content)["conv2_1"],
             "grams": {k: style.gram_matrix(v)[0] for k, v in extract(texture).items()}}
  loss_fn = functools.partial(style_transfer.objective, model=model, content_layer="conv2_1",
                              style_layers=layers, weights=(1.0, 100.0, 0.0))
  tx = style_transfer.make_optimizer(optimizer, learning_rate)
  image = jnp.asarray(RNG.uniform(size=content.shape), jnp.float32)
  state = style_transfer.StyleState(step=jnp.zeros((), jnp.int32), image=image,
                                    opt_state=tx.init(image),
                                    history=jnp.zeros((8, len(style_transfer.TERMS))))
  step_fn = style_transfer.lbfgs_step if optimizer == "lbfgs" else style_transfer.adam_step
  step = jax.jit(functools.partial(step_fn, tx=tx, loss_fn=loss_fn))
  for _ in range(8):
    state, logs = step(state, params, targets)
  _, first = loss_fn(image, params, targets)
  _, last = loss_fn(state.image, params, targets)
  assert float(last["content_loss"]) < 0.7 * float(first["content_loss"])
  assert float(last["style_loss"]) < 0.7 * float(first["style_loss"])
  np.testing.assert_allclose(state.history[0, 2], first["style_loss"], rtol=1e-5)
  assert np.isfinite(float(logs["grad_norm"]))


@pytest.mark.parametrize("overrides, message", [
    ({"content_layer": "conv9_1"}, "content_layer='conv9_1' must name layers of style_vgg"),
    ({"style_layers": ()}, "style_layers=() must name layers of style_vgg"),
    ({"model_kwargs": {"widths": (4, 4, 4, 4, 4)}, "style_layers": ("conv5_1",),
      "image_size": 8}, "image_size=8 is too small for layer conv5_1 (after 4 2x2 pools); "
     "accepted: >= 16"),
    ({"model_kwargs": {"pooling": "median"}}, "model_kwargs.pooling='median'; accepted: "),
    ({"content_weight": 0.0, "style_weight": 0.0}, "content_weight=0 and style_weight=0"),
    ({"style": "lena"}, "unknown style 'lena'; accepted: brick, grass"),
    ({"optimizer": "sgd"}, "unknown optimizer 'sgd'; accepted: lbfgs, adam"),
])
def test_bad_values_are_refused(overrides, message):
  config = style_config.get_config()
  engine.validate(config)  # the shipped config passes
  for key, value in overrides.items():
    config[key] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
  with pytest.raises(ConfigError, match="^" + re.escape(message)):
    engine.validate(config)
