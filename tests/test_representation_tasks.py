"""The autoencoding and metric-learning tasks (section 5.5) beyond what tests/test_tasks.py checks
for every task: the noise functions of eq. 5.29, the encoder and decoder of the registered
autoencoders, the P x K batches, classes held out of training, the refusals of bad
configurations, and short real trainings with bounds on their results (the README's numbers
with --full-training)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax.engine import loop, sharding
from dl_jax.errors import ConfigError
from dl_jax.models import registry
from dl_jax.tasks import autoencoding, metric_learning
from experiments import main, overrides, report
from tests.conftest import ROOT

IMAGES = jnp.asarray(np.random.default_rng(0).uniform(0.2, 0.8, (8, 28, 28, 1)), jnp.float32)


def test_masking_noise_zeroes_about_the_given_fraction():
  noisy = autoencoding.add_noise(jax.random.PRNGKey(0), IMAGES, "masking", 0.3)
  zeroed = np.asarray(noisy == 0)
  assert abs(zeroed.mean() - 0.3) < 0.02
  np.testing.assert_array_equal(np.asarray(noisy)[~zeroed], np.asarray(IMAGES)[~zeroed])


def test_salt_and_pepper_sets_pixels_to_both_extremes():
  noisy = np.asarray(autoencoding.add_noise(jax.random.PRNGKey(1), IMAGES, "salt_and_pepper",
                                            0.4))
  hit = noisy != np.asarray(IMAGES)
  assert abs(hit.mean() - 0.4) < 0.02
  assert set(np.unique(noisy[hit])) == {0.0, 1.0}
  assert abs((noisy[hit] == 1).mean() - 0.5) < 0.03


def test_gaussian_noise_stays_in_the_unit_interval_and_is_pure_in_the_key():
  key = jax.random.PRNGKey(2)
  noisy = autoencoding.add_noise(key, IMAGES, "gaussian", 0.5)
  assert float(noisy.min()) == 0.0 and float(noisy.max()) == 1.0
  np.testing.assert_array_equal(noisy, autoencoding.add_noise(key, IMAGES, "gaussian", 0.5))
  assert not np.array_equal(noisy, autoencoding.add_noise(jax.random.PRNGKey(3), IMAGES,
                                                          "gaussian", 0.5))
  assert autoencoding.add_noise(key, IMAGES, "none", 0.0) is IMAGES


@pytest.mark.parametrize("name", registry.names("autoencoder"))
def test_autoencoder_is_decode_after_encode(name):
  model = registry.build(name)
  variables = model.init(jax.random.PRNGKey(0), IMAGES)
  code = model.apply(variables, IMAGES, method="encode")
  assert code.shape == (len(IMAGES), registry.get(name).defaults["code_size"])
  np.testing.assert_allclose(model.apply(variables, code, method="decode"),
                             model.apply(variables, IMAGES), rtol=1e-6, atol=1e-6)


def test_relu_code_is_non_negative_and_linear_code_is_not():
  for activation, negative in (("relu", False), ("linear", True)):
    model = registry.build("ae_mlp", code_activation=activation)
    variables = model.init(jax.random.PRNGKey(0), IMAGES)
    code = model.apply(variables, IMAGES, method="encode")
    assert bool((code < 0).any()) == negative


def test_reconstruction_losses_against_their_formulas():
  logits = jnp.asarray(np.random.default_rng(1).normal(size=IMAGES.shape), jnp.float32)
  out = autoencoding.reconstruction_losses(logits, IMAGES)
  p, x = 1 / (1 + np.exp(-np.asarray(logits, np.float64))), np.asarray(IMAGES, np.float64)
  np.testing.assert_allclose(out["sse"], ((p - x) ** 2).sum((1, 2, 3)), rtol=1e-5)
  np.testing.assert_allclose(out["mse"], ((p - x) ** 2).mean((1, 2, 3)), rtol=1e-5)
  bce = -(x * np.log(p) + (1 - x) * np.log(1 - p)).mean((1, 2, 3))
  np.testing.assert_allclose(out["bce"], bce, rtol=1e-5)


def test_class_batches_are_pure_and_hold_k_distinct_examples_of_p_classes():
  labels = np.repeat(np.arange(7), 9)
  by_class = [np.flatnonzero(labels == c) for c in range(7)]
  ids = metric_learning.class_batch_ids(by_class, 4, 3, seed=5, step=11)
  np.testing.assert_array_equal(ids, metric_learning.class_batch_ids(by_class, 4, 3, 5, 11))
  assert not np.array_equal(ids, metric_learning.class_batch_ids(by_class, 4, 3, 5, 12))
  groups = labels[ids].reshape(4, 3)
  assert (groups == groups[:, :1]).all() and len(set(groups[:, 0])) == 4
  assert len(set(ids)) == 12


def _config(name: str, *flags: str):
  config = overrides.load_config_file(str(ROOT / "experiments" / "configs" / f"{name}.py"))
  pairs = [flag[len("--config."):].split("=", 1) for flag in flags]
  return overrides.apply_overrides(config, [(key, text) for key, text in pairs],
                                   on_first=main.fill_model_kwargs)


@pytest.mark.parametrize("name, flags, message", [
    ("ae_mlp", ("--config.noise=gaussian",),
     "noise='gaussian' with noise_level=0.0: set both"),
    ("ae_mlp", ("--config.model=embed_conv4",), "unknown model 'embed_conv4'; registered "
     "autoencoder models: ae_conv, ae_mlp ('embed_conv4' is an embedding model)"),
    ("ae_mlp", ("--config.loss=l1",), "unknown loss 'l1'; accepted: mse, bce"),
    ("triplet_mnist", ("--config.held_out_classes=(5,5)",),
     "held_out_classes=(5, 5) must be distinct class ids in 0..9"),
    ("triplet_mnist", ("--config.warmup_steps=2000",),
     "warmup_steps=2000 must be smaller than num_steps=2000"),
    ("triplet_mnist", ("--config.model_kwargs.features=(8,8,8,8,8)",),
     "model_kwargs.features=(8, 8, 8, 8, 8): embed_conv4 gives no output"),
    ("ae_conv", ("--config.model_kwargs.features=(8,8,8)",),
     "model_kwargs.features=(8, 8, 8): ae_conv gives (1, 24, 24, 1) for one example, not "
     "(1, 28, 28, 1)"),
    ("oneshot_kanji", ("--config.kanji_characters=7000",),
     "kanji_characters=7000 exceeds the 6394 characters"),
    ("triplet_mnist", ("--config.mining=hardest",),
     "unknown mining 'hardest'; accepted: all, easy, semihard, hard, batch_hard"),
    ("oneshot_kanji", ("--config.held_out_classes=(1,)",),
     "held_out_classes=(1,) is for MNIST and Fashion-MNIST"),
])
def test_bad_configurations_are_refused_before_loading(name, flags, message):
  with pytest.raises(ConfigError) as info:
    loop.validate(_config(name, *flags))
  assert str(info.value).startswith(message), str(info.value)
  assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, flags", [
    ("triplet_mnist", ()),
    ("oneshot_kanji", ("--config.kanji_characters=50", "--config.kanji_drawings=10",
                       "--config.val_size=20", "--config.ways=(5,)")),
])
def test_held_out_classes_are_never_trained_on(name, flags):
  task = metric_learning.MetricLearning(_config(name, *flags), sharding.make_mesh())
  data = metric_learning.load_data(task.config)
  train_classes, eval_classes = set(data["train_labels"]), set(task.eval.labels)
  assert train_classes and eval_classes and not train_classes & eval_classes
  assert len(task.train) + len(task.val) == len(data["train_labels"])  # val: training classes
  assert len(eval_classes) == (5 if name == "triplet_mnist" else 10)


@pytest.mark.parametrize("flags, message", [
    (("--config.classes_per_batch=6",), "classes_per_batch=6 exceeds the 5 training classes"),
    (("--config.ways=(6,)",), "ways=(6,): 6-way episodes need 6 evaluation classes, there are 5"),
])
def test_sizes_the_data_cannot_give_are_refused(flags, message):
  config = _config("triplet_mnist", *flags)
  loop.validate(config)
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    metric_learning.MetricLearning(config, sharding.make_mesh())


# experiment -> (short flags, {result: (short lower bound, full lower bound)}): the full bounds
# guard the README's numbers (`--full-training` runs the configs as they are)
TRAININGS = {
    "oneshot_kanji": (("--config.num_steps=100", "--config.kanji_characters=300",
                       "--config.model_kwargs.features=(32,32,32,32)", "--config.val_size=500",
                       "--config.eval_every_steps=0", "--config.episodes=200",
                       "--config.verification_pairs=2000"),
                      {"test_20way_1shot_nearest": (0.5, 0.95)}),
    "siamese_mnist": (("--config.num_steps=100", "--config.val_size=1000",
                       "--config.eval_every_steps=0", "--config.episodes=100",
                       "--config.verification_pairs=2000"),
                      {"test_verification_accuracy": (0.8, 0.95)}),
    "ae_sparse": (("--config.train_subset=5000", "--config.val_size=1000",
                   "--config.num_epochs=2", "--config.test_subset=1000",
                   "--config.probe_steps=50"),
                  {"test_code_near_zero": (0.3, 0.5)}),
}


@pytest.mark.parametrize("name", sorted(TRAININGS))
def test_training(name, tmp_path, run_experiment, full_training):
  short_flags, bounds = TRAININGS[name]
  done = run_experiment(name, tmp_path, *(() if full_training else short_flags))
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads((tmp_path / "results.json").read_text())
  for key, (short, full) in bounds.items():
    assert results[key] > (full if full_training else short), (key, results[key])
  tables = ([report.autoencoder_table] if name.startswith("ae_") else
            [report.metric_table, report.oneshot_table])
  for table in tables:
    assert table([{**results, "run": name}]).splitlines()[-1].startswith(f"| `{name}` |")
  figure = "reconstructions.png" if name.startswith("ae_") else "embedding_2d.png"
  assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG"
