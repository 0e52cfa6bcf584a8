"""Autoregressive density estimation on statically binarized MNIST (the autoregressive models
and density estimation of the course overview, section 1.5), a task of the engine: a
registered model of the "autoregressive" family (`dl_jax.models.pixelcnn`: PixelCNN, gated
PixelCNN) trained by maximum likelihood.

The data are those of the VAE task: MNIST binarized once by Bernoulli sampling of the
intensities with `binarization_seed` (`dl_jax.data.images.binarized_mnist`); `val_size`
training images held out for validation, the 10,000 test images at the end.

The model gives one Bernoulli logit per pixel, the logit of pixel i a function of the pixels
before i in raster order, so -log p(x) = sum over the 784 pixels of the binary cross-entropy is
the exact negative log-likelihood ("loss", nats per image): each step minimizes its mean over
the batch; validation (every epoch) and test (at the end, every test image unless
`test_subset`) report it exactly, with no sampling, and also in bits per pixel (nats / (784 ln 2)).

Figures (at the end): `samples.png`, `num_samples` images drawn by ancestral sampling (784
sequential steps of one jitted `lax.fori_loop`, key fold_in(fold_in(seed, 4), pixel)), and
`completions.png`: the first `completion_images` test images, their top half given and the
bottom half sampled `completion_samples` times.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl_jax import plots
from dl_jax.data.images import binarized_mnist, pipeline
from dl_jax.engine import checks, sharding
from dl_jax.engine.task import jit_step
from dl_jax.errors import ConfigError
from dl_jax.models import pixelcnn, registry
from dl_jax.models.spec import count_params
from dl_jax.tasks import image_classification as classification
from dl_jax.tasks.vae import binary_images, save_grid

SAMPLE_STREAM, COMPLETION_STREAM = 4, 5  # fixed keys of the figures
PIXELS = 28 * 28


def train_step(state, batch: dict):
  """One gradient step on the mean exact NLL (nats per image) of `batch`."""
  x = batch["image"]

  def loss_fn(params):
    return pixelcnn.nll(state.apply_fn({"params": params}, x), x).mean()

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, opt_state=opt_state,
                            params=optax.apply_updates(state.params, updates))
  return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def eval_step(state, batch: dict) -> dict:
  """The masked sum of the exact NLL over `batch`, and the count."""
  x = batch["image"]
  nll = pixelcnn.nll(state.apply_fn({"params": state.params}, x), x)
  return {"nll": jnp.sum(nll * batch["mask"]), "count": jnp.sum(batch["mask"])}


def bits_per_pixel(nats_per_image: float) -> float:
  return nats_per_image / (PIXELS * np.log(2.0))


class Autoregressive(classification.EpochTask):
  """`config.model` (an autoregressive model) on statically binarized MNIST; see the module
  docstring."""

  CHECKS = {
      **classification.EpochTask.CHECKS,
      "binarization_seed": checks.nonnegative_int("the first binarization"),
      "num_samples": checks.nonnegative_int("no samples figure"),
      "completion_images": checks.nonnegative_int("no completions figure"),
      "completion_samples": checks.positive_int,
  }

  @classmethod
  def validate(cls, config):
    spec = registry.get(config.model, family="autoregressive")
    kwargs = spec.hyperparameters(**config.model_kwargs.to_dict())
    for key in ("first_kernel_size", "kernel_size"):
      if kwargs[key] % 2 == 0:
        raise ConfigError(f"model_kwargs.{key}={kwargs[key]} must be odd (a kernel centred on "
                          "its pixel); accepted: 1, 3, 5, ...")
    if config.model == "pixelcnn" and kwargs["features"] < 2:
      raise ConfigError(f"model_kwargs.features={kwargs['features']} must be >= 2 (the residual "
                        "blocks' bottleneck has features // 2 maps)")
    registry.check_output_shape(config.model, config.model_kwargs.to_dict(),
                                "hyper-parameters of a model that keeps the 28x28 image")

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.model = registry.build(config.model, **config.model_kwargs.to_dict())
    for key in ("batch_size", "eval_batch_size"):
      sharding.check_batch_size(config[key], mesh, key)
    raw = binary_images(binarized_mnist.load(config.binarization_seed, config.data_dir or None))
    self.train, self.val, self.test = classification.image_splits(raw, config)
    self._epochs_over_train()
    self._train_step = jit_step(train_step, donate_argnums=0)
    self._eval_step = jax.jit(eval_step)
    self._sample = jax.jit(lambda params, key, canvas, start: pixelcnn.ancestral_sample(
        lambda x: self.model.apply({"params": params}, x), key, canvas, start))

  def _key(self, stream: int):
    return jax.random.fold_in(jax.random.PRNGKey(self.config.seed), stream)

  def _eval(self, state, split: pipeline.Split) -> dict:
    """The mean exact NLL over a split, in nats per image and bits per pixel."""
    total, count = 0.0, 0.0
    for batch in pipeline.eval_batches(split, self.config.eval_batch_size, jax.process_index(),
                                       jax.process_count()):
      out = jax.device_get(self._eval_step(state, sharding.shard_batch(batch, self.mesh)))
      total, count = total + float(out["nll"]), count + float(out["count"])
    return {"loss": total / count, "bits_per_pixel": bits_per_pixel(total / count)}

  def evaluate(self, state, step):
    return state, {"val": self._eval(state, self.val)}

  def finish(self, state, step, out_dir):
    config = self.config
    test = self._eval(state, self.test)
    val = self._eval(state, self.val) if len(self.val) else {}
    if out_dir is not None:
      self._figures(jax.device_get(state.params), out_dir)
    summary = {"model": config.model, "binarization": f"static, seed {config.binarization_seed}",
               "param_count": count_params(state.params), "test_size": len(self.test),
               "test_nll": test["loss"], "test_bits_per_pixel": test["bits_per_pixel"],
               "val_nll": val.get("loss"), "batch_size": config.batch_size}
    headline = (f"test NLL {test['loss']:.2f} nats per image ({test['bits_per_pixel']:.4f} "
                f"bits per pixel, exact, {len(self.test)} test images)")
    return summary, {"test": test}, headline

  def _figures(self, params, out_dir):
    """samples.png and completions.png (see the module docstring)."""
    config = self.config
    if config.num_samples:
      canvas = jnp.zeros((config.num_samples, 28, 28, 1), jnp.float32)
      samples = np.asarray(self._sample(params, self._key(SAMPLE_STREAM), canvas, 0))[..., 0]
      save_grid(samples, int(np.ceil(np.sqrt(config.num_samples))), out_dir / "samples.png",
                f"{config.experiment}: ancestral samples, 784 sequential steps")
    count, repeats = min(config.completion_images, len(self.test)), config.completion_samples
    if count:
      images = self.test.images[:count]
      given = images.copy()
      given[:, 14:] = 0.0
      canvas = jnp.asarray(np.repeat(given, repeats, axis=0))
      completed = np.asarray(self._sample(params, self._key(COMPLETION_STREAM), canvas,
                                          14 * 28))[..., 0].reshape(count, repeats, 28, 28)
      shown = given[..., 0].copy()
      shown[:, 14:] = 0.5  # the hidden half in grey
      rows = {"test image": images[..., 0], "top half given": shown}
      rows.update({f"completion {r + 1}": completed[:, r] for r in range(repeats)})
      plots.image_rows(rows, out_dir / "completions.png",
                       f"{config.experiment}: bottom halves sampled pixel by pixel")
