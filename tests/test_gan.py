"""DCGAN (`dl_jax.models.gan`, `dl_jax.tasks.gan`) and the Frechet distance
(`dl_jax.vision.frechet`): the distance against scipy's `sqrtm` formula and on Gaussians whose
distance is known in closed form (with the negative control of a formula that takes the square
roots separately), the class entropy, the losses against their formulas, the non-saturating
gradient, the architecture's rules, the separation of the two players' updates (with a step
that mixes them as the negative control), the features of the classifier, a short real-data
training, and the config errors."""

import functools
import json
import re

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

from dl_jax import engine
from dl_jax.errors import ConfigError
from dl_jax.models import gan, registry
from dl_jax.tasks import gan as gan_task
from dl_jax.tasks import image_classification as classification
from dl_jax.vision import frechet
from experiments.configs import dcgan_fashion, dcgan_mnist
from tests import in_process
from tests.conftest import experiment_cmd, run

KEY = jax.random.PRNGKey(0)


# ------------------------------------------------------------------------ the Frechet distance

def _random_covariance(rng, d: int) -> np.ndarray:
  a = rng.standard_normal((d, d))
  return a @ a.T / d + 0.1 * np.eye(d)


def _scipy_distance(a: frechet.Gaussian, b: frechet.Gaussian) -> float:
  """The FID formula as the reference implementations write it, with scipy's sqrtm."""
  root = scipy.linalg.sqrtm(a.covariance @ b.covariance)
  diff = a.mean - b.mean
  return float(diff @ diff + np.trace(a.covariance) + np.trace(b.covariance)
               - 2 * np.trace(np.real(root)))


def test_frechet_distance_equals_the_scipy_sqrtm_formula():
  rng = np.random.default_rng(0)
  for d in (1, 2, 16):
    x = rng.standard_normal((500, d)) @ rng.standard_normal((d, d))
    y = 0.5 + rng.standard_normal((400, d)) @ rng.standard_normal((d, d))
    a, b = frechet.gaussian(x), frechet.gaussian(y)
    np.testing.assert_allclose(frechet.frechet_distance(a, b), _scipy_distance(a, b),
                               rtol=1e-8)
    np.testing.assert_allclose(a.covariance, np.cov(x.T).reshape(d, d), rtol=1e-12)
    assert frechet.frechet_distance(a, a) < 1e-8 * np.trace(a.covariance)


def test_frechet_distance_of_known_gaussians():
  """1-D: (m1 - m2)^2 + (s1 - s2)^2; commuting (diagonal) covariances: sum (sqrt a - sqrt b)^2
  plus the squared mean difference; 2x2 non-commuting: Tr M^(1/2) = sqrt(tr M + 2 sqrt(det M))
  for M = S1 S2 (its eigenvalues are positive)."""
  g = lambda mean, cov: frechet.Gaussian(np.asarray(mean, float), np.asarray(cov, float), 0)
  assert frechet.frechet_distance(g([1.0], [[4.0]]), g([-2.0], [[9.0]])) == pytest.approx(
      9.0 + 1.0, rel=1e-12)
  a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  expected = 3.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert frechet.frechet_distance(g([1, 1, 1], np.diag(a)), g([0, 0, 2], np.diag(b))) == \
      pytest.approx(expected, rel=1e-12)
  rng = np.random.default_rng(1)
  s1, s2 = _random_covariance(rng, 2), _random_covariance(rng, 2)
  m = s1 @ s2
  trace_root = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
  expected = np.trace(s1) + np.trace(s2) - 2 * trace_root
  assert frechet.frechet_distance(g([0, 0], s1), g([0, 0], s2)) == pytest.approx(expected,
                                                                                rel=1e-10)


def test_negative_control_separate_square_roots_are_wrong_for_non_commuting_covariances():
  """Tr(S1^(1/2) S2^(1/2)) equals Tr (S1 S2)^(1/2) when S1 and S2 commute, not otherwise: the
  known-Gaussian check tells them apart."""
  rng = np.random.default_rng(2)
  s1, s2 = _random_covariance(rng, 3), _random_covariance(rng, 3)
  separate = np.trace(frechet.sqrt_psd(s1) @ frechet.sqrt_psd(s2))
  right = frechet.trace_sqrt_product(s1, s2)
  assert abs(separate - right) > 1e-3 * right
  assert right == pytest.approx(np.trace(np.real(scipy.linalg.sqrtm(s1 @ s2))), rel=1e-9)
  d1, d2 = np.diag([1.0, 2.0, 3.0]), np.diag([4.0, 0.5, 2.0])
  assert np.trace(frechet.sqrt_psd(d1) @ frechet.sqrt_psd(d2)) == pytest.approx(
      frechet.trace_sqrt_product(d1, d2), rel=1e-12)


def test_sample_estimates_converge_to_the_distance_of_the_gaussians():
  rng = np.random.default_rng(3)
  cov = _random_covariance(rng, 4)
  root = np.linalg.cholesky(cov)
  true = frechet.Gaussian(np.zeros(4), cov, 0)
  samples = rng.standard_normal((200_000, 4)) @ root.T
  assert frechet.frechet_distance(frechet.gaussian(samples), true) < 1e-3
  shifted = frechet.gaussian(samples + np.array([0.0, 1.0, 0.0, 0.0]))
  assert frechet.frechet_distance(shifted, true) == pytest.approx(1.0, abs=2e-3)
  # a finite sample does not reach 0 against another sample: the floor the task reports
  small = [frechet.gaussian(rng.standard_normal((100, 4)) @ root.T) for _ in range(2)]
  assert frechet.frechet_distance(*small) > 0.01


def test_class_entropy_in_bits():
  assert frechet.entropy_bits(frechet.class_histogram(np.arange(1000) % 10, 10)) == \
      pytest.approx(np.log2(10), rel=1e-12)
  assert frechet.entropy_bits(frechet.class_histogram(np.full(50, 3), 10)) == 0.0
  assert frechet.entropy_bits(frechet.class_histogram(np.array([0, 7] * 5), 10)) == \
      pytest.approx(1.0)
  np.testing.assert_allclose(frechet.class_histogram(np.array([1, 1, 2, 9]), 10),
                             [0, .5, .25, 0, 0, 0, 0, 0, 0, .25])


# ------------------------------------------------------------------------------------ the losses

def test_losses_equal_their_formulas():
  rng = np.random.default_rng(0)
  real, fake = (jnp.asarray(rng.normal(0, 3, (64, 1)), jnp.float32) for _ in range(2))
  d_real, d_fake = jax.nn.sigmoid(real), jax.nn.sigmoid(fake)
  bce = -jnp.mean(jnp.log(d_real)) - jnp.mean(jnp.log(1 - d_fake))
  np.testing.assert_allclose(gan.discriminator_loss(real, fake), bce, rtol=1e-5)
  np.testing.assert_allclose(gan.discriminator_loss(real, fake),
                             optax.sigmoid_binary_cross_entropy(real, jnp.ones_like(real)).mean()
                             + optax.sigmoid_binary_cross_entropy(fake, jnp.zeros_like(fake))
                             .mean(), rtol=1e-6)
  np.testing.assert_allclose(gan.generator_loss(fake), -jnp.mean(jnp.log(d_fake)), rtol=1e-5)
  extreme = jnp.asarray([[1e4], [-1e4]])  # sigmoid rounds to 1 and 0: still finite, exact
  assert float(gan.generator_loss(extreme)) == pytest.approx(0.5e4, rel=1e-6)
  assert float(gan.discriminator_loss(extreme, extreme)) == pytest.approx(1e4, rel=1e-6)


def test_the_generator_loss_does_not_saturate_where_the_minimax_loss_does():
  """While D rejects G's samples (logit -10), d/dl of -log D(G(z)) is about -1 per sample, that
  of the minimax loss log(1 - D(G(z))) about -sigmoid(-10) = -4.5e-5 (Goodfellow et al.)."""
  rejected = jnp.full((4, 1), -10.0)
  non_saturating = jax.grad(gan.generator_loss)(rejected)
  minimax = jax.grad(lambda l: jnp.mean(jnp.log(1 - jax.nn.sigmoid(l))))(rejected)
  np.testing.assert_allclose(non_saturating, -(1 - jax.nn.sigmoid(-10.0)) / 4 * np.ones((4, 1)),
                             rtol=1e-6)
  assert np.all(np.abs(non_saturating) > 1e4 * np.abs(minimax))


# ------------------------------------------------------------------------------- the model

def test_dcgan_architecture_follows_the_guidelines():
  model = registry.build("dcgan")
  variables = jax.jit(model.init)(KEY, jnp.zeros((2, 28, 28, 1)))
  params = variables["params"]
  g, d = params["generator"], params["discriminator"]
  # batch norm after every layer but the generator's output and the discriminator's input
  assert sorted(k for k in g if k.startswith("BatchNorm")) == ["BatchNorm_0", "BatchNorm_1"]
  assert sorted(k for k in d if k.startswith("BatchNorm")) == ["BatchNorm_0"]
  assert g["Dense_0"]["kernel"].shape == (100, 7 * 7 * 128)
  assert g["ConvTranspose_0"]["kernel"].shape == (5, 5, 128, 64)
  assert d["Conv_0"]["kernel"].shape == (5, 5, 1, 64) and d["Dense_0"]["kernel"].shape == (
      7 * 7 * 128, 1)
  kernels = np.concatenate([np.ravel(leaf) for path, leaf in
                            jax.tree_util.tree_leaves_with_path(params)
                            if "kernel" in jax.tree_util.keystr(path)])
  assert abs(kernels.std() - 0.02) < 1e-3 and abs(kernels.mean()) < 1e-3  # N(0, 0.02)
  scale = np.asarray(g["BatchNorm_0"]["scale"])
  assert abs(scale.mean() - 1) < 0.01 and 0.01 < scale.std() < 0.03  # N(1, 0.02)
  z = jax.random.normal(KEY, (8, 100))
  images = jax.jit(lambda v, z: model.apply(v, z, method="generate"))(variables, z)
  assert images.shape == (8, 28, 28, 1) and float(jnp.abs(images).max()) <= 1.0  # tanh
  assert jax.eval_shape(model.apply, variables, images).shape == (8, 1)


# --------------------------------------------------------------------- the players' separation

@functools.lru_cache(maxsize=None)
def _state(features=(8, 16)):
  model = registry.build("dcgan", features=features)
  tx = optax.adam(2e-4, b1=0.5)
  return jax.jit(lambda key: gan_task.create_state(model, tx, key))(KEY)


def _images(batch: int = 16) -> jax.Array:
  return jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, 28, 28, 1)), jnp.float32)


def _changed(before, after) -> set[str]:
  """The players whose parameters, batch statistics or optimizer state differ."""
  out = set()
  for player in gan_task.PLAYERS:
    for field in ("params", "batch_stats", "opt_state"):
      a, b = getattr(before, field)[player], getattr(after, field)[player]
      if any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))):
        out.add(player)
  return out


def assert_updates_only(before, after, player: str) -> None:
  changed = _changed(before, after)
  assert changed == {player}, f"the update of the {player} changed {sorted(changed)}"
  for field in ("params", "batch_stats", "opt_state"):  # each of the three moved
    a, b = getattr(before, field)[player], getattr(after, field)[player]
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a),
                                                        jax.tree.leaves(b))), field


def _mixed_discriminator_step(state, images, key):
  """A wrong step: the discriminator's loss differentiated with respect to both players (no
  stop_gradient on G(z)) and applied to both."""
  model = state.model

  def loss_fn(params):
    variables = {"params": params, "batch_stats": state.batch_stats}
    fake, _ = model.apply(variables, gan_task._latents(key, len(images), model), train=True,
                          method="generate", mutable=["batch_stats"])
    real_logits, _ = model.apply(variables, images, train=True, mutable=["batch_stats"])
    fake_logits, updates = model.apply(variables, fake, train=True, mutable=["batch_stats"])
    return gan.discriminator_loss(real_logits, fake_logits), updates["batch_stats"]

  (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  opt_state = {p: state.tx.update(grads[p], state.opt_state[p], state.params[p])
               for p in gan_task.PLAYERS}
  return state.replace(
      params={p: optax.apply_updates(state.params[p], opt_state[p][0]) for p in opt_state},
      batch_stats=stats, opt_state={p: opt_state[p][1] for p in opt_state})


D_STEP = jax.jit(gan_task.discriminator_step)
G_STEP = jax.jit(gan_task.generator_step, static_argnums=1)
TRAIN_STEP = jax.jit(gan_task.train_step)


def test_each_update_changes_its_own_player_only():
  state = _state()
  after_d, d_metrics = D_STEP(state, _images(), KEY)
  assert_updates_only(state, after_d, "discriminator")
  after_g, g_metrics = G_STEP(after_d, 16, KEY)
  assert_updates_only(after_d, after_g, "generator")
  assert all(np.isfinite(float(v)) for v in {**d_metrics, **g_metrics}.values())
  # the negative control: a step that updates both players fails the same check
  mixed = jax.jit(_mixed_discriminator_step)(state, _images(), KEY)
  assert _changed(state, mixed) == {"generator", "discriminator"}
  with pytest.raises(AssertionError, match="changed .'discriminator', 'generator'."):
    assert_updates_only(state, mixed, "discriminator")


def test_train_step_is_a_discriminator_then_a_generator_update_with_folded_keys():
  state = _state()
  images = _images()
  stepped, metrics = TRAIN_STEP(state, {"image": images})
  key = jax.random.fold_in(state.rng, state.step)
  manual, d_metrics = D_STEP(state, images, jax.random.fold_in(key, 0))
  manual, g_metrics = G_STEP(manual, 16, jax.random.fold_in(key, 1))
  # Adam's first update is about 2e-4 * sign(gradient): 2e-5 allows round-off in the
  # smallest gradients, not a different draw (the keys swapped move most signs)
  for a, b in zip(jax.tree.leaves((stepped.params, stepped.batch_stats)),
                  jax.tree.leaves((manual.params, manual.batch_stats))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
  assert int(stepped.step) == 1
  np.testing.assert_allclose(metrics["loss"], d_metrics["d_loss"] + g_metrics["g_loss"],
                             rtol=1e-5)
  # a step of another index draws other codes
  other, _ = TRAIN_STEP(state.replace(step=jnp.ones((), jnp.int32)), {"image": images})
  moved = [np.asarray(s.params["generator"]["Dense_0"]["kernel"] - state.params["generator"][
      "Dense_0"]["kernel"]) for s in (stepped, other)]
  assert np.mean(np.sign(moved[0]) != np.sign(moved[1])) > 0.1


# ------------------------------------------------------------------------ the feature classifier

PENULTIMATE = jax.jit(gan_task.penultimate_features, static_argnums=0)


@functools.lru_cache(maxsize=None)
def _cnn_variables() -> dict:
  return jax.device_get(dict(jax.jit(registry.build("mnist_cnn").init)(
      KEY, jnp.zeros((1, 28, 28, 1)))))


def test_penultimate_features_are_the_input_of_the_last_layer():
  model = registry.build("mnist_cnn")
  variables = _cnn_variables()
  features, logits = PENULTIMATE(model, variables, _images(4))
  assert features.shape == (4, 256) and float(features.min()) >= 0.0  # ReLU units
  last = variables["params"]["Dense_1"]
  np.testing.assert_allclose(features @ last["kernel"] + last["bias"], logits, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(logits, jax.jit(model.apply)(variables, _images(4)), rtol=1e-5,
                             atol=1e-6)


def _classifier_run(directory, **overrides):
  """A directory shaped like a finished image_classification run of mnist_cnn on MNIST."""
  directory.mkdir()
  saved = {"task": "image_classification", "model": "mnist_cnn", "dataset": "mnist",
           "classes": [], "model_kwargs": {}, **overrides}
  (directory / "run_config.json").write_text(json.dumps(saved))
  (directory / classification.VARIABLES_FILE).write_bytes(
      flax.serialization.msgpack_serialize(_cnn_variables()))
  return directory


def test_a_finished_classification_run_is_loaded(tmp_path):
  model, variables = gan_task.load_classifier(str(_classifier_run(tmp_path / "c")), "mnist")
  features, _ = PENULTIMATE(model, variables, _images(4))
  assert features.shape == (4, 256)
  np.testing.assert_array_equal(variables["params"]["Dense_1"]["kernel"],
                                _cnn_variables()["params"]["Dense_1"]["kernel"])


@pytest.mark.parametrize("overrides, message", [
    (None, "holds no run (run_config.json missing)"),
    ({"dataset": "fashion_mnist"}, "is a run with task='image_classification', "
                                   "model='mnist_cnn', dataset='fashion_mnist'"),
    ({"model": "lenet5"}, "model='lenet5'"),
    ({"classes": [0, 1]}, "classes=[0, 1]"),
    ("unfinished", "holds no variables.msgpack: the run has not finished"),
])
def test_a_missing_or_wrong_feature_classifier_is_one_config_error(tmp_path, overrides,
                                                                   message):
  directory = tmp_path / "c"
  if overrides is not None:
    _classifier_run(directory, **({} if overrides == "unfinished" else overrides))
    if overrides == "unfinished":
      (directory / classification.VARIABLES_FILE).unlink()
  config = dcgan_mnist.get_config()
  config.feature_classifier = str(directory)
  with pytest.raises(ConfigError, match=re.escape(message)) as info:
    engine.validate(config)
  assert str(info.value).startswith(f"feature_classifier={str(directory)!r}")
  assert "accepted: '' (the task trains mnist_cnn itself)" in str(info.value)
  assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------ the task

def test_short_real_training_moves_the_distance_toward_the_floor(tmp_path):
  config = dcgan_mnist.get_config()
  config.update({"train_subset": 4096, "batch_size": 32, "num_steps": 160,
                 "eval_every_steps": 80, "classifier_steps": 100, "fd_samples": 1000,
                 "eval_fd_samples": 500, "grid_size": 16})
  config.model_kwargs.features = (16, 32)
  task, state = in_process.start(config)
  before = task.measure(state, 1000)["frechet_distance"]
  state, logs, records = in_process.train(task, state, evaluate_every=80)
  assert all(np.isfinite(v) for row in logs for v in row.values())
  assert 0.0 < logs[-1]["d_real"] < 1.0 and logs[-1]["d_loss"] < 2.0
  assert np.asarray(state.grids).shape == (2, 16, 28, 28) and np.asarray(state.grids).max() > 0
  summary, metrics, headline = task.finish(state, 160, tmp_path)
  test = metrics["test"]
  assert summary["classifier_test_accuracy"] > 0.85
  assert test["frechet_distance_floor"] < test["frechet_distance"] < 0.5 * before, (before, test)
  assert test["class_entropy_bits"] > 1.5 and test["class_entropy_bits_real"] > 3.2
  assert set(records["eval"]) == {"frechet_distance", "class_entropy_bits"}
  assert summary["param_count_generator"] + summary["param_count_discriminator"] == \
      summary["param_count"] and "Frechet distance" in headline
  for figure in ("samples.png", "samples_over_training.png", "samples/step_000080.png",
                 "samples/step_000160.png"):
    assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG", figure


@pytest.mark.parametrize("overrides, message", [
    ({"model": "vae_mlp"}, "unknown model 'vae_mlp'; registered gan models: dcgan"),
    ({"model_kwargs.features": (8, 8, 8)}, "model_kwargs.features=(8, 8, 8): the generator "
                                           "gives (1, 24, 24, 1)"),
    ({"fd_samples": 20_000}, "fd_samples=20000 exceeds the 10000 images"),
    ({"train_subset": 500, "fd_samples": 400, "eval_fd_samples": 1000},
     "eval_fd_samples=1000 exceeds the 500 images there are of the smaller of the training (500)"),
])
def test_bad_configs_are_refused(overrides, message):
  config = dcgan_fashion.get_config()
  for key, value in overrides.items():
    if key.startswith("model_kwargs."):
      config.model_kwargs[key.split(".", 1)[1]] = value
    else:
      config[key] = value
  with pytest.raises(ConfigError, match=re.escape(message)) as info:
    engine.validate(config)
  assert "\n" not in str(info.value)


def test_a_missing_classifier_is_one_error_line_and_exit_2(tmp_path):
  out = run(experiment_cmd("dcgan_mnist", tmp_path / "w",
                           f"--config.feature_classifier={tmp_path / 'none'}"))
  assert out.returncode == 2, out.stderr[-2000:]
  errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "holds no run (run_config.json missing)" in errors[0], errors
  assert "Traceback" not in out.stderr and not (tmp_path / "w").exists()
