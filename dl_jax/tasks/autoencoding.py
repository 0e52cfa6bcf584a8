"""Autoencoders of section 5.5.1 on MNIST and Fashion-MNIST, a task of the engine: a registered
model of the "autoencoder" family (encode, decode) trained to reconstruct its input.

Pixels are intensities in [0, 1] (uint8 / 255). The loss (eq. 5.27) is

    L(x, g(f(n(x)))) + code_l1 * sum_i |h_i|,   h = f(n(x)),

with L the mean squared error of sigmoid(logits) (`loss="mse"`) or the per-pixel cross-entropy
of the logits (`loss="bce"`), both per pixel; the L1 term (eq. 5.28, summed over the code,
averaged over the batch) makes the sparse autoencoder, and n(x) (eq. 5.29, `noise`) the
denoising one: Gaussian noise, masking (pixels set to 0) or salt and pepper (pixels set to 0
or 1), pure in (seed, step). The targets are always the clean images.

`finish` measures the representation on the test set against PCA with as many components as
the code has (fitted by `dl_jax.representation.linear` on the training images; its
reconstructions clipped to [0, 1] like the autoencoder's): the squared error per image of clean
inputs (summed over the 784 pixels: the figure Hinton and Salakhutdinov report), for a denoising
run also that of noisy inputs against the clean images (PCA given the same noisy inputs), a
linear probe (multinomial logistic regression on frozen codes of clean images, trained on the
training split), and the share of code units near zero (|h| < `sparsity_tolerance`); it draws
reconstructions and the test codes in 2-D (the first two principal axes of the codes when the
code is wider). The noise of the validation and test inputs is drawn once, from the seed.

The logged "loss" is the reconstruction term; "objective" adds the L1 term (eq. 5.27).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl_jax import plots
from dl_jax.data.images import mnist, pipeline
from dl_jax.engine import checks, sharding
from dl_jax.engine.task import jit_step
from dl_jax.errors import ConfigError
from dl_jax.models import registry
from dl_jax.models.spec import count_params
from dl_jax.representation import linear
from dl_jax.tasks import image_classification as classification

LOSSES = ("mse", "bce")
NOISES = ("none", "gaussian", "masking", "salt_and_pepper")
PIXELS = 28 * 28


def add_noise(key, images: jax.Array, kind: str, level: float) -> jax.Array:
  """n(x) of eq. 5.29 on images in [0, 1]: "gaussian" x + level * N(0, 1) clipped to [0, 1];
  "masking" a fraction `level` of the pixels set to 0; "salt_and_pepper" a fraction `level`
  set to 0 or 1 with equal probability; "none" x."""
  if kind == "none" or not level:
    return images
  k_where, k_value = jax.random.split(key)
  if kind == "gaussian":
    return jnp.clip(images + level * jax.random.normal(k_where, images.shape, images.dtype), 0, 1)
  hit = jax.random.bernoulli(k_where, level, images.shape)
  if kind == "masking":
    return jnp.where(hit, 0.0, images)
  if kind == "salt_and_pepper":
    salt = jax.random.bernoulli(k_value, 0.5, images.shape).astype(images.dtype)
    return jnp.where(hit, salt, images)
  raise ValueError(f"noise={kind!r}; accepted: {', '.join(NOISES)}")


def reconstruction_losses(logits: jax.Array, images: jax.Array) -> dict:
  """Per-example mean squared error of sigmoid(logits) and per-pixel cross-entropy (means over
  pixels), and the squared error summed over the image."""
  axes = tuple(range(1, images.ndim))
  squared = jnp.square(jax.nn.sigmoid(logits.astype(jnp.float32)) - images)
  bce = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), images)
  return {"mse": squared.mean(axes), "bce": bce.mean(axes), "sse": squared.sum(axes)}


def _encode_decode(module, x):
  h = module.encode(x)
  return h, module.decode(h)


def train_step(state, batch: dict, loss: str, code_l1: float, noise: str,
               noise_level: float):
  """One gradient step on the mean loss of `batch` (see the module docstring)."""
  step_rng = jax.random.fold_in(state.rng, state.step)
  images = batch["image"]
  inputs = add_noise(step_rng, images, noise, noise_level)

  def loss_fn(params):
    code, logits = state.apply_fn({"params": params}, inputs, method=_encode_decode)
    per_example = reconstruction_losses(logits, images)
    penalty = jnp.mean(jnp.sum(jnp.abs(code.astype(jnp.float32)), -1))
    total = per_example[loss].mean() + code_l1 * penalty
    return total, ({k: v.mean() for k, v in per_example.items()}, penalty)

  (_, (parts, penalty)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, opt_state=opt_state,
                            params=optax.apply_updates(state.params, updates))
  return new_state, {"loss": parts[loss], "objective": parts[loss] + code_l1 * penalty,
                     "mse": parts["mse"], "sse": parts["sse"], "code_l1": penalty,
                     "grad_norm": optax.tree.norm(grads)}


def eval_step(state, batch: dict) -> dict:
  """Masked sums over `batch`: the reconstruction losses of g(f(batch["input"])) against
  batch["image"]."""
  _, logits = state.apply_fn({"params": state.params}, batch["input"], method=_encode_decode)
  mask = batch["mask"]
  sums = {k: jnp.sum(v * mask) for k, v in reconstruction_losses(logits, batch["image"]).items()}
  return {**sums, "count": jnp.sum(mask)}


def unit_images(raw: dict) -> dict:
  """uint8 images -> float32 [N, 28, 28, 1] in [0, 1] (the pipeline keeps float data as is)."""
  out = dict(raw)
  for split in ("train", "test"):
    out[f"{split}_images"] = (raw[f"{split}_images"].astype(np.float32) / 255.0)[..., None]
  return out


class Autoencoding(classification.EpochTask):
  """`config.model` (an autoencoder) on `config.dataset`; `val_size` training images held out
  for validation, the test set at the end."""

  CHECKS = {
      **classification.EpochTask.CHECKS,
      "dataset": checks.one_of(*mnist.NAMES),
      "loss": checks.one_of(*LOSSES),
      "code_l1": checks.nonnegative_number,
      "noise": checks.one_of(*NOISES),
      "noise_level": checks.number(0.0, 1.0),
      "sparsity_tolerance": checks.positive_number,
      "probe_steps": checks.positive_int,
      "probe_l2": checks.nonnegative_number,
  }

  @classmethod
  def validate(cls, config):
    registry.get(config.model, family="autoencoder")
    registry.check_output_shape(config.model, config.model_kwargs.to_dict(),
                                "hyper-parameters that reconstruct 28x28 images (a "
                                "convolutional model needs 28 divisible by 2**len(features))")
    if (config.noise == "none") != (config.noise_level == 0):
      raise ConfigError(f"noise={config.noise!r} with noise_level={config.noise_level}: set both "
                        "(a noise and a level > 0) or neither (noise='none', noise_level=0)")

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.model = registry.build(config.model, **config.model_kwargs.to_dict())
    for key in ("batch_size", "eval_batch_size"):
      sharding.check_batch_size(config[key], mesh, key)
    raw = unit_images(mnist.load(config.dataset, config.data_dir or None))
    self.train, self.val, self.test = classification.image_splits(raw, config)
    self._epochs_over_train()
    self._train_step = jit_step(functools.partial(
        train_step, loss=config.loss, code_l1=float(config.code_l1), noise=config.noise,
        noise_level=float(config.noise_level)), donate_argnums=0)
    self._eval_step = jax.jit(eval_step)
    self._encode = jax.jit(lambda params, x: self.model.apply({"params": params}, x,
                                                              method="encode"))
    self._val_inputs = None

  def noisy(self, split: pipeline.Split, stream: int) -> np.ndarray:
    """The split's images through n(x), drawn once from (seed, stream): the same inputs at
    every evaluation."""
    key = jax.random.fold_in(jax.random.PRNGKey(self.config.seed), stream)
    return np.asarray(add_noise(key, jnp.asarray(split.images), self.config.noise,
                                float(self.config.noise_level)))

  def _eval(self, state, split: pipeline.Split, inputs: np.ndarray) -> dict:
    """Mean losses of g(f(inputs)) against the split's images."""
    sums = {}
    paired = pipeline.Split(np.concatenate([split.images, inputs], -1), split.labels)
    batches = pipeline.eval_batches(paired, self.config.eval_batch_size, jax.process_index(),
                                    jax.process_count())
    for batch in batches:
      image, noisy = np.split(batch["image"], 2, axis=-1)
      batch = {"image": image, "input": noisy, "mask": batch["mask"]}
      out = jax.device_get(self._eval_step(state, sharding.shard_batch(batch, self.mesh)))
      for k, v in out.items():
        sums[k] = sums.get(k, 0.0) + float(v)
    count = sums.pop("count")
    return {"loss": sums[self.config.loss] / count, **{k: v / count for k, v in sums.items()}}

  def evaluate(self, state, step):
    if self._val_inputs is None:
      self._val_inputs = self.noisy(self.val, 1)
    return state, {"val": self._eval(state, self.val, self._val_inputs)}

  def codes(self, params, images: np.ndarray) -> np.ndarray:
    """f(x) of clean images, in batches: float32 [N, code_size]."""
    return pipeline.map_batches(functools.partial(self._encode, params), images,
                                self.config.eval_batch_size)

  def finish(self, state, step, out_dir):
    config = self.config
    test = self._eval(state, self.test, self.test.images)
    noisy_test = self.noisy(self.test, 2)
    train_codes = self.codes(state.params, self.train.images)
    test_codes = self.codes(state.params, self.test.images)
    code_size = train_codes.shape[1]

    # PCA with as many components as the code (section 5.5.1's baseline)
    flat_train = self.train.images.reshape(len(self.train), -1)
    flat_test = self.test.images.reshape(len(self.test), -1)
    mean, components, _ = linear.pca_fit(flat_train, code_size)
    pca_test_codes = linear.pca_encode(flat_test, mean, components)
    pca_sse = self._pca_sse(flat_test, flat_test, mean, components)

    probe = functools.partial(linear.linear_probe, num_classes=mnist.NUM_CLASSES,
                              l2=config.probe_l2, steps=config.probe_steps)
    code_probe = probe(train_codes, self.train.labels, test_codes, self.test.labels)
    pca_probe = probe(linear.pca_encode(flat_train, mean, components), self.train.labels,
                      pca_test_codes, self.test.labels)
    near_zero = float(np.mean(np.abs(test_codes) < config.sparsity_tolerance))
    metrics = {"sse_per_image": test["sse"], "mse_per_pixel": test["mse"], "bce": test["bce"],
               "pca_sse_per_image": pca_sse,
               "probe_accuracy": code_probe["test_accuracy"],
               "pca_probe_accuracy": pca_probe["test_accuracy"],
               "code_near_zero": near_zero,
               "code_exact_zero": float(np.mean(test_codes == 0))}
    if config.noise != "none":  # the denoising task itself: noisy inputs, clean targets
      denoised = self._eval(state, self.test, noisy_test)
      metrics["denoised_sse_per_image"] = denoised["sse"]
      metrics["pca_denoised_sse_per_image"] = self._pca_sse(
          noisy_test.reshape(len(self.test), -1), flat_test, mean, components)
      metrics["noisy_input_sse_per_image"] = float(np.mean(np.sum(np.square(
          noisy_test - self.test.images), axis=(1, 2, 3))))
    if out_dir is not None:
      host_params = jax.device_get(state.params)  # every process holds them whole
      self._figures(host_params, test_codes, noisy_test, (mean, components), out_dir)
    summary = {"dataset": config.dataset, "code_size": code_size, "loss": config.loss,
               "code_l1": config.code_l1, "noise": config.noise,
               "noise_level": config.noise_level, "param_count": count_params(state.params),
               "test_size": len(self.test), **{f"test_{k}": v for k, v in metrics.items()}}
    headline = (f"test squared error/image {test['sse']:.2f} (PCA-{code_size} {pca_sse:.2f}), "
                f"linear probe {100 * code_probe['test_accuracy']:.2f}% "
                f"(PCA {100 * pca_probe['test_accuracy']:.2f}%), "
                f"code near zero {100 * near_zero:.1f}%")
    if "denoised_sse_per_image" in metrics:
      headline += (f"; from noisy inputs {metrics['denoised_sse_per_image']:.2f} (PCA "
                   f"{metrics['pca_denoised_sse_per_image']:.2f}, the noisy input itself "
                   f"{metrics['noisy_input_sse_per_image']:.2f})")
    return summary, {"test": {"loss": test["loss"], **metrics}}, headline

  @staticmethod
  def _pca_sse(inputs, targets, mean, components) -> float:
    """Squared error per image of PCA's reconstruction of `inputs` (clipped to [0, 1])."""
    recon = np.clip(linear.pca_reconstruct(linear.pca_encode(inputs, mean, components), mean,
                                           components), 0, 1)
    return float(np.mean(np.sum(np.square(recon - targets), -1)))

  def _figures(self, params, test_codes, noisy_test, pca, out_dir):
    """Test images, their noisy versions (denoising), the autoencoder's and PCA's
    reconstructions of the inputs it was trained on; the test codes in 2-D."""
    config, count = self.config, 10
    clean = self.test.images[:count]
    inputs = noisy_test[:count]
    _, logits = self.model.apply({"params": params}, inputs, method=_encode_decode)
    rows = {"input": clean[..., 0]}
    if config.noise != "none":
      rows[f"{config.noise} noise"] = inputs[..., 0]
    rows["autoencoder"] = np.asarray(jax.nn.sigmoid(logits))[..., 0]
    recon = linear.pca_reconstruct(linear.pca_encode(inputs.reshape(count, -1), *pca), *pca)
    rows[f"PCA-{test_codes.shape[1]}"] = np.clip(recon, 0, 1).reshape(-1, 28, 28)
    plots.image_rows(rows, out_dir / "reconstructions.png",
                     f"{config.experiment}: test images and their reconstructions")
    points = test_codes
    if points.shape[1] > 2:
      mean, components, _ = linear.pca_fit(points, 2)
      points = linear.pca_encode(points, mean, components)
    plots.embedding_2d(points, self.test.labels, out_dir / "codes_2d.png",
                       f"{config.experiment}: test codes"
                       + (" (first two principal axes)" if test_codes.shape[1] > 2 else ""))
