"""Generative adversarial networks on MNIST and Fashion-MNIST (Goodfellow et al. 2014; DCGAN,
Radford et al. 2016; the GANs and image generation of the course overview, section 1.5), a task
of the engine: a registered model of the "gan" family (`dl_jax.models.gan`) on the 60,000
training images scaled to [-1, 1] (`train_subset` > 0: a fixed random subset).

The train state holds both players: the parameters and batch statistics of the generator and of
the discriminator (the subtrees "generator" and "discriminator"), one Adam state for each (lr
2e-4, beta1 0.5: DCGAN section 4), the key, and the sample grids of the evaluations so far; the
engine checkpoints it whole, so a run resumed after SIGKILL ends bitwise where a straight one
does. One jitted step draws z for each player from fold_in(fold_in(rng, step), player) and does

1. one discriminator update on the binary cross-entropy of a real batch (label 1) and a batch
   generated from z (label 0), with the generator's images a constant (`stop_gradient`; its
   batch statistics of that pass are discarded);
2. one generator update on the non-saturating loss -log D(G(z')) through the updated
   discriminator (in training mode; its batch statistics of that pass are discarded).

Each update changes its own player's parameters, batch statistics and optimizer state only
(`tests/test_gan.py` checks it, with a step that mixes them as the negative control). The logged
"loss" is the sum of the two players' losses and "grad_norm" the norm of both gradients: the
engine's guard stops the run on the first non-finite value of either.

Measure: the Frechet distance (Heusel et al. 2017's FID formula, `dl_jax.vision.frechet`) between
the features of generated images and of as many test images, where the features are the
penultimate layer (the 256 ReLU units) of the section-5.3.1 CNN (`mnist_cnn`) trained on the
same dataset: Inception-v3's weights, which define the FID, are not used. The floor is the
distance between as many real training images and the test images through the same features
(a finite sample of the data itself does not reach 0). Class coverage: the entropy in bits of
the classifier's predicted-class histogram over the generated images (at most log2 10 = 3.32),
beside that of the test images. Every evaluation measures both on `eval_fd_samples` images and
stores the generated images of one fixed batch of z; the end measures on `fd_samples` images
and writes the grids as PNG.

Where the classifier comes from (`feature_classifier`):

- '' (the default): the task trains `mnist_cnn` itself, before its first measurement, on the
  same training images with fixed settings (Adam 1e-3, batch 128, `classifier_steps` steps,
  data order and initialization from seed 0 whatever the run's seed, so that distances of runs
  with different seeds share their features). It is a pure function of the data and
  `classifier_steps`, retrained identically by a resumed process: nothing outside the train
  state is needed to resume, the engine test of every task (straight run, SIGKILL, resume,
  SIGTERM; a few seconds of classifier training per process at its short settings) runs
  unchanged, and one command is a whole experiment. On 2 CPU cores 2,000 steps take about
  a minute.
- the workdir of a finished `image_classification` run of `mnist_cnn` on the same dataset with
  all 10 classes (its `variables.msgpack`, as that task writes it for transfer learning):
  checked before anything is written, one `error:` line when it is missing, unfinished, or of
  another model, dataset or class subset.
"""

import functools
import json
import math
import pathlib
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl_jax.data.images import mnist, pipeline
from dl_jax.engine import checks, sharding
from dl_jax.engine.task import Plan, Task, jit_step
from dl_jax.engine.workdir import RUN_MARKER
from dl_jax.errors import ConfigError
from dl_jax.models import gan as gan_models
from dl_jax.models import registry
from dl_jax.models.spec import count_params
from dl_jax.tasks import image_classification as classification
from dl_jax.tasks.vae import save_grid
from dl_jax.vision import frechet

DATASETS = ("mnist", "fashion_mnist")
PLAYERS = ("generator", "discriminator")
FEATURE_MODEL = "mnist_cnn"  # the classifier whose penultimate layer gives the features
CLASSIFIER_SEED = 0  # its initialization and data order when the task trains it
CLASSIFIER_BATCH, CLASSIFIER_LEARNING_RATE = 128, 1e-3
GRID_STREAM, FD_STREAM = 1, 2  # fixed evaluation keys: fold_in(PRNGKey(seed), stream)
TRAIN_SIZE, TEST_SIZE = mnist.SPEC["train_labels"][0][0], mnist.SPEC["test_labels"][0][0]
OVERVIEW_COLUMNS = 10  # samples per evaluation in samples_over_training.png


@flax.struct.dataclass
class GANState:
  """Both players' variables and optimizer states: checkpointing this and the step resumes."""
  step: jax.Array
  params: Any  # {"generator": ..., "discriminator": ...}
  batch_stats: Any  # the same two subtrees
  opt_state: Any  # {"generator": adam state, "discriminator": adam state}
  rng: jax.Array  # raw uint32 key; step randomness is fold_in(rng, step)
  grids: jax.Array  # uint8 [evaluations, grid_size, 28, 28]: G(fixed z) at each evaluation
  model: nn.Module = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def adam(config) -> optax.GradientTransformation:
  """Adam(learning_rate, beta1, beta2), each player its own state (DCGAN: 2e-4, 0.5)."""
  return optax.adam(config.learning_rate, b1=config.beta1, b2=config.beta2)


def create_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
                 evaluations: int = 0, grid_size: int = 1) -> GANState:
  """Variables from `rng` (raw key), an optimizer state per player, empty sample grids."""
  init_rng, train_rng = jax.random.split(rng)
  variables = model.init(init_rng, jnp.zeros((1, *gan_models.IMAGE_SHAPE), jnp.float32))
  params, batch_stats = dict(variables["params"]), dict(variables["batch_stats"])
  return GANState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                  opt_state={p: tx.init(params[p]) for p in PLAYERS}, rng=train_rng,
                  grids=jnp.zeros((evaluations, grid_size, 28, 28), jnp.uint8), model=model,
                  tx=tx)


def _with(tree: dict, player: str, value) -> dict:
  return {**tree, player: value}


def _latents(key, batch: int, model) -> jax.Array:
  return jax.random.normal(key, (batch, model.latent_dim), jnp.float32)


def discriminator_step(state: GANState, images: jax.Array, key) -> tuple[GANState, dict]:
  """One update of the discriminator on -log D(x) - log(1 - D(G(z))), z ~ N(0, I) from `key`;
  the generator's variables and optimizer state are left as they are."""
  model = state.model
  fake, _ = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                        _latents(key, images.shape[0], model), train=True, method="generate",
                        mutable=["batch_stats"])
  fake = jax.lax.stop_gradient(fake)

  def loss_fn(d_params):
    params = _with(state.params, "discriminator", d_params)
    real_logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                       images, train=True, mutable=["batch_stats"])
    fake_logits, updates = model.apply({"params": params, "batch_stats": updates["batch_stats"]},
                                       fake, train=True, mutable=["batch_stats"])
    loss = gan_models.discriminator_loss(real_logits, fake_logits)
    return loss, (updates["batch_stats"]["discriminator"], real_logits, fake_logits)

  (loss, (stats, real_logits, fake_logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params["discriminator"])
  updates, opt_state = state.tx.update(grads, state.opt_state["discriminator"],
                                       state.params["discriminator"])
  new_state = state.replace(
      params=_with(state.params, "discriminator",
                   optax.apply_updates(state.params["discriminator"], updates)),
      batch_stats=_with(state.batch_stats, "discriminator", stats),
      opt_state=_with(state.opt_state, "discriminator", opt_state))
  sigmoid = lambda logits: jnp.mean(jax.nn.sigmoid(logits.astype(jnp.float32)))
  return new_state, {"d_loss": loss, "d_grad_norm": optax.tree.norm(grads),
                     "d_real": sigmoid(real_logits), "d_fake": sigmoid(fake_logits)}


def generator_step(state: GANState, batch: int, key) -> tuple[GANState, dict]:
  """One update of the generator on the non-saturating -log D(G(z)), `batch` codes z from
  `key`; the discriminator's variables and optimizer state are left as they are."""
  model = state.model
  z = _latents(key, batch, model)

  def loss_fn(g_params):
    variables = {"params": _with(state.params, "generator", g_params),
                 "batch_stats": state.batch_stats}
    fake, updates = model.apply(variables, z, train=True, method="generate",
                                mutable=["batch_stats"])
    logits, _ = model.apply(variables, fake, train=True, mutable=["batch_stats"])
    return gan_models.generator_loss(logits), updates["batch_stats"]["generator"]

  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["generator"])
  updates, opt_state = state.tx.update(grads, state.opt_state["generator"],
                                       state.params["generator"])
  new_state = state.replace(
      params=_with(state.params, "generator",
                   optax.apply_updates(state.params["generator"], updates)),
      batch_stats=_with(state.batch_stats, "generator", stats),
      opt_state=_with(state.opt_state, "generator", opt_state))
  return new_state, {"g_loss": loss, "g_grad_norm": optax.tree.norm(grads)}


def train_step(state: GANState, batch: dict) -> tuple[GANState, dict]:
  """One discriminator update, then one generator update (keys from fold_in(rng, step))."""
  key = jax.random.fold_in(state.rng, state.step)
  state, d_metrics = discriminator_step(state, batch["image"], jax.random.fold_in(key, 0))
  state, g_metrics = generator_step(state, batch["image"].shape[0], jax.random.fold_in(key, 1))
  metrics = {**d_metrics, **g_metrics}
  metrics["loss"] = metrics["d_loss"] + metrics["g_loss"]
  metrics["grad_norm"] = jnp.sqrt(metrics["d_grad_norm"] ** 2 + metrics["g_grad_norm"] ** 2)
  return state.replace(step=state.step + 1), metrics


# ------------------------------------------------------------------------------ the classifier

def penultimate_features(model: nn.Module, variables, images: jax.Array) -> tuple[jax.Array,
                                                                                  jax.Array]:
  """(features, logits) of a classifier whose last layer is a Dense: the features are that
  layer's input (for `mnist_cnn` the 256 ReLU units), taken by intercepting its call."""
  inputs = []

  def interceptor(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
      inputs.append(args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    logits = model.apply(variables, images, train=False)
  return inputs[-1].astype(jnp.float32), logits.astype(jnp.float32)


def train_classifier(split: pipeline.Split, steps: int) -> dict:
  """`mnist_cnn` trained on `split` for `steps` steps (Adam 1e-3, batch 128, seed 0): its
  variables. A pure function of the data and `steps`."""
  model = registry.build(FEATURE_MODEL)
  tx = optax.adam(CLASSIFIER_LEARNING_RATE)
  state = jax.jit(lambda rng: classification.create_train_state(
      model, tx, rng, gan_models.IMAGE_SHAPE))(jax.random.PRNGKey(CLASSIFIER_SEED))
  step_fn = jax.jit(classification.train_step, donate_argnums=0)
  batches = pipeline.StepBatches(split, CLASSIFIER_BATCH, CLASSIFIER_SEED)
  for step in range(steps):
    state, _ = step_fn(state, batches(step))
  return {"params": state.params}


def _saved_run(workdir: str, dataset: str) -> dict:
  """The config of the finished image_classification run in `workdir`, after checking that it
  fits (ConfigError naming feature_classifier otherwise)."""
  accepted = (f"accepted: '' (the task trains {FEATURE_MODEL} itself) or the workdir of a "
              f"finished image_classification run of {FEATURE_MODEL} on {dataset}")
  path = pathlib.Path(workdir).expanduser()
  marker = path / RUN_MARKER
  if not marker.is_file():
    raise ConfigError(f"feature_classifier={workdir!r} holds no run ({RUN_MARKER} missing); "
                      f"{accepted}")
  try:
    saved = json.loads(marker.read_text())
  except (OSError, ValueError) as e:
    raise ConfigError(f"feature_classifier={workdir!r}: {RUN_MARKER} cannot be read ({e}); "
                      f"{accepted}") from None
  found = {k: saved.get(k) for k in ("task", "model", "dataset")}
  want = {"task": "image_classification", "model": FEATURE_MODEL, "dataset": dataset}
  if found != want or saved.get("classes"):
    what = ", ".join(f"{k}={v!r}" for k, v in found.items())
    raise ConfigError(f"feature_classifier={workdir!r} is a run with {what}, classes="
                      f"{saved.get('classes')!r}; {accepted} (all classes)")
  if not (path / classification.VARIABLES_FILE).is_file():
    raise ConfigError(f"feature_classifier={workdir!r} holds no "
                      f"{classification.VARIABLES_FILE}: the run has not finished; {accepted}")
  return saved


def load_classifier(workdir: str, dataset: str) -> tuple[nn.Module, dict]:
  """The model and variables of the finished image_classification run in `workdir`."""
  saved = _saved_run(workdir, dataset)
  model = registry.build(FEATURE_MODEL, **dict(saved.get("model_kwargs") or {}))
  variables = classification.load_variables(str(pathlib.Path(workdir).expanduser()))
  variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats") and v}
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                          jnp.zeros((1, *gan_models.IMAGE_SHAPE)))
  if jax.tree.map(lambda s: tuple(s.shape), shapes) != jax.tree.map(np.shape, variables):
    raise ConfigError(f"feature_classifier={workdir!r}: its variables do not have the shapes of "
                      f"{FEATURE_MODEL}; run the classifier again")
  return model, jax.tree.map(jnp.asarray, variables)


# ------------------------------------------------------------------------------------ the task

def to_uint8(images: jax.Array) -> jax.Array:
  """Images in [-1, 1] [N, 28, 28, 1] -> uint8 [N, 28, 28] (0 black, 255 white)."""
  pixels = jnp.round((jnp.clip(images[..., 0].astype(jnp.float32), -1, 1) + 1) * 127.5)
  return pixels.astype(jnp.uint8)


class GAN(Task):
  """`config.model` (a GAN) on `config.dataset`; see the module docstring."""

  CHECKS = {
      "model": checks.string,
      "model_kwargs": checks.hyper_parameters,  # names and types: the model registry
      "dataset": checks.one_of(*DATASETS),
      "train_subset": checks.nonnegative_int("all 60,000 training images"),
      "batch_size": checks.positive_int,
      "eval_batch_size": checks.positive_int,
      "num_steps": checks.positive_int,
      "eval_every_steps": checks.nonnegative_int("measure at the end only"),
      "learning_rate": checks.positive_number,
      "beta1": checks.number(0.0, 1.0, high_open=True),
      "beta2": checks.number(0.0, 1.0, high_open=True),
      "feature_classifier": checks.string,
      "classifier_steps": checks.positive_int,
      "fd_samples": checks.int_at_least(2),
      "eval_fd_samples": checks.int_at_least(2),
      "grid_size": checks.positive_int,
  }

  @classmethod
  def validate(cls, config):
    registry.get(config.model, family="gan")
    train_size = config.train_subset or TRAIN_SIZE
    for key in ("fd_samples", "eval_fd_samples"):
      limit = min(train_size, TEST_SIZE)
      if config[key] > limit:
        raise ConfigError(f"{key}={config[key]} exceeds the {limit} images there are of the "
                          f"smaller of the training ({train_size}) and test ({TEST_SIZE}) sets; "
                          f"accepted: 2..{limit}")
    if config.feature_classifier:
      _saved_run(config.feature_classifier, config.dataset)
    kwargs = config.model_kwargs.to_dict()
    registry.check_output_shape(config.model, kwargs, "features of 1 or 2 widths (28 must be "
                                "divisible by 2**len(features))")
    model = registry.build(config.model, **kwargs)
    shape = jax.eval_shape(
        lambda z: model.init_with_output(jax.random.PRNGKey(0), z, method="generate")[0],
        jnp.zeros((1, model.latent_dim))).shape
    if shape != (1, *gan_models.IMAGE_SHAPE):
      raise ConfigError(f"model_kwargs.features={tuple(model.features)!r}: the generator gives "
                        f"{shape} for one code, not (1, 28, 28, 1); accepted: 1 or 2 widths (28 "
                        "must be divisible by 2**len(features))")

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.model = registry.build(config.model, **config.model_kwargs.to_dict())
    for key in ("batch_size", "eval_batch_size"):
      sharding.check_batch_size(config[key], mesh, key)
    raw = mnist.load(config.dataset, config.data_dir or None)
    self.train, _, self.test = pipeline.train_val_test(raw, 0, 0, config.train_subset)
    if config.batch_size > len(self.train):
      raise ConfigError(f"batch_size={config.batch_size} exceeds the {len(self.train)} training "
                        "images")
    self.evaluations = (config.num_steps // config.eval_every_steps
                        if config.eval_every_steps else 0)
    self.tx = adam(config)
    self._train_step = jit_step(train_step, donate_argnums=0)
    self._batches = pipeline.StepBatches(self.train, config.batch_size, config.seed,
                                         jax.process_index(), jax.process_count())
    self._generate = jax.jit(lambda variables, z: self.model.apply(variables, z,
                                                                   method="generate"))
    self._classifier = None  # (variables, jitted features), made at the first measurement
    self._reference = None  # features and predicted classes of the real images

  # -- the engine's interface

  def plan(self) -> Plan:
    return Plan(self.config.num_steps, len(self.train) / self.config.batch_size, "examples",
                self.config.batch_size, eval_every_steps=self.config.eval_every_steps)

  def init(self, key) -> GANState:
    return create_state(self.model, self.tx, jax.random.key_data(key), self.evaluations,
                        self.config.grid_size)

  def advance(self, state, step, stop):
    del stop
    state, metrics = self._train_step(state, sharding.shard_batch(self._batches(step),
                                                                  self.mesh))
    return state, step + 1, {"train": metrics}

  def evaluate(self, state, step):
    index = step // self.config.eval_every_steps - 1
    grid = to_uint8(self._generate(self._variables(state), self._grid_z()))
    grids = jax.device_put(state.grids.at[index].set(grid), state.grids.sharding)
    measured = self.measure(state, self.config.eval_fd_samples)
    return state.replace(grids=grids), {"eval": {
        "frechet_distance": measured["frechet_distance"],
        "class_entropy_bits": measured["class_entropy_bits"]}}

  def finish(self, state, step, out_dir):
    config = self.config
    n = config.fd_samples
    measured = self.measure(state, n)
    floor = self.floor(n)
    real_entropy = frechet.entropy_bits(frechet.class_histogram(self._test_classes()[:n], 10))
    if out_dir is not None:
      self._figures(state, step, pathlib.Path(out_dir))
    test = {"frechet_distance": measured["frechet_distance"], "frechet_distance_floor": floor,
            "class_entropy_bits": measured["class_entropy_bits"],
            "class_entropy_bits_real": real_entropy}
    summary = {
        "dataset": config.dataset, "model": config.model,
        "param_count": count_params(state.params),
        "param_count_generator": count_params(state.params["generator"]),
        "param_count_discriminator": count_params(state.params["discriminator"]),
        "batch_size": config.batch_size, "fd_samples": n,
        "feature_classifier": config.feature_classifier or
                              f"{FEATURE_MODEL} trained here, {config.classifier_steps} steps",
        "classifier_test_accuracy": self._classifier_accuracy(),
        "classifier_test_size": len(self._test_classes()),
        "frechet_distance": measured["frechet_distance"], "frechet_distance_floor": floor,
        "class_entropy_bits": measured["class_entropy_bits"],
        "class_entropy_bits_real": real_entropy, "class_entropy_bits_max": math.log2(10),
        "class_histogram": measured["class_histogram"],
    }
    headline = (f"Frechet distance {measured['frechet_distance']:.2f} (real-data floor "
                f"{floor:.2f}; {n} images each); class entropy "
                f"{measured['class_entropy_bits']:.3f} bits (test images {real_entropy:.3f}, "
                f"max {math.log2(10):.3f})")
    return summary, {"test": test}, headline

  # -- the measurement

  def _variables(self, state) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats}

  def _key(self, stream: int):
    return jax.random.fold_in(jax.random.PRNGKey(self.config.seed), stream)

  def _grid_z(self) -> jax.Array:
    return _latents(self._key(GRID_STREAM), self.config.grid_size, self.model)

  def classifier(self) -> tuple[dict, Any]:
    """The feature classifier's variables (trained or loaded once per process) and its jitted
    (variables, images) -> (features, logits)."""
    if self._classifier is None:
      if self.config.feature_classifier:
        model, variables = load_classifier(self.config.feature_classifier, self.config.dataset)
      else:
        model = registry.build(FEATURE_MODEL)
        variables = train_classifier(self.train, self.config.classifier_steps)
      features = jax.jit(functools.partial(penultimate_features, model))
      self._classifier = (variables, features)
    return self._classifier

  def _features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features [N, d] and predicted classes [N] of images [N, 28, 28, 1] in [-1, 1]."""
    variables, features = self.classifier()
    both = pipeline.map_batches(lambda x: jnp.concatenate(features(variables, x), -1), images,
                                self.config.eval_batch_size)
    return both[:, :-10], np.argmax(both[:, -10:], -1)

  def _real(self) -> dict:
    """Features of the first n = max(fd_samples, eval_fd_samples) training and test images,
    and the classes predicted for those test images, once per process."""
    if self._reference is None:
      n = max(self.config.fd_samples, self.config.eval_fd_samples)
      train_features, _ = self._features(self.train.images[:n])
      test_features, test_classes = self._features(self.test.images[:n])
      self._reference = {"train": train_features, "test": test_features,
                         "test_classes": test_classes}
    return self._reference

  def _test_classes(self) -> np.ndarray:
    return self._real()["test_classes"]

  def _classifier_accuracy(self) -> float:
    """The classifier's accuracy on the test images it measures (all 10,000 when
    fd_samples is 10,000)."""
    classes = self._test_classes()
    return float(np.mean(classes == self.test.labels[:len(classes)]))

  def floor(self, n: int) -> float:
    """The Frechet distance between the first n training and the first n test images."""
    real = self._real()
    return frechet.frechet_distance(frechet.gaussian(real["train"][:n]),
                                    frechet.gaussian(real["test"][:n]))

  def measure(self, state, n: int) -> dict:
    """Frechet distance of n generated images (fixed z) to the first n test images, and the
    class histogram and entropy of the generated images."""
    z = _latents(self._key(FD_STREAM), n, self.model)
    variables = self._variables(state)
    images = pipeline.map_batches(lambda zb: self._generate(variables, zb), np.asarray(z),
                                  self.config.eval_batch_size)
    features, classes = self._features(images)
    histogram = frechet.class_histogram(classes, 10)
    distance = frechet.frechet_distance(frechet.gaussian(features),
                                        frechet.gaussian(self._real()["test"][:n]))
    return {"frechet_distance": distance, "class_entropy_bits": frechet.entropy_bits(histogram),
            "class_histogram": histogram.tolist()}

  def _figures(self, state, step: int, out_dir: pathlib.Path):
    """samples.png (the final generator on the fixed z), samples/step_N.png (every
    evaluation's grid) and samples_over_training.png (the first 10 of each, one row per
    evaluation, and the final generator's)."""
    config = self.config
    columns = math.ceil(math.sqrt(config.grid_size))
    final = np.asarray(to_uint8(self._generate(self._variables(state), self._grid_z())))
    save_grid(final / 255.0, columns, out_dir / "samples.png",
              f"{config.experiment}: G(z) at step {step}, fixed z")
    grids = np.asarray(jax.device_get(state.grids))
    steps = [(i + 1) * config.eval_every_steps for i in range(self.evaluations)]
    done = [(i, s) for i, s in enumerate(steps) if s <= step]
    (out_dir / "samples").mkdir(exist_ok=True)
    for i, s in done:
      save_grid(grids[i] / 255.0, columns, out_dir / "samples" / f"step_{s:06d}.png",
                f"{config.experiment}: G(z) at step {s}, fixed z")
    k = min(OVERVIEW_COLUMNS, config.grid_size)
    rows = [grids[i][:k] for i, _ in done]
    if not done or done[-1][1] != step:  # the final generator, unless just evaluated
      rows.append(final[:k])
    first = done[0][1] if done else step
    save_grid(np.concatenate(rows) / 255.0, k, out_dir / "samples_over_training.png",
              f"{config.experiment}: G(fixed z), rows: steps {first}..{step}")
