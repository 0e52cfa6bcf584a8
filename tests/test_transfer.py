"""What image classification does for sections 5.3.2 and 5.4: augmentation in the step (random
crop with padding, flip, random erasing), the auxiliary classifiers' loss, class subsets, and
transfer learning (init_from, reinit_layers, freeze_layers), with their bad inputs."""

import functools
import json
import sys

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax import optim
from dl_jax.data.images import augment
from dl_jax.models import registry
from dl_jax.models.spec import AUX_LOGITS
from dl_jax.tasks import image_classification as ic
from experiments.configs import base
from tests.conftest import run

KEY = jax.random.PRNGKey(0)
FEATURES = ("Conv_0", "Conv_1", "Conv_2")


def _config(**overrides):
  config = base.base_config()
  config.update(overrides)
  return config


def _batch(n=16, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": jnp.asarray(rng.uniform(-1, 1, (n, 28, 28, 1)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, 10, n), jnp.int32)}


def _steps(state, step_fn, n=3):
  for i in range(n):
    state, _ = step_fn(state, _batch(seed=i))
  return state


@pytest.mark.parametrize("no_grad", [FEATURES, ()], ids=["stop_gradient+mask", "mask_only"])
def test_frozen_layers_stay_bitwise_unchanged_and_the_others_train(no_grad):
  model = registry.build("mnist_cnn")
  params = jax.eval_shape(model.init, KEY, jnp.zeros((1, 28, 28, 1)))["params"]
  tx = ic.freeze_optimizer(optim.make_optimizer("adam", 1e-2), params, FEATURES)
  state = ic.create_train_state(model, tx, KEY, (28, 28, 1))
  before = jax.device_get(state.params)
  after = jax.device_get(_steps(state, jax.jit(functools.partial(ic.train_step,
                                                                 frozen=no_grad))).params)
  for layer in before:
    same = jax.tree.all(jax.tree.map(np.array_equal, before[layer], after[layer]))
    assert same == (layer in FEATURES), layer


def test_without_freezing_every_layer_moves():  # the negative control of the test above
  model = registry.build("mnist_cnn")
  state = ic.create_train_state(model, optim.make_optimizer("adam", 1e-2), KEY, (28, 28, 1))
  before = jax.device_get(state.params)
  after = jax.device_get(_steps(state, jax.jit(ic.train_step)).params)
  for layer in before:
    assert not np.array_equal(before[layer]["kernel"], after[layer]["kernel"]), layer


def test_stop_gradient_removes_the_frozen_layers_gradients():
  model = registry.build("mnist_cnn")
  state = ic.create_train_state(model, optim.make_optimizer("sgd", 1e-2), KEY, (28, 28, 1))
  _, with_all = jax.jit(ic.train_step)(state, _batch())
  _, frozen = jax.jit(functools.partial(ic.train_step, frozen=FEATURES))(state, _batch())
  assert float(frozen["grad_norm"]) < float(with_all["grad_norm"])
  np.testing.assert_allclose(frozen["loss"], with_all["loss"], rtol=1e-6)


class _WithAux(nn.Module):
  """A main head and an auxiliary head sown in training, as GoogLeNet's."""

  @nn.compact
  def __call__(self, x, train=False):
    x = x.reshape((x.shape[0], -1))
    aux = nn.Dense(10, name="aux")(x)
    if train:
      self.sow(AUX_LOGITS, "aux1", aux)
    return nn.Dense(10, name="main")(x)


@pytest.mark.parametrize("weight", [0.0, 0.3])
def test_auxiliary_logits_are_trained_by_their_weighted_loss(weight):
  state = ic.create_train_state(_WithAux(), optim.make_optimizer("sgd", 0.1), KEY, (28, 28, 1))
  new, metrics = jax.jit(functools.partial(ic.train_step, aux_loss_weight=weight))(
      state, _batch())
  moved = not np.array_equal(state.params["aux"]["kernel"], new.params["aux"]["kernel"])
  assert moved == (weight > 0)
  # The reported loss is the main classifier's; evaluation ignores the auxiliary head.
  logits = _WithAux().apply({"params": state.params}, _batch()["image"])
  np.testing.assert_allclose(metrics["loss"], ic.cross_entropy(logits, _batch()["label"]).mean(),
                             rtol=1e-6)


def test_random_erasing():
  images = jnp.zeros((64, 28, 28, 1)) - 1.0
  assert np.array_equal(augment.random_erasing(KEY, images, 0.0), images)
  erased = np.asarray(augment.random_erasing(KEY, images, 1.0))
  np.testing.assert_array_equal(erased, augment.random_erasing(KEY, images, 1.0))
  assert not np.array_equal(erased, augment.random_erasing(jax.random.PRNGKey(1), images, 1.0))
  for image in erased[..., 0]:
    rows, cols = np.nonzero(image != -1.0)
    assert rows.size  # a rectangle of noise, of 2 % to 40 % of the area (clipped to the image)
    box = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert (box != -1.0).mean() > 0.99
    assert 0.015 <= box.size / image.size <= 0.41
  half = np.asarray(augment.random_erasing(KEY, jnp.zeros((400, 28, 28, 1)) - 1, 0.5))
  assert 0.4 < np.mean((half != -1).any(axis=(1, 2, 3))) < 0.6


def test_random_crop_with_padding_is_a_whole_pixel_shift_with_black_padding():
  config = _config(augment_crop_padding=4, augment_flip=False)
  fn = ic.make_augment(config, "image")
  image = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)), jnp.float32)
  out = np.asarray(fn(KEY, image))
  for x, y in zip(np.asarray(image)[..., 0], out[..., 0]):
    found = False
    for dy in range(-4, 5):
      for dx in range(-4, 5):
        padded = np.pad(x, 4, constant_values=-1.0)
        crop = padded[4 - dy:4 - dy + 28, 4 - dx:4 - dx + 28]
        found |= np.array_equal(crop, y)
    assert found
  assert ic.make_augment(_config(), "image") is None


def test_select_classes_relabels_in_the_given_order():
  raw = {"train_images": np.arange(6)[:, None], "train_labels": np.array([0, 5, 7, 5, 1, 9]),
         "test_images": np.arange(3)[:, None], "test_labels": np.array([7, 0, 5])}
  out = ic.select_classes(raw, (7, 5))
  np.testing.assert_array_equal(out["train_labels"], [1, 0, 1])
  np.testing.assert_array_equal(out["train_images"][:, 0], [1, 2, 3])
  np.testing.assert_array_equal(out["test_labels"], [0, 1])


def test_transferred_layers_and_their_errors(tmp_path):
  model = registry.build("mnist_cnn")
  shapes = jax.eval_shape(functools.partial(model.init, train=False), KEY,
                          jnp.zeros((1, 28, 28, 1)))
  variables = jax.device_get(model.init(KEY, jnp.zeros((1, 28, 28, 1))))
  (tmp_path / ic.VARIABLES_FILE).write_bytes(flax.serialization.msgpack_serialize(variables))
  source = ic.load_variables(str(tmp_path))
  assert list(ic.transferred_layers(source, shapes, (), "src")["params"]) == [
      "Conv_0", "Conv_1", "Conv_2", "Dense_0"]  # all but the output layer
  with pytest.raises(ic.ConfigError, match="reinit_layers: no layer 'Dense_9'; accepted: "
                                           "Conv_0, Conv_1"):
    ic.transferred_layers(source, shapes, ("Dense_9",), "src")
  five = jax.eval_shape(functools.partial(registry.build("mnist_cnn", num_classes=5).init,
                                          train=False), KEY, jnp.zeros((1, 28, 28, 1)))
  with pytest.raises(ic.ConfigError, match=r"params of layer 'Dense_1' have shapes .*256, 10.*"
                                           r"needs .*256, 5.*; list it in reinit_layers"):
    ic.transferred_layers(source, five, ("Dense_0",), "src")
  with pytest.raises(ic.ConfigError, match="holds no variables.msgpack"):
    ic.load_variables(str(tmp_path / "nothing"))
  (tmp_path / ic.VARIABLES_FILE).write_bytes(b"\x93garbage")
  with pytest.raises(ic.DataError, match="is not a variables file|holds no 'params'"):
    ic.load_variables(str(tmp_path))


SHORT = ("--config.train_subset=512", "--config.val_size=256", "--config.max_steps=8",
         "--config.num_epochs=2", "--config.log_every_steps=4")


def test_transfer_run_copies_and_freezes(tmp_path, run_experiment):
  source, target = tmp_path / "source", tmp_path / "target"
  done = run_experiment("mnist_cnn", source, *SHORT, "--config.classes=0,1,2,3,4")
  assert done.returncode == 0, done.stderr[-2000:]
  done = run_experiment("mnist_cnn", target, *SHORT, "--config.classes=5,6,7,8,9",
                        f"--config.init_from={source}", "--config.reinit_layers=Dense_0,Dense_1",
                        "--config.freeze_layers=transferred",
                        "--config.augment_crop_padding=2", "--config.augment_random_erasing=0.5")
  assert done.returncode == 0, done.stderr[-2000:]
  a, b = (ic.load_variables(str(w))["params"] for w in (source, target))
  for layer in FEATURES:
    np.testing.assert_array_equal(a[layer]["kernel"], b[layer]["kernel"])
  assert not np.array_equal(a["Dense_1"]["kernel"], b["Dense_1"]["kernel"])
  results = json.loads((target / "results.json").read_text())
  assert results["trained_param_count"] == (108 * 256 + 256) + (256 * 5 + 5)


@pytest.mark.parametrize("flags,message", [
    (("--config.reinit_layers=Dense_0",), "need init_from"),
    (("--config.classes=1,1",), "must be distinct class ids in 0..9"),
    (("--config.classes=3,10",), "must be distinct class ids in 0..9"),
    (("--config.freeze_layers=Conv_9",), "freeze_layers: no layer 'Conv_9'; accepted: "
                                         "'transferred', Conv_0"),
    (("--config.freeze_layers=transferred",), "need init_from"),
    (("--config.init_from=/nonexistent",), "init_from='/nonexistent' holds no variables.msgpack"),
    (("--config.dataset=mnist1d",), "unknown model 'mnist_cnn'; registered signal models"),
])
def test_bad_values_are_one_error_line(tmp_path, run_experiment, flags, message):
  done = run_experiment("mnist_cnn", tmp_path / "w", *SHORT, *flags)
  assert done.returncode == 2, done.stderr[-2000:]
  lines = done.stderr.strip().splitlines()
  assert lines[-1].startswith("error: ") and message in lines[-1], lines[-3:]
  assert "Traceback" not in done.stderr
  # Refused while its data and model were set up: the workdir is left unmarked, free for the
  # corrected command.
  assert not (tmp_path / "w").exists() or not list((tmp_path / "w").iterdir())


def test_transfer_study_quick(tmp_path):
  """The study of section 5.4 in its --quick version, as a user runs it."""
  done = run([sys.executable, "-m", "experiments.studies.transfer", f"--workdir={tmp_path}",
              "--quick"], timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results["keras"]) == {"source_0-4", "frozen", "fine_tuned", "scratch"}
  for pair in ("mnist->fashion_mnist", "fashion_mnist->mnist"):
    for method in ("frozen", "fine_tuned", "scratch"):
      assert 0.3 < results["cross"][pair][f"0.01_{method}"]["mean"] <= 1.0, (pair, method)
  assert len(results["step_ms"]) == 4 and all(v > 0 for v in results["step_ms"].values())
  table = (tmp_path / "table.md").read_text()
  assert table.count("\n| frozen |") == 1 and "MNIST -> Fashion-MNIST" in table
