"""Denoising by a network (section 5.3.5), a task of the engine: a registered "dense" model
(images: MNIST, Fashion-MNIST) or "dense_1d" model (signals: the ECG record) trained with the
mean squared error between its output on noisy inputs and the clean inputs,

    L(x, f(n(x))) = mean over pixels of (f(n(x)) - x)^2,

the setting of eq. 5.29 with the network f in place of g(f(.)) (section 5.3.5: "the loss is the
mean squared error between the predicted image and the original noiseless image"), against
scikit-image's classical denoisers on the same test examples (`dl_jax.vision.denoise`).

Data in [0, 1]: images uint8 / 255; the ECG in millivolts mapped onto [0, 1] by the record's
range (`ecg.to_unit`), cut into windows of `ecg_length` samples, the splits contiguous blocks
of time (70 / 15 / 15 %; `val_size` and `split_seed` concern the images only). The noise n(x)
(`noise`, `noise_level`, `clip_noise`; see `denoise.add_noise`) of a training batch is pure in
(seed, step); that of the validation and test examples is drawn once from the seed, so every
evaluation and every denoiser sees the same noisy inputs.

`finish` measures on the test split, every estimate clipped to [0, 1]: the network's PSNR and
SSIM on the whole split and the noisy input's (the identity); with `classical`, each classical
denoiser's parameter tuned on the first `tune_images` validation examples by PSNR, then the
denoisers and the network on the first `classical_images` test examples (the same ones), and
the network's margin over the best classical denoiser there (the best by test PSNR: the
baseline most favourable to the classical side). Figure `denoised.png`: clean, noisy, network
and best classical estimates of test examples (rows of images, or curves for the ECG).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl_jax import optim, plots
from dl_jax.data.images import mnist, pipeline
from dl_jax.data.signals import ecg
from dl_jax.engine import checks, sharding
from dl_jax.engine.task import Plan, Task, jit_step
from dl_jax.errors import ConfigError
from dl_jax.models import registry
from dl_jax.models.spec import count_params
from dl_jax.tasks import autoencoding
from dl_jax.tasks import image_classification as classification
from dl_jax.vision import denoise

DATASETS = (*mnist.NAMES, "ecg")
IMAGE_SIZE = 28
FIGURE_EXAMPLES = 10  # images in the figure (the ECG: 3 windows)
MIN_ECG_LENGTH = 128  # samples: room for the 4 levels of the wavelet baseline


def _variables(state, params) -> dict:
  variables = {"params": params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  return variables


def per_example_mse(estimate: jax.Array, clean: jax.Array) -> jax.Array:
  """Mean squared error of each example over its pixels (samples), in float32."""
  axes = tuple(range(1, clean.ndim))
  return jnp.mean(jnp.square(estimate.astype(jnp.float32) - clean), axes)


def train_step(state, batch: dict, noise: str, noise_level: float, clip_noise: bool):
  """One gradient step on the mean squared error of the network's output on n(clean) against
  clean (eq. 5.29), the noise drawn from fold_in(rng, step)."""
  step_rng = jax.random.fold_in(state.rng, state.step)
  clean = batch["image"]
  noisy = denoise.add_noise(step_rng, clean, noise, noise_level, clip_noise)

  def loss_fn(params):
    out, updates = state.apply_fn(_variables(state, params), noisy, train=True,
                                  rngs={"dropout": jax.random.fold_in(step_rng, 1)},
                                  mutable=["batch_stats"])
    return per_example_mse(out, clean).mean(), (out, updates)

  (loss, (out, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, opt_state=opt_state,
                            params=optax.apply_updates(state.params, param_updates),
                            batch_stats=updates.get("batch_stats", state.batch_stats))
  psnr = denoise.psnr_from_mse(per_example_mse(jnp.clip(out, 0, 1), clean)).mean()
  return new_state, {"loss": loss, "psnr": psnr, "grad_norm": optax.tree.norm(grads)}


def eval_step(state, batch: dict) -> dict:
  """Masked sums over `batch`: the MSE of the output on batch["noisy"] against batch["clean"]
  and the PSNR of the output clipped to [0, 1]."""
  out = state.apply_fn(_variables(state, state.params), batch["noisy"], train=False)
  mask = batch["mask"]
  clipped = per_example_mse(jnp.clip(out, 0, 1), batch["clean"])
  return {"loss": jnp.sum(per_example_mse(out, batch["clean"]) * mask),
          "psnr": jnp.sum(denoise.psnr_from_mse(clipped) * mask), "count": jnp.sum(mask)}


class Denoising(Task):
  """`config.model` trained to denoise `config.dataset` (see the module docstring)."""

  CHECKS = {
      "model": checks.string,
      "model_kwargs": checks.hyper_parameters,
      "dataset": checks.one_of(*DATASETS),
      "noise": checks.one_of(*denoise.NOISES),
      "noise_level": checks.number(0.0, 1.0, low_open=True),
      "clip_noise": checks.boolean,
      "val_size": checks.positive_int,
      "split_seed": checks.seed,
      "train_subset": checks.nonnegative_int("all training examples"),
      "test_subset": checks.nonnegative_int("the whole test split"),
      "ecg_length": checks.int_at_least(MIN_ECG_LENGTH),
      "ecg_stride": checks.positive_int,
      "batch_size": checks.positive_int,
      "eval_batch_size": checks.positive_int,
      "num_epochs": checks.positive_int,
      "optimizer": checks.one_of(*optim.OPTIMIZERS),
      "learning_rate": checks.positive_number,
      "lr_schedule": checks.one_of(*optim.SCHEDULES),
      "warmup_steps": checks.nonnegative_int("no warm-up"),
      "classical": checks.boolean,
      "classical_images": checks.positive_int,
      "tune_images": checks.positive_int,
  }

  @classmethod
  def validate(cls, config):
    signals = config.dataset == "ecg"
    spec = registry.get(config.model, family="dense_1d" if signals else "dense")
    kwargs = config.model_kwargs.to_dict()
    hp = spec.hyperparameters(**kwargs)
    data = ({"length": config.ecg_length, "out_channels": 1} if signals else
            {"image_size": IMAGE_SIZE, "in_channels": 1, "out_channels": 1})
    for key, want in data.items():
      if hp[key] != want:
        raise ConfigError(f"model_kwargs.{key}={hp[key]!r} does not fit the {config.dataset} "
                          f"data; accepted: {want}")
    if signals and config.ecg_length > ecg.shortest_split():
      raise ConfigError(f"ecg_length={config.ecg_length} is longer than a split of the ECG; "
                        f"accepted: {MIN_ECG_LENGTH} .. {ecg.shortest_split()}")
    registry.check_output_shape(config.model, kwargs,
                                "hyper-parameters that keep the input's size")

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.signals = config.dataset == "ecg"
    self.model = registry.build(config.model, **config.model_kwargs.to_dict())
    for key in ("batch_size", "eval_batch_size"):
      sharding.check_batch_size(config[key], mesh, key)
    self.train, self.val, self.test = self._splits(config)
    self.steps_per_epoch, self.schedule_steps = classification.epoch_schedule(len(self.train),
                                                                              config)
    self.tx = optim.make_optimizer(config.optimizer, config.learning_rate, config.lr_schedule,
                                   self.schedule_steps, config.warmup_steps)
    self._train_step = jit_step(functools.partial(
        train_step, noise=config.noise, noise_level=float(config.noise_level),
        clip_noise=config.clip_noise), donate_argnums=0)
    self._eval_step = jax.jit(eval_step)
    self._apply = jax.jit(lambda variables, x: self.model.apply(variables, x, train=False))
    self._batches = pipeline.StepBatches(self.train, config.batch_size, config.seed,
                                         jax.process_index(), jax.process_count())
    self._val_noisy = None

  @staticmethod
  def _splits(config) -> tuple[pipeline.Split, pipeline.Split, pipeline.Split]:
    """Train, validation and test examples in [0, 1], channels-last."""
    if config.dataset != "ecg":
      raw = autoencoding.unit_images(mnist.load(config.dataset, config.data_dir or None))
      return classification.image_splits(raw, config)
    windows = ecg.windows(config.ecg_length, config.ecg_stride, config.data_dir or None)
    split = lambda x: pipeline.Split(ecg.to_unit(x), np.zeros(len(x), np.int32))
    train, val, test = (split(windows[s]) for s in ("train", "val", "test"))
    for key, part in (("train_subset", "train"), ("test_subset", "test")):
      count = config[key]
      if count > len(windows[part]):
        raise ConfigError(f"{key}={count} exceeds the {len(windows[part])} ECG {part} windows")
    if config.train_subset:
      train = pipeline.Split(train.images[:config.train_subset], train.labels[:config.train_subset])
    if config.test_subset:
      test = pipeline.Split(test.images[:config.test_subset], test.labels[:config.test_subset])
    return train, val, test

  def plan(self) -> Plan:
    unit = "windows" if self.signals else "examples"
    return Plan(self.schedule_steps, self.steps_per_epoch, unit, self.config.batch_size,
                eval_every_steps=self.steps_per_epoch if len(self.val) else 0)

  def init(self, key):
    return classification.create_train_state(self.model, self.tx, jax.random.key_data(key),
                                             self.train.images.shape[1:])

  def advance(self, state, step, stop):
    del stop
    state, metrics = self._train_step(state, sharding.shard_batch(self._batches(step),
                                                                  self.mesh))
    return state, step + 1, {"train": metrics}

  def noisy(self, split: pipeline.Split, stream: int) -> np.ndarray:
    """The split's examples through n(x), drawn once from (seed, stream)."""
    key = jax.random.fold_in(jax.random.PRNGKey(self.config.seed), stream)
    return np.asarray(denoise.add_noise(key, jnp.asarray(split.images), self.config.noise,
                                        float(self.config.noise_level), self.config.clip_noise))

  def _eval(self, state, split: pipeline.Split, noisy: np.ndarray) -> dict:
    """Mean MSE and PSNR of the network's estimates of the split from `noisy`."""
    sums = {}
    paired = pipeline.Split(np.concatenate([split.images, noisy], -1), split.labels)
    for batch in pipeline.eval_batches(paired, self.config.eval_batch_size, jax.process_index(),
                                       jax.process_count()):
      clean, noisy_part = np.split(batch["image"], 2, axis=-1)
      batch = {"clean": clean, "noisy": noisy_part, "mask": batch["mask"]}
      out = jax.device_get(self._eval_step(state, sharding.shard_batch(batch, self.mesh)))
      for k, v in out.items():
        sums[k] = sums.get(k, 0.0) + float(v)
    count = sums.pop("count")
    return {k: v / count for k, v in sums.items()}

  def val_noisy(self) -> np.ndarray:
    """The validation examples through n(x), drawn once."""
    if self._val_noisy is None:
      self._val_noisy = self.noisy(self.val, 1)
    return self._val_noisy

  def evaluate(self, state, step):
    return state, {"val": self._eval(state, self.val, self.val_noisy())}

  def estimates(self, state, noisy: np.ndarray) -> np.ndarray:
    """The network's estimates of `noisy` examples, clipped to [0, 1]."""
    variables = jax.device_get(_variables(state, state.params))
    out = pipeline.map_batches(functools.partial(self._apply, variables), noisy,
                               self.config.eval_batch_size)
    return np.clip(out, 0, 1)

  def finish(self, state, step, out_dir):
    config = self.config
    noisy = self.noisy(self.test, 2)
    clean = self.test.images[..., 0]
    network = self.estimates(state, noisy)[..., 0]
    noisy_input = np.clip(noisy[..., 0], 0, 1)
    net_psnr, net_ssim = denoise.psnr(clean, network), denoise.ssim(clean, network)
    metrics = {"loss": float(np.mean(np.square(network - clean))),
               "psnr": float(net_psnr.mean()), "ssim": float(net_ssim.mean()),
               "noisy_psnr": float(denoise.psnr(clean, noisy_input).mean()),
               "noisy_ssim": float(denoise.ssim(clean, noisy_input).mean())}
    summary = {"dataset": config.dataset, "model": config.model, "noise": config.noise,
               "noise_level": config.noise_level, "clip_noise": config.clip_noise,
               "param_count": count_params(state.params), "test_size": len(self.test)}
    headline = (f"test PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f} (noisy input "
                f"{metrics['noisy_psnr']:.2f} dB, {metrics['noisy_ssim']:.3f})")
    best, best_estimates = None, None
    if config.classical:
      table, best, best_estimates = self._classical(clean, noisy[..., 0], net_psnr, net_ssim)
      count = table["network"]["count"]
      metrics.update({f"classical_{k}": v for k, v in table["network"].items()
                      if k != "count"})
      for name, row in table["denoisers"].items():
        metrics[f"{name}_psnr"], metrics[f"{name}_ssim"] = row["test_psnr"], row["test_ssim"]
      metrics["best_classical_psnr"] = table["denoisers"][best]["test_psnr"]
      metrics["margin_db"] = metrics["classical_psnr"] - metrics["best_classical_psnr"]
      summary["classical"] = table
      summary["best_classical"] = best
      row = table["denoisers"][best]
      headline += (f"; on {count} test examples: network {metrics['classical_psnr']:.2f} dB, "
                   f"best classical {best} ({row['parameter']}={row['value']:.3g}) "
                   f"{row['test_psnr']:.2f} dB: {metrics['margin_db']:+.2f} dB")
    summary.update({f"test_{k}": v for k, v in metrics.items()})
    if out_dir is not None:
      self._figure(clean, noisy_input, network, best, best_estimates, out_dir)
    return summary, {"test": metrics}, headline

  def _classical(self, clean, noisy, net_psnr, net_ssim) -> tuple[dict, str, np.ndarray]:
    """Each classical denoiser tuned on validation examples and measured on the first
    `classical_images` test examples, beside the network on the same examples: (the table,
    the best denoiser's name, its first estimates for the figure)."""
    config = self.config
    tune_count = min(config.tune_images, len(self.val))
    val_clean = self.val.images[:tune_count, ..., 0]
    val_noisy = self.val_noisy()[:tune_count, ..., 0]
    std = denoise.noise_std(val_noisy, val_clean)
    count = min(config.classical_images, len(clean))
    denoisers, estimates = {}, {}
    for method in denoise.classical(clean.ndim - 1):
      tuned = denoise.tune(method, val_noisy, val_clean, std)
      estimate = method(noisy[:count], tuned.value, std)
      denoisers[method.name] = {
          "parameter": method.parameter, "value": tuned.value, "grid": list(tuned.scores),
          "at_grid_edge": tuned.at_grid_edge, "val_psnr": tuned.scores[tuned.value],
          "test_psnr": float(denoise.psnr(clean[:count], estimate).mean()),
          "test_ssim": float(denoise.ssim(clean[:count], estimate).mean())}
      estimates[method.name] = estimate[:FIGURE_EXAMPLES]
    best = max(denoisers, key=lambda name: denoisers[name]["test_psnr"])
    network = {"count": count, "psnr": float(net_psnr[:count].mean()),
               "ssim": float(net_ssim[:count].mean())}
    return {"noise_std": std, "tune_examples": tune_count, "network": network,
            "denoisers": denoisers}, best, estimates[best]

  def _figure(self, clean, noisy, network, best, best_estimates, out_dir):
    config = self.config
    rows = {"clean": clean, f"{config.noise} {config.noise_level:g}": noisy,
            config.model: network}
    if best is not None:
      rows[f"classical: {best}"] = best_estimates
    title = f"{config.experiment}: test examples, the network's and the best classical estimates"
    if not self.signals:
      plots.image_rows({k: v[:FIGURE_EXAMPLES] for k, v in rows.items()},
                       out_dir / "denoised.png", title)
      return
    plt = plots.pyplot()
    count = min(3, len(clean))
    fig, axes = plt.subplots(count, 1, figsize=(10, 2.4 * count), squeeze=False)
    seconds = np.arange(clean.shape[1]) / ecg.SAMPLING_RATE_HZ
    colours = dict(zip(rows, ("black", "0.65", "tab:blue", "tab:orange")))
    widths = dict(zip(rows, (1.4, 0.6, 1.1, 1.0)))
    for i, ax in enumerate(axes[:, 0]):
      for name, values in rows.items():
        ax.plot(seconds, values[i], label=name, color=colours[name], lw=widths[name])
      ax.set_ylabel("record range")
      ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=len(rows))
    axes[-1, 0].set_xlabel("seconds")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "denoised.png", dpi=110)
    plt.close(fig)
