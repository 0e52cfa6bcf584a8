"""The variational autoencoder (`dl_jax.models.vae`, `dl_jax.tasks.vae`) and statically binarized
MNIST: the analytic KL against Monte Carlo, the reparameterized ELBO gradient against a chain
rule written out and finite differences (with a negative control that stops the gradient
through the sample), the IWAE bound (k = 1 is the ELBO in expectation, monotone in k, its
chunking, and its limit the exact log p(x) of a 1-D latent model), the Bernoulli binarization,
a short real training, and the config errors."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax import engine
from dl_jax.data.images import binarized_mnist, mnist
from dl_jax.errors import ConfigError
from dl_jax.models import registry, vae
from dl_jax.tasks import vae as vae_task
from experiments.configs import vae_mlp, vae_mlp_2d
from tests import in_process
from tests.conftest import experiment_cmd, run

KEY = jax.random.PRNGKey(0)


def _images(count: int, seed: int = 0) -> jax.Array:
  """`count` binary images [count, 28, 28, 1]: Bernoulli(0.2) pixels."""
  bits = np.random.default_rng(seed).random((count, 28, 28, 1)) < 0.2
  return jnp.asarray(bits, jnp.float32)


def _model(name: str = "vae_mlp", **kwargs):
  model = registry.build(name, **kwargs)
  params = model.init(KEY, _images(1))["params"]
  encode = lambda x: model.apply({"params": params}, x, method="encode")
  decode = lambda z: model.apply({"params": params}, z, method="decode")
  return encode, decode


# ------------------------------------------------------------------------------- the mechanism

def test_analytic_kl_equals_its_monte_carlo_estimate():
  k_mean, k_var, k_z = jax.random.split(KEY, 3)
  mean = jax.random.normal(k_mean, (4, 5))
  log_variance = jax.random.uniform(k_var, (4, 5), minval=-2.0, maxval=1.0)
  z = vae.reparameterize(k_z, mean, log_variance, (200_000,))
  # KL(q || p) = E_q[log q(z) - log p(z)]
  log_ratio = (vae.gaussian_log_density(z, mean, log_variance)
               - vae.standard_normal_log_density(z))
  estimate, stderr = log_ratio.mean(0), log_ratio.std(0) / np.sqrt(len(z))
  analytic = vae.gaussian_kl(mean, log_variance)
  assert np.all(np.abs(estimate - analytic) < 4 * stderr + 1e-4), (estimate, analytic, stderr)
  assert np.all(analytic > 0.1)
  assert float(vae.gaussian_kl(jnp.zeros((1, 3)), jnp.zeros((1, 3)))[0]) == 0.0  # q = p


def test_bernoulli_log_likelihood_from_logits_is_exact_and_stable():
  logits = jnp.linspace(-8.0, 8.0, 7)[None]
  x = jnp.asarray([[0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]])
  p = jax.nn.sigmoid(logits)
  direct = jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log(1 - p), -1)
  np.testing.assert_allclose(vae.bernoulli_log_likelihood(logits, x), direct, rtol=1e-5)
  # where sigmoid rounds to 0 or 1 the direct formula gives -inf; from logits it is -|l|
  extreme = vae.bernoulli_log_likelihood(jnp.asarray([[1e4, -1e4]]), jnp.asarray([[0.0, 1.0]]))
  np.testing.assert_allclose(extreme, [-2e4], rtol=1e-6)


def _linear_vae(params):
  """A VAE with affine encoder and decoder: q(z|x) = N(A x + a, diag exp(B x + b)),
  p(x|z) = Bernoulli(sigmoid(W z + c))."""
  encode = lambda x: (x @ params["A"] + params["a"], x @ params["B"] + params["b"])
  decode = lambda z: z @ params["W"] + params["c"]
  return encode, decode


def _linear_params(dtype, pixels=6, latent=3):
  keys = jax.random.split(KEY, 6)
  shapes = {"A": (pixels, latent), "a": (latent,), "B": (pixels, latent), "b": (latent,),
            "W": (latent, pixels), "c": (pixels,)}
  return {k: 0.5 * jax.random.normal(key, shape, dtype)
          for key, (k, shape) in zip(keys, shapes.items())}


def _elbo_of(params, x, key, reparameterize=vae.reparameterize):
  encode, decode = _linear_vae(params)
  mean, log_variance = encode(x)
  z = reparameterize(key, mean, log_variance)
  return jnp.sum(vae.bernoulli_log_likelihood(decode(z), x) - vae.gaussian_kl(mean,
                                                                             log_variance))


def test_elbo_gradient_through_the_reparameterization():
  """jax.grad of `vae.elbo` equals the chain rule through z = m + s * eps written out, and
  central finite differences of the same (fixed-eps) estimate in float64."""
  with jax.enable_x64(True):
    params = _linear_params(jnp.float64)
    x = jnp.asarray(np.random.default_rng(1).random((4, 6)) < 0.5, jnp.float64)
    key = jax.random.PRNGKey(3)
    objective = lambda p: jnp.sum(vae.elbo(key, x, *_linear_vae(p))["elbo"])
    grads = jax.grad(objective)(params)

    # The chain rule by hand: d/dm = g - m, d/dlog s^2 = g * eps * s / 2 - (s^2 - 1) / 2 with
    # g = dlog p(x|z)/dz = W (x - sigmoid(W z + c)).
    encode, decode = _linear_vae(params)
    mean, log_variance = encode(x)
    eps = jax.random.normal(key, mean.shape, jnp.float64)
    sigma = jnp.exp(0.5 * log_variance)
    z = mean + sigma * eps
    residual = x - jax.nn.sigmoid(decode(z))  # dlog p / dlogits
    g = residual @ params["W"].T
    d_mean = g - mean
    d_log_variance = 0.5 * g * eps * sigma - 0.5 * (jnp.exp(log_variance) - 1)
    by_hand = {"A": x.T @ d_mean, "a": d_mean.sum(0), "B": x.T @ d_log_variance,
               "b": d_log_variance.sum(0), "W": z.T @ residual, "c": residual.sum(0)}
    for name in params:
      np.testing.assert_allclose(grads[name], by_hand[name], rtol=1e-10, atol=1e-12,
                                 err_msg=name)

    h = 1e-6
    for name in ("A", "b", "W"):
      flat = params[name].ravel()
      for i in (0, flat.size - 1):
        bump = lambda d: {**params, name: flat.at[i].add(d).reshape(params[name].shape)}
        numeric = (objective(bump(h)) - objective(bump(-h))) / (2 * h)
        np.testing.assert_allclose(grads[name].ravel()[i], numeric, rtol=1e-6, atol=1e-8,
                                   err_msg=f"{name}[{i}]")


def test_negative_control_a_sample_without_gradient_gives_a_wrong_gradient():
  """Stopping the gradient at z (no reparameterization) leaves only the KL's gradient in the
  encoder: the result differs from the true gradient, which the finite differences confirm."""
  with jax.enable_x64(True):
    params = _linear_params(jnp.float64)
    x = jnp.asarray(np.random.default_rng(1).random((4, 6)) < 0.5, jnp.float64)
    key = jax.random.PRNGKey(3)
    stopped = lambda k, m, lv: jax.lax.stop_gradient(vae.reparameterize(k, m, lv))
    right = jax.grad(_elbo_of)(params, x, key)
    wrong = jax.grad(_elbo_of)(params, x, key, stopped)
    for name in ("A", "a", "B", "b"):  # the encoder's
      gap = np.max(np.abs(np.asarray(right[name]) - np.asarray(wrong[name])))
      assert gap > 1e-2 * np.max(np.abs(np.asarray(right[name]))), name
    for name in ("W", "c"):  # the decoder's gradient does not go through z
      np.testing.assert_allclose(right[name], wrong[name], rtol=1e-12)
    h, i = 1e-6, 0
    flat = params["a"]
    numeric = (_elbo_of({**params, "a": flat.at[i].add(h)}, x, key)
               - _elbo_of({**params, "a": flat.at[i].add(-h)}, x, key)) / (2 * h)
    assert abs(float(right["a"][i]) - float(numeric)) < 1e-6
    assert abs(float(wrong["a"][i]) - float(numeric)) > 1e-2


# ------------------------------------------------------------------------------ the IWAE bound

def _bounds(encode, decode, x, k, repeats, chunk_size=500):
  """[repeats, batch] IWAE bounds with k samples, each repeat from its own key."""
  bound = jax.jit(lambda key: vae.iwae_bound(key, x, encode, decode, k, chunk_size))
  return np.stack([np.asarray(bound(jax.random.PRNGKey(r))) for r in range(repeats)])


def test_iwae_with_one_sample_is_the_elbo_in_expectation():
  encode, decode = _model(latent_dim=5)
  x = _images(8)
  k1 = _bounds(encode, decode, x, 1, 1000).mean(1)  # the mean over the 8 images, per repeat
  elbo = jax.jit(lambda key: vae.elbo(key, x, encode, decode)["elbo"].mean())
  estimates = np.asarray([elbo(jax.random.PRNGKey(10_000 + r)) for r in range(1000)])
  stderr = np.sqrt(k1.var() / len(k1) + estimates.var() / len(estimates))
  assert abs(k1.mean() - estimates.mean()) < 4 * stderr, (k1.mean(), estimates.mean(), stderr)


def test_iwae_bound_does_not_decrease_with_k():
  encode, decode = _model(latent_dim=5)
  x = _images(8)
  means = {k: _bounds(encode, decode, x, k, 20).mean() for k in (1, 10, 100, 1000)}
  values = list(means.values())
  assert all(b > a for a, b in zip(values, values[1:])), means
  assert values[-1] - values[0] > 1.0, means  # a random q is far from the posterior


def test_iwae_chunks_are_one_logsumexp_over_all_samples():
  """k = 23 in chunks of 5 (the last one part-masked) equals logsumexp over the same 23
  log-weights minus log 23."""
  encode, decode = _model(latent_dim=5)
  x = _images(3)
  key = jax.random.PRNGKey(7)
  chunked = vae.iwae_bound(key, x, encode, decode, 23, chunk_size=5)
  mean, log_variance = encode(x)
  log_w = jnp.concatenate([vae.log_importance_weights(jax.random.fold_in(key, i), x, mean,
                                                      log_variance, decode, 5)
                           for i in range(5)])[:23]
  np.testing.assert_allclose(chunked, jax.nn.logsumexp(log_w, 0) - np.log(23), rtol=1e-6)


def test_iwae_bound_reaches_the_exact_log_likelihood_of_a_1d_latent_model():
  """With one latent unit log p(x) = log integral p(x|z) N(z; 0, 1) dz is a quadrature: the
  bound at k = 5000 is within 0.2 nats of it, and over a nat below it at k = 1 (in
  expectation)."""
  encode, decode = _model(latent_dim=1, hidden=(16,))
  x = _images(4)
  grid = jnp.linspace(-10.0, 10.0, 40_001)[:, None]
  log_joint = jnp.stack([vae.bernoulli_log_likelihood(decode(grid), jnp.broadcast_to(
      image, (len(grid), 28, 28, 1))) for image in x]) + vae.standard_normal_log_density(grid)
  exact = jax.nn.logsumexp(log_joint, 1) + jnp.log(grid[1, 0] - grid[0, 0])
  large = _bounds(encode, decode, x, 5000, 1)[0]
  np.testing.assert_allclose(large, exact, atol=0.2)
  gap = exact - _bounds(encode, decode, x, 1, 200).mean(0)
  assert np.all(gap > 1.0), gap  # the ELBO is well below: the test can tell them apart


# -------------------------------------------------------------------------- static binarization

@pytest.fixture(scope="module")
def raw_mnist():
  return mnist.load("mnist")


@pytest.fixture(scope="module")
def binarized():
  return binarized_mnist.load(0)


def test_binarization_is_bernoulli_sampling_of_the_intensity(raw_mnist, binarized):
  for split in ("train", "test"):
    bits, gray = binarized[f"{split}_images"], raw_mnist[f"{split}_images"]
    assert bits.dtype == np.uint8 and set(np.unique(bits)) == {0, 1}
    intensity = gray / 255.0
    assert abs(bits.mean() - intensity.mean()) < 2e-3  # E[bit] = intensity
    dim = (intensity > 0) & (intensity < 0.5)
    assert 0.05 < bits[dim].mean() < 0.5  # no threshold: dim pixels are often 1 ...
    assert bits[(intensity > 0.5) & (intensity < 1)].mean() < 0.99  # ... bright ones often 0
    assert bits[intensity == 0].max() == 0 and bits[gray == 255].min() == 1
    for low in (0.1, 0.3, 0.5, 0.7):  # the share of ones follows the intensity
      band = (intensity >= low) & (intensity < low + 0.1)
      assert low - 0.01 < bits[band].mean() < low + 0.11, (split, low)
  np.testing.assert_array_equal(binarized["train_labels"], raw_mnist["train_labels"])
  np.testing.assert_array_equal(binarized["test_labels"], raw_mnist["test_labels"])


def test_binarization_is_fixed_by_its_seed_and_test_from_test_images_only(raw_mnist,
                                                                          binarized):
  small = {k: v[:500] for k, v in raw_mnist.items()}
  again = binarized_mnist.build(small, 0)
  for split in ("train", "test"):
    np.testing.assert_array_equal(again[f"{split}_images"],
                                  binarized[f"{split}_images"][:500])
  other_seed = binarized_mnist.build(small, 1)
  assert np.mean(other_seed["test_images"] != again["test_images"]) > 0.01
  # the test bits depend on the test images alone, not on the training images
  no_train = {**small, "train_images": np.zeros_like(small["train_images"])}
  np.testing.assert_array_equal(binarized_mnist.build(no_train, 0)["test_images"],
                                again["test_images"])
  path = binarized_mnist.fetch.data_dir(None) / "binarized_mnist_s0.npz"
  sidecar = path.with_name(path.name + ".sha256").read_text().split()[0]
  assert sidecar == binarized_mnist.fetch.sha256_file(path)


def test_bad_binarization_seed_is_one_config_error():
  with pytest.raises(ConfigError, match=r"^binarization seed=-1 must be an integer >= 0$"):
    binarized_mnist.load(-1)


# ------------------------------------------------------------------------------------ the task

def _short_config(**overrides):
  config = vae_mlp.get_config()
  config.update({"val_size": 500, "train_subset": 4096, "test_subset": 500, "batch_size": 128,
                 "num_epochs": 3, "lr_schedule": "constant", "iwae_samples": 50,
                 "iwae_chunk": 25, "iwae_batch_size": 50, "nll_test_size": 100,
                 **overrides})
  config.model_kwargs.latent_dim = vae_mlp_2d.get_config().model_kwargs.latent_dim  # 2
  return config


def test_short_training_lowers_the_negative_elbo_and_finishes(tmp_path):
  config = _short_config()
  task, state = in_process.start(config)
  _, before = task.evaluate(state, 0)
  state, logs, _ = in_process.train(task, state)
  _, after = task.evaluate(state, 0)
  assert before["val"]["loss"] > 500 and after["val"]["loss"] < 200, (before, after)
  first, last = logs[0], logs[-1]
  assert abs(first["loss"] - first["reconstruction"] - first["kl"]) < 1e-3 * first["loss"]
  assert last["loss"] < 0.4 * first["loss"] and last["kl"] > 1.0
  summary, metrics, headline = task.finish(state, task.plan().total_steps, tmp_path)
  test = metrics["test"]
  assert test["nll"] < test["nll_subset_neg_elbo"]  # the importance-sampled bound is tighter
  assert test["nll"] > test["nll_subset_neg_elbo"] - 30
  assert summary["latent_dim"] == 2 and summary["nll_test_size"] == 100 and "NLL" in headline
  for figure in ("samples", "reconstructions", "latent_manifold", "latent_codes"):
    assert (tmp_path / f"{figure}.png").read_bytes()[:4] == b"\x89PNG", figure


@pytest.mark.parametrize("overrides, message", [
    ({"model": "ae_mlp"}, "unknown model 'ae_mlp'; registered vae models: vae_conv, vae_mlp "
                          "('ae_mlp' is an autoencoder model)"),
    ({"nll_test_size": 20_000}, "nll_test_size=20000 exceeds the 10000 test images"),
    ({"test_subset": 50, "nll_test_size": 100}, "nll_test_size=100 exceeds the 50 test images"),
    ({"model": "vae_conv", "model_kwargs.features": (8, 8, 8)},
     "model_kwargs.features=(8, 8, 8): vae_conv gives"),
])
def test_bad_configs_are_refused(overrides, message):
  config = vae_mlp.get_config()
  for key, value in overrides.items():
    if key.startswith("model_kwargs."):
      config.model_kwargs[key.split(".", 1)[1]] = value
    else:
      config[key] = value
  with pytest.raises(ConfigError, match=re.escape(message)) as info:
    vae_task.VAE.validate(config)
  assert "\n" not in str(info.value)


@pytest.mark.parametrize("key, value, message", [
    ("iwae_samples", 0, "iwae_samples=0 must be a positive integer"),
    ("manifold_size", 1, "manifold_size=1 must be an integer >= 2"),
    ("binarization_seed", -2, "binarization_seed=-2 must be 0 (the first binarization) or a "
                              "positive integer"),
    ("model_kwargs.latent_dim", 0, "model_kwargs.latent_dim=0 must be an integer >= 1"),
])
def test_bad_values_are_refused_by_the_checks(key, value, message):
  config = vae_mlp.get_config()
  if key.startswith("model_kwargs."):
    config.model_kwargs[key.split(".", 1)[1]] = value
  else:
    config[key] = value
  with pytest.raises(ConfigError, match="^" + re.escape(message)):
    engine.validate(config)


def test_a_bad_value_is_one_error_line_and_exit_2(tmp_path):
  out = run(experiment_cmd("vae_mlp", tmp_path / "w", "--config.iwae_chunk=-3"))
  assert out.returncode == 2, out.stderr[-2000:]
  errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
  assert errors == ["error: iwae_chunk=-3 must be a positive integer"], errors
  assert "Traceback" not in out.stderr and not (tmp_path / "w").exists()
