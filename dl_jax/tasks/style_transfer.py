"""Style transfer of Gatys, Ecker and Bethge (2015), section 5.3.5 (figure 5.38), a task of the
engine: the image itself is optimized so that its features match the content photo's at one
layer and the Gram matrices of its features match the style image's at several layers:

    L(x) = content_weight * L_content + style_weight * L_style + tv_weight * TV(x)

(the losses of `dl_jax.vision.style`). Photos and textures come from `skimage.data`, as central
square crops resized to `image_size` pixels.

The optimized parameters are the pixels of the image [1, image_size, image_size, 3], without
constraint (a projection onto [0, 1] after each step would break the curvature pairs that
L-BFGS keeps); they start from the content photo (`init="content"`) or from uniform noise in
[0, 1] (`init="noise"`, drawn from the run's key). The result is the image clipped to [0, 1];
the final losses in the results are those of that clipped image, beside the initial ones.

Optimizers: "lbfgs" is `optax.lbfgs` (memory 10) with its zoom line search (at most 20
evaluations per step; the direction is scaled by `learning_rate` first, so 1.0 is plain
L-BFGS), the gradient of each step reused from the line search (`value_and_grad_from_state`);
"adam" is `optax.adam(learning_rate)` on the pixels. Gatys et al. use L-BFGS.

Features (`model`, a network with a `features` method: `style_vgg`, run on each colour channel,
`style.channel_features`): "random" keeps the He-normal weights drawn from the seed (He, Wang
and Hopcroft 2016; Ustyuzhaninov et al. 2016: random filters carry texture and style);
"trained" first trains the same network as a classifier for `feature_steps` Adam steps on
`feature_dataset` (the classification task's train step and batch stream), pure in the seed:
every start of the run, a resume included, computes the same weights, and the results give the
network's accuracy on the first `FEATURE_TEST_IMAGES` test images. No pretrained weights are
downloaded, and the VGGs of `dl_jax.models.vgg` (64 to 512 channels) would cost about 50 times
more per step at 128 pixels on two CPU cores.

Each step logs the objective ("loss"), its three unweighted terms and the gradient norm, at the
image before the step; the state also keeps that record per step for the loss curves.
"""

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from dl_jax import plots
from dl_jax.data.images import mnist, pipeline
from dl_jax.engine import checks
from dl_jax.engine.task import Plan, Task, jit_step
from dl_jax.errors import ConfigError
from dl_jax.models import registry, style_features
from dl_jax.tasks import image_classification as classification
from dl_jax.vision import style

FEATURES = ("random", "trained")
FEATURE_MODELS = ("style_vgg",)
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
FEATURE_LEARNING_RATE = 1e-3  # Adam, constant, for the trained features
FEATURE_TEST_IMAGES = 2000
LBFGS_MEMORY = 10
MAX_LINESEARCH_STEPS = 20
TERMS = ("loss", "content_loss", "style_loss", "tv_loss")  # the columns of the history


@flax.struct.dataclass
class StyleState:
  """The optimization of one image: checkpointing it and the step is a resume."""
  step: jax.Array
  image: jax.Array  # the optimized pixels [1, H, W, 3], unconstrained
  opt_state: optax.OptState
  history: jax.Array  # [num_steps, len(TERMS)]: the terms at the image before each step; NaN after


def make_optimizer(name: str, learning_rate: float) -> optax.GradientTransformationExtraArgs:
  if name == "lbfgs":
    return optax.lbfgs(learning_rate, memory_size=LBFGS_MEMORY, linesearch=(
        optax.scale_by_zoom_linesearch(MAX_LINESEARCH_STEPS, initial_guess_strategy="one")))
  if name == "adam":
    return optax.adam(learning_rate)
  raise ConfigError(f"unknown optimizer {name!r}; accepted: {', '.join(OPTIMIZERS)}")


def objective(image, feature_params, targets, *, model, content_layer: str,
              style_layers: tuple[str, ...], weights: tuple[float, float, float]):
  """(L(image), {term: value}) of the module docstring."""
  features = style.channel_features(model, feature_params, image,
                                    (content_layer,) + tuple(style_layers))
  terms = {"content_loss": style.content_loss(features[content_layer], targets["content"]),
           "style_loss": style.style_loss(features, targets["grams"]),
           "tv_loss": style.total_variation(image)}
  content_weight, style_weight, tv_weight = weights
  total = (content_weight * terms["content_loss"] + style_weight * terms["style_loss"]
           + tv_weight * terms["tv_loss"])
  return total, terms


def _record(state: StyleState, total, terms) -> jax.Array:
  row = jnp.stack([total] + [terms[k] for k in TERMS[1:]])
  return state.history.at[state.step].set(row)


def adam_step(state: StyleState, feature_params, targets, *, tx, loss_fn):
  """One Adam step on the pixels."""
  (total, terms), grad = jax.value_and_grad(loss_fn, has_aux=True)(state.image, feature_params,
                                                                    targets)
  updates, opt_state = tx.update(grad, state.opt_state, state.image)
  new_state = state.replace(step=state.step + 1, image=optax.apply_updates(state.image, updates),
                            opt_state=opt_state, history=_record(state, total, terms))
  return new_state, {"loss": total, **terms, "grad_norm": optax.tree.norm(grad)}


def lbfgs_step(state: StyleState, feature_params, targets, *, tx, loss_fn):
  """One L-BFGS step with its line search; the value and gradient at the current image come
  from the line search of the previous step (computed on the first)."""
  value_fn = lambda image: loss_fn(image, feature_params, targets)[0]
  value, grad = optax.value_and_grad_from_state(value_fn)(state.image, state=state.opt_state)
  _, terms = loss_fn(state.image, feature_params, targets)  # the terms: a forward pass
  updates, opt_state = tx.update(grad, state.opt_state, state.image, value=value, grad=grad,
                                 value_fn=value_fn)
  new_state = state.replace(step=state.step + 1, image=optax.apply_updates(state.image, updates),
                            opt_state=opt_state, history=_record(state, value, terms))
  linesearch = optax.tree.get(opt_state, "num_linesearch_steps")
  return new_state, {"loss": value, **terms, "grad_norm": optax.tree.norm(grad),
                     "linesearch_steps": linesearch.astype(jnp.float32)}


def train_features(model, dataset: str, steps: int, batch_size: int, seed: int, data_dir,
                   mesh) -> tuple[dict, float]:
  """`model` trained as a classifier of `dataset` for `steps` Adam steps (pure in `seed`):
  (params, accuracy on the first FEATURE_TEST_IMAGES test images)."""
  train, _, test = pipeline.train_val_test(mnist.load(dataset, data_dir), val_size=0)
  test = pipeline.Split(test.images[:FEATURE_TEST_IMAGES], test.labels[:FEATURE_TEST_IMAGES])
  rng = jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 1))
  state = classification.create_train_state(model, optax.adam(FEATURE_LEARNING_RATE), rng,
                                            train.images.shape[1:])
  train_step = jax.jit(classification.train_step, donate_argnums=0)
  batches = pipeline.StepBatches(train, batch_size, seed)
  for step in range(steps):
    state, _ = train_step(state, batches(step))
  accuracy = classification.evaluate_split(state, test, 500, mesh,
                                           jax.jit(classification.eval_step))["accuracy"]
  return jax.device_get(state.params), accuracy


class StyleTransfer(Task):
  """One stylized image: `content` in the style of `style`; see the module docstring."""

  SINGLE_PROCESS = "it optimizes one image: there is no batch to split"
  CHECKS = {
      "content": checks.one_of(*style.CONTENT_PHOTOS),
      "style": checks.one_of(*style.STYLE_IMAGES),
      "image_size": checks.int_at_least(8),
      "features": checks.one_of(*FEATURES),
      "model": checks.one_of(*FEATURE_MODELS),
      "model_kwargs": checks.hyper_parameters,
      "content_layer": checks.string,  # layer names: checked against the model in `validate`
      "style_layers": checks.string_tuple,
      "content_weight": checks.nonnegative_number,
      "style_weight": checks.nonnegative_number,
      "tv_weight": checks.nonnegative_number,
      "optimizer": checks.one_of(*OPTIMIZERS),
      "learning_rate": checks.positive_number,
      "num_steps": checks.positive_int,
      "init": checks.one_of(*INITS),
      "feature_dataset": checks.one_of(*mnist.NAMES),
      "feature_steps": checks.positive_int,
      "feature_batch_size": checks.positive_int,
  }

  @classmethod
  def validate(cls, config):
    kwargs = cls.model_kwargs(config)
    model = registry.build(config.model, **kwargs)
    if model.pooling not in style_features.POOLINGS:
      raise ConfigError(f"model_kwargs.pooling={model.pooling!r}; accepted: "
                        f"{', '.join(style_features.POOLINGS)}")
    if not model.widths or min(model.widths) < 1:
      raise ConfigError(f"model_kwargs.widths={tuple(model.widths)!r} must be one or more "
                        "integers >= 1")
    names = style_features.layer_names(model.widths, model.convs_per_block)
    for key, layers in (("content_layer", (config.content_layer,)),
                        ("style_layers", tuple(config.style_layers))):
      unknown = [name for name in layers if name not in names]
      if unknown or not layers:
        raise ConfigError(f"{key}={getattr(config, key)!r} must name layers of {config.model} "
                          f"with these model_kwargs; accepted: {', '.join(names)}")
    deepest = max(names.index(n) for n in (config.content_layer, *config.style_layers))
    pools = deepest // model.convs_per_block
    if config.image_size < 2 ** pools:
      raise ConfigError(f"image_size={config.image_size} is too small for layer "
                        f"{names[deepest]} (after {pools} 2x2 pools); accepted: >= {2 ** pools}")
    if not (config.content_weight or config.style_weight):
      raise ConfigError("content_weight=0 and style_weight=0: set at least one > 0")

  @staticmethod
  def model_kwargs(config) -> dict:
    """`config.model_kwargs` with the classes of the feature dataset (unused with random
    features, whose head is never applied)."""
    return {**config.model_kwargs.to_dict(), "num_classes": mnist.NUM_CLASSES}

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.model = registry.build(config.model, **self.model_kwargs(config))
    self.content = style.photo(config.content, config.image_size)[None]
    self.style = style.photo(config.style, config.image_size)[None]
    if config.features == "trained":
      self.feature_params, self.feature_accuracy = train_features(
          self.model, config.feature_dataset, config.feature_steps, config.feature_batch_size,
          config.seed, config.data_dir or None, mesh)
      logging.info("features: %s trained for %d steps on %s, test accuracy %.2f%%",
                   config.model, config.feature_steps, config.feature_dataset,
                   100 * self.feature_accuracy)
    else:
      key = jax.random.fold_in(jax.random.key(config.seed), 1)
      self.feature_params = jax.jit(lambda k: self.model.init(
          k, jnp.zeros((1, 28, 28, 1)))["params"])(key)
      self.feature_accuracy = None
    layers = tuple(dict.fromkeys((config.content_layer, *config.style_layers)))
    extract = jax.jit(functools.partial(style.channel_features, self.model, layers=layers))
    content_features = extract(self.feature_params, self.content)
    style_maps = extract(self.feature_params, self.style)
    self.targets = {"content": content_features[config.content_layer],
                    "grams": {name: style.gram_matrix(style_maps[name])[0]
                              for name in config.style_layers}}
    self.tx = make_optimizer(config.optimizer, config.learning_rate)
    self.loss_fn = functools.partial(
        objective, model=self.model, content_layer=config.content_layer,
        style_layers=tuple(config.style_layers),
        weights=(config.content_weight, config.style_weight, config.tv_weight))
    step_fn = lbfgs_step if config.optimizer == "lbfgs" else adam_step
    self._step = jit_step(functools.partial(step_fn, tx=self.tx, loss_fn=self.loss_fn),
                          donate_argnums=0)
    self._terms = jax.jit(self.loss_fn)

  def plan(self) -> Plan:
    steps = self.config.num_steps
    return Plan(steps, steps, "iterations", 1)

  def position(self, step: int) -> str:
    return f"iteration {step}/{self.config.num_steps}"

  def init(self, key) -> StyleState:
    if self.config.init == "noise":
      image = jax.random.uniform(key, self.content.shape, jnp.float32)
    else:
      image = jnp.asarray(self.content)
    history = jnp.full((self.config.num_steps, len(TERMS)), jnp.nan, jnp.float32)
    # Strong dtypes: the line search's state starts with weakly typed scalars, which the first
    # step would make strong (a second trace of the step).
    opt_state = jax.tree.map(lambda x: jnp.asarray(x, x.dtype), self.tx.init(image))
    return StyleState(step=jnp.zeros((), jnp.int32), image=image, opt_state=opt_state,
                      history=history)

  def advance(self, state, step, stop):
    del stop
    state, logs = self._step(state, self.feature_params, self.targets)
    return state, step + 1, {"train": logs}

  def finish(self, state, step, out_dir):
    config = self.config
    image = np.asarray(jax.device_get(state.image))
    result = np.clip(image, 0.0, 1.0)
    total, terms = jax.device_get(self._terms(jnp.asarray(result), self.feature_params,
                                              self.targets))
    history = np.asarray(jax.device_get(state.history))[:step]
    final = {"loss": float(total), **{k: float(v) for k, v in terms.items()}}
    initial = dict(zip(TERMS, map(float, history[0])))
    outside = float(np.mean((image < 0) | (image > 1)))
    metrics = {**{f"final_{k}": v for k, v in final.items()},
               **{f"initial_{k}": v for k, v in initial.items()},
               "pixels_clipped": outside}
    summary = {"content": config.content, "style": config.style, "features": config.features,
               "optimizer": config.optimizer, "image_size": config.image_size,
               "feature_test_accuracy": self.feature_accuracy, **metrics}
    what = (f"{config.content} in the style of {config.style}, {config.features} features, "
            f"{config.optimizer}, {step} iterations")
    if out_dir is not None:
      self._figures(result[0], history, what, out_dir)
    headline = (f"{what}: style loss {initial['style_loss']:.4g} -> {final['style_loss']:.4g}, "
                f"content loss {initial['content_loss']:.4g} -> {final['content_loss']:.4g}, "
                f"objective {initial['loss']:.4g} -> {final['loss']:.4g}")
    return summary, {"final": metrics}, headline

  def _figures(self, result, history, title, out_dir):
    """stylized.png (content, style, result), result.png (the result alone) and
    style_losses.png (the weighted terms and the objective per iteration)."""
    plt = plots.pyplot()
    plt.imsave(out_dir / "result.png", result)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    for ax, name, picture in zip(axes, (f"content: {self.config.content}",
                                        f"style: {self.config.style}", "result"),
                                 (self.content[0], self.style[0], result)):
      ax.imshow(picture)
      ax.set_title(name, fontsize=9)
      ax.set_xticks([])
      ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "stylized.png", dpi=110)
    plt.close(fig)

    config = self.config
    weights = {"content_loss": config.content_weight, "style_loss": config.style_weight,
               "tv_loss": config.tv_weight}
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = np.arange(1, len(history) + 1)
    ax.plot(steps, history[:, 0], label="objective", color="black")
    for i, name in enumerate(TERMS[1:], start=1):
      if weights[name]:
        ax.plot(steps, weights[name] * history[:, i], label=f"{weights[name]:g} x {name}")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "style_losses.png", dpi=110)
    plt.close(fig)
