"""Variational autoencoders on statically binarized MNIST (Kingma and Welling 2014; the
generative models and density estimation of the course overview, section 1.5), a task of the
engine: a registered model of the "vae" family trained by maximizing the ELBO.

The data are MNIST binarized once by Bernoulli sampling of the intensities with
`binarization_seed` (`dl_jax.data.images.binarized_mnist`); `val_size` training images held out
for validation as in the other MNIST tasks, the 10,000 test images at the end.

Each step minimizes the mean negative ELBO of a batch, -log p(x|z) + KL(q(z|x) || N(0, I)),
with one reparameterized sample per image and the analytic KL (`dl_jax.models.vae.elbo`);
"loss" is the -ELBO in nats per image, "reconstruction" the -log p(x|z) and "kl" the KL term.
Validation (every epoch) and test use the same estimator with fixed keys. At the end the test
negative log-likelihood is estimated by importance sampling, -log (1/k) sum_i p(x, z_i) /
q(z_i|x) with k = `iwae_samples` (5000 in Burda et al. 2016, section 5.1), on the first
`nll_test_size` test images (0: all 10,000; with k = 5000 the MLP VAE takes about 65 s per
1,000 images on 2 CPU cores), beside the -ELBO of the same images.

Figures: samples (Bernoulli means of decode(z), z ~ N(0, I)), test images and their
reconstructions (from the mean code), and for a 2-D latent space the learned manifold (decoded
means on a grid of Gaussian quantiles, K&W figure 4) and the test codes coloured by digit.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy import special

from dl_jax import plots
from dl_jax.data.images import binarized_mnist, mnist, pipeline
from dl_jax.engine import checks, sharding
from dl_jax.engine.task import jit_step
from dl_jax.errors import ConfigError
from dl_jax.models import registry
from dl_jax.models import vae
from dl_jax.models.spec import count_params
from dl_jax.tasks import image_classification as classification

VAL_STREAM, TEST_STREAM, NLL_STREAM, SAMPLE_STREAM = 1, 2, 3, 4  # fixed evaluation keys
TEST_SIZE = mnist.SPEC["test_labels"][0][0]


def negative_elbo(module, x, key) -> dict:
  """Per-example -ELBO, reconstruction term -log p(x|z) and KL of `module` on `x`."""
  terms = vae.elbo(key, x, module.encode, module.decode)
  return {"neg_elbo": -terms["elbo"], "reconstruction": -terms["log_likelihood"],
          "kl": terms["kl"]}


def iwae_nll(module, x, key, num_samples: int, chunk_size: int) -> jax.Array:
  """Per-example -log (1/k) sum_i p(x, z_i) / q(z_i|x), k = num_samples."""
  return -vae.iwae_bound(key, x, module.encode, module.decode, num_samples, chunk_size)


def train_step(state, batch: dict):
  """One gradient step on the mean -ELBO of `batch`, its sample drawn from fold_in(rng, step)."""
  key = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    terms = state.apply_fn({"params": params}, batch["image"], key, method=negative_elbo)
    terms = {k: v.mean() for k, v in terms.items()}
    return terms["neg_elbo"], terms

  (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, opt_state=opt_state,
                            params=optax.apply_updates(state.params, updates))
  return new_state, {"loss": terms["neg_elbo"], "reconstruction": terms["reconstruction"],
                     "kl": terms["kl"], "grad_norm": optax.tree.norm(grads)}


def eval_step(state, batch: dict, key) -> dict:
  """Masked sums over `batch` of the -ELBO and its two terms."""
  terms = state.apply_fn({"params": state.params}, batch["image"], key, method=negative_elbo)
  mask = batch["mask"]
  return {**{k: jnp.sum(v * mask) for k, v in terms.items()}, "count": jnp.sum(mask)}


def binary_images(raw: dict) -> dict:
  """uint8 {0, 1} images -> float32 [N, 28, 28, 1] (the pipeline keeps float data as is)."""
  out = dict(raw)
  for split in ("train", "test"):
    out[f"{split}_images"] = raw[f"{split}_images"].astype(np.float32)[..., None]
  return out


def tile(images: np.ndarray, columns: int) -> np.ndarray:
  """Images [N, H, W] as one grid image, `columns` wide, 1-pixel white gaps."""
  n, h, w = images.shape
  rows = -(-n // columns)
  grid = np.ones((rows * (h + 1) - 1, columns * (w + 1) - 1), np.float32)
  for i, image in enumerate(images):
    r, c = divmod(i, columns)
    grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = image
  return grid


def save_grid(images: np.ndarray, columns: int, out_path, title: str) -> None:
  """Grey-scale images [N, H, W] in [0, 1] as one PNG grid, two screen pixels per pixel."""
  plt = plots.pyplot()
  grid = tile(images, columns)
  fig = plt.figure(figsize=(grid.shape[1] / 50, grid.shape[0] / 50 + 0.4), dpi=100)
  ax = fig.add_axes((0, 0, 1, grid.shape[0] / (grid.shape[0] + 20)))
  ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
  ax.axis("off")
  fig.suptitle(title, fontsize=8)
  fig.savefig(out_path)
  plt.close(fig)


class VAE(classification.EpochTask):
  """`config.model` (a VAE) on statically binarized MNIST; see the module docstring."""

  CHECKS = {
      **classification.EpochTask.CHECKS,
      "binarization_seed": checks.nonnegative_int("the first binarization"),
      "iwae_samples": checks.positive_int,
      "iwae_chunk": checks.positive_int,
      "iwae_batch_size": checks.positive_int,
      "nll_test_size": checks.nonnegative_int("the whole test set"),
      "manifold_size": checks.int_at_least(2),
  }

  @classmethod
  def validate(cls, config):
    registry.get(config.model, family="vae")
    registry.check_output_shape(config.model, config.model_kwargs.to_dict(),
                                "hyper-parameters that reconstruct 28x28 images (a "
                                "convolutional model needs 28 divisible by 2**len(features))")
    test_size = min(config.test_subset or TEST_SIZE, TEST_SIZE)
    if config.nll_test_size > test_size:
      raise ConfigError(f"nll_test_size={config.nll_test_size} exceeds the {test_size} test "
                        "images; accepted: 0 (all of them) or 1.." + str(test_size))

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.model = registry.build(config.model, **config.model_kwargs.to_dict())
    self.latent_dim = self.model.latent_dim
    for key in ("batch_size", "eval_batch_size", "iwae_batch_size"):
      sharding.check_batch_size(config[key], mesh, key)
    raw = binary_images(binarized_mnist.load(config.binarization_seed, config.data_dir or None))
    self.train, self.val, self.test = classification.image_splits(raw, config)
    self._epochs_over_train()
    self._train_step = jit_step(train_step, donate_argnums=0)
    self._eval_step = jax.jit(eval_step)
    self._iwae_nll = jax.jit(lambda params, x, key: self.model.apply(
        {"params": params}, x, key, config.iwae_samples, config.iwae_chunk, method=iwae_nll))

  def _key(self, stream: int, index: int = 0):
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(self.config.seed), stream),
                              index)

  def _eval(self, state, split: pipeline.Split, stream: int) -> dict:
    """Mean -ELBO, reconstruction and KL over a split, batch i's samples from key (stream, i)."""
    sums = {}
    batches = pipeline.eval_batches(split, self.config.eval_batch_size, jax.process_index(),
                                    jax.process_count())
    for i, batch in enumerate(batches):
      out = jax.device_get(self._eval_step(state, sharding.shard_batch(batch, self.mesh),
                                           self._key(stream, i)))
      for k, v in out.items():
        sums[k] = sums.get(k, 0.0) + float(v)
    count = sums.pop("count")
    return {"loss": sums["neg_elbo"] / count, "reconstruction": sums["reconstruction"] / count,
            "kl": sums["kl"] / count}

  def evaluate(self, state, step):
    return state, {"val": self._eval(state, self.val, VAL_STREAM)}

  def _nll(self, params, images: np.ndarray) -> np.ndarray:
    """The IWAE estimate of -log p(x) of each image (batch i's samples from key (NLL, i))."""
    size, parts = self.config.iwae_batch_size, []
    for i, start in enumerate(range(0, len(images), size)):
      chunk = images[start:start + size]
      padded = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]),
                                               chunk.dtype)])
      parts.append(np.asarray(self._iwae_nll(params, padded, self._key(NLL_STREAM, i)))
                   [:len(chunk)])
    return np.concatenate(parts)

  def finish(self, state, step, out_dir):
    config = self.config
    test = self._eval(state, self.test, TEST_STREAM)
    nll_size = config.nll_test_size or len(self.test)
    subset = pipeline.Split(self.test.images[:nll_size], self.test.labels[:nll_size])
    subset_elbo = self._eval(state, subset, TEST_STREAM)
    nll = float(np.mean(self._nll(state.params, subset.images)))
    metrics = {"neg_elbo": test["loss"], "reconstruction": test["reconstruction"],
               "kl": test["kl"], "nll": nll, "nll_subset_neg_elbo": subset_elbo["loss"]}
    if out_dir is not None:
      self._figures(jax.device_get(state.params), out_dir)
    summary = {"model": config.model, "latent_dim": self.latent_dim,
               "binarization": f"static, seed {config.binarization_seed}",
               "param_count": count_params(state.params), "test_size": len(self.test),
               "iwae_samples": config.iwae_samples, "nll_test_size": nll_size,
               **{f"test_{k}": v for k, v in metrics.items()}}
    headline = (f"test -ELBO {test['loss']:.2f} nats (reconstruction "
                f"{test['reconstruction']:.2f}, KL {test['kl']:.2f}); NLL {nll:.2f} "
                f"(IWAE k={config.iwae_samples}, first {nll_size} test images, -ELBO there "
                f"{subset_elbo['loss']:.2f})")
    return summary, {"test": {"loss": test["loss"], **metrics}}, headline

  def _figures(self, params, out_dir):
    """samples.png, reconstructions.png, and for a 2-D latent space latent_manifold.png and
    latent_codes.png."""
    config, count = self.config, 10
    apply = functools.partial(self.model.apply, {"params": params})
    means = lambda logits: np.asarray(jax.nn.sigmoid(logits.astype(jnp.float32)))[..., 0]
    z = jax.random.normal(self._key(SAMPLE_STREAM), (100, self.latent_dim))
    samples = means(apply(z, method="decode"))
    save_grid(samples, 10, out_dir / "samples.png",
              f"{config.experiment}: Bernoulli means of decode(z), z ~ N(0, I)")
    images = self.test.images[:count]
    plots.image_rows({"test image": images[..., 0], "reconstruction": means(apply(images))},
                     out_dir / "reconstructions.png",
                     f"{config.experiment}: test images, decoded from the mean code")
    if self.latent_dim != 2:
      return
    n = config.manifold_size
    quantiles = np.asarray(special.ndtri(jnp.linspace(0.05, 0.95, n)))
    grid = np.stack(np.meshgrid(quantiles, quantiles[::-1]), -1).reshape(-1, 2)
    manifold = means(apply(jnp.asarray(grid, jnp.float32), method="decode"))
    save_grid(manifold, n, out_dir / "latent_manifold.png",
              f"{config.experiment}: decoded means at Gaussian quantiles 0.05..0.95 of z")
    codes = pipeline.map_batches(lambda x: apply(x, method="encode")[0], self.test.images,
                                 config.eval_batch_size)
    plots.embedding_2d(codes, self.test.labels, out_dir / "latent_codes.png",
                       f"{config.experiment}: means of q(z|x) of the test images")
