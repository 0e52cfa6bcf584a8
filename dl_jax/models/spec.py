"""What a registered model promises (`ModelSpec`), and the input families it can be fed.

A model module exports its specs as `SPECS = (ModelSpec(...), ...)`; `dl_jax.models.registry`
imports the modules and builds the one table. This module imports no model and no registry.

Families, by what a model takes and returns (batch = the number of examples):

- image: images [batch, 28, 28, 1] (MNIST, section 2.5.1; a spec's `example_shape` may set
  another, e.g. 224x224x3 for the ImageNet configurations of section 5.3.2) -> logits
  [batch, num_classes];
- signal: 1-D signals [batch, 40, 1] (MNIST-1D) -> logits [batch, num_classes];
- set: sets of 16 points in 3-D [batch, 16, 3] (section 4.4) -> logits [batch, num_classes];
- node: a `jraph.GraphsTuple` of `batch` graphs (section 6.1) -> logits per node
  [N, num_classes];
- graph: the same batch of graphs -> logits per graph [batch, num_classes];
- point_cloud: systems of 5 charged particles in 3-D {"positions" [batch, 5, 3], "velocities"
  [batch, 5, 3], "charges" [batch, 5, 1]} (the N-body task) -> positions [batch, 5, 3];
- autoencoder: images [batch, 28, 28, 1] -> a logit per pixel [batch, 28, 28, 1] (section
  5.5.1; the models also have `encode` and `decode`);
- vae: images [batch, 28, 28, 1] -> the Bernoulli logits of the reconstruction from the mean
  code [batch, 28, 28, 1] (variational autoencoders, section 1.5; `encode` gives the mean and
  log-variance of q(z|x), `decode` the logits of p(x|z));
- autoregressive: binary images [batch, 28, 28, 1] -> a Bernoulli logit per pixel [batch, 28,
  28, 1], the logit at pixel i a function of the pixels before i in raster order only
  (PixelCNN; autoregressive models and density estimation, section 1.5);
- gan: images [batch, 28, 28, 1] -> the discriminator's logit [batch, 1] (generative
  adversarial networks, section 1.5; `generate(z)` maps codes [batch, latent_dim] to images
  [batch, 28, 28, 1] in [-1, 1]);
- embedding: images [batch, 28, 28, 1] -> embeddings [batch, embed_dim] (section 5.5.2);
- localizer: canvases [batch, S, S, 1] (S = hp "image_size"; section 5.3.3) -> one object's
  box and class [batch, 4 + num_classes]: 4 box outputs, then class logits;
- detector: the same canvases -> a YOLO grid [batch, G, G, boxes_per_cell * 5 + num_classes]
  (G = hp "grid"; section 5.3.3);
- dense: images [batch, S, S, in_channels] -> a map of the same size [batch, S, S,
  out_channels]: class logits per pixel (segmentation, section 5.3.4) or pixel values
  (denoising, section 5.3.5);
- dense_1d: signals [batch, L, 1] (L = hp "length") -> [batch, L, out_channels] (denoising
  of 1-D signals);
- text: the n - 1 previous word ids [batch, context_size] (section 3.2) -> logits over the
  vocabulary [batch, vocab_size];
- sequence: sequences [batch, T, F] -> logits [batch, num_classes] (recurrent networks; the
  examples are [batch, 20, 1], and the parameter count, which does not depend on T, is that of
  pixel-by-pixel MNIST, 784 steps of 1 pixel);
- char_lm: character ids [batch, T] int32 -> logits over the vocabulary [batch, T,
  num_classes] (num_classes: the number of characters) at every step, the logit at t a function
  of the characters up to t only (character-level language models, section 1.5; the examples
  are [batch, 20]).

Every model is called as `model.apply(variables, *spec.example_inputs(...))` for evaluation
(its other arguments, `train` or `deterministic`, default to evaluation).
"""

import dataclasses
import types
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np

# The collection into which a model sows the logits of its auxiliary classifiers in training
# (GoogLeNet, section 5.3.2); the classification task adds their weighted loss.
AUX_LOGITS = "aux_logits"
GRAPH_FEATURES = 8  # node features of the example graphs
_GRAPH_SIZES = (5, 1, 3, 6)  # nodes of example graph i: _GRAPH_SIZES[i % 4]
SEQUENCE_STEPS = 20  # time steps of the example sequences


def count_params(variables) -> int:
  """The number of scalars in a pytree of arrays (e.g. `variables["params"]`)."""
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables))


def _normal(batch: int, shape: tuple[int, ...], dtype) -> jax.Array:
  return jnp.asarray(np.random.default_rng(0).standard_normal((batch, *shape)), dtype)


def _bits(batch: int, shape: tuple[int, ...], dtype) -> jax.Array:
  """Deterministic binary images: Bernoulli(1/2) pixels in `dtype`."""
  return jnp.asarray(np.random.default_rng(0).random((batch, *shape)) < 0.5, dtype)


def example_graphs(batch: int, dtype=jnp.float32, features: int = GRAPH_FEATURES
                   ) -> jraph.GraphsTuple:
  """`batch` graphs of 5, 1, 3, 6, 5, ... nodes, each a ring stored in both directions (a
  single node has no edge), N(0, 1) node features [N, features] in `dtype`, no edge features."""
  sizes = [_GRAPH_SIZES[i % len(_GRAPH_SIZES)] for i in range(batch)]
  senders, receivers, offset = [], [], 0
  for n in sizes:
    if n > 1:
      ring = np.arange(n)
      senders += [offset + ring, offset + (ring + 1) % n]
      receivers += [offset + (ring + 1) % n, offset + ring]
    offset += n
  cat = lambda parts: jnp.asarray(np.concatenate(parts) if parts else np.zeros(0), jnp.int32)
  senders, receivers = cat(senders), cat(receivers)
  n_edge = [2 * n if n > 1 else 0 for n in sizes]
  return jraph.GraphsTuple(
      nodes=_normal(offset, (features,), dtype), edges=None, senders=senders,
      receivers=receivers, n_node=jnp.asarray(sizes, jnp.int32),
      n_edge=jnp.asarray(n_edge, jnp.int32), globals=None)


def example_point_clouds(batch: int, dtype=jnp.float32, points: int = 5) -> dict:
  """`batch` systems of `points` particles: N(0, 1) positions, N(0, 0.25) velocities, charges
  +-1 (float, [batch, points, 1])."""
  rng = np.random.default_rng(0)
  return {"positions": jnp.asarray(rng.standard_normal((batch, points, 3)), dtype),
          "velocities": jnp.asarray(0.5 * rng.standard_normal((batch, points, 3)), dtype),
          "charges": jnp.asarray(rng.choice([-1.0, 1.0], (batch, points, 1)), dtype)}


@dataclasses.dataclass(frozen=True)
class Family:
  """How to feed one kind of model: example inputs and the output shape, as functions of the
  batch and the model's hyper-parameters `hp`."""
  name: str
  inputs: Callable[[int, Any, Mapping[str, Any]], tuple]  # (batch, dtype, hp) -> args
  output_shape: Callable[[int, Mapping[str, Any]], tuple[int, ...]]  # (batch, hp) -> shape
  rows_independent: bool  # output row i depends on example i alone (no batch statistics)
  description: str


FAMILIES: Mapping[str, Family] = types.MappingProxyType({f.name: f for f in (
    Family("image", lambda b, dtype, hp: (_normal(b, (28, 28, 1), dtype),),
           lambda b, hp: (b, hp["num_classes"]), True, "28x28 grey-scale digits"),
    Family("signal", lambda b, dtype, hp: (_normal(b, (40, 1), dtype),),
           lambda b, hp: (b, hp["num_classes"]), True, "1-D signals of 40 samples"),
    Family("set", lambda b, dtype, hp: (_normal(b, (16, 3), dtype),),
           lambda b, hp: (b, hp["num_classes"]), True, "sets of 16 points in 3-D"),
    Family("node", lambda b, dtype, hp: (example_graphs(b, dtype),),
           lambda b, hp: (sum(_GRAPH_SIZES[i % len(_GRAPH_SIZES)] for i in range(b)),
                          hp["num_classes"]), False, "node classification on graphs"),
    Family("graph", lambda b, dtype, hp: (example_graphs(b, dtype),),
           lambda b, hp: (b, hp["num_classes"]), False, "graph classification"),
    Family("point_cloud", lambda b, dtype, hp: (example_point_clouds(b, dtype),),
           lambda b, hp: (b, 5, 3), True, "dynamics of charged particles in 3-D"),
    Family("autoencoder", lambda b, dtype, hp: (_normal(b, (28, 28, 1), dtype),),
           lambda b, hp: (b, 28, 28, 1), True, "images reconstructed through a code"),
    Family("vae", lambda b, dtype, hp: (_normal(b, (28, 28, 1), dtype),),
           lambda b, hp: (b, 28, 28, 1), True, "variational autoencoders of binary images"),
    Family("autoregressive", lambda b, dtype, hp: (_bits(b, (28, 28, 1), dtype),),
           lambda b, hp: (b, 28, 28, 1), True, "a logit per pixel from the pixels before it"),
    Family("gan", lambda b, dtype, hp: (_normal(b, (28, 28, 1), dtype),),
           lambda b, hp: (b, 1), True, "a discriminator's logit, and a generator of images"),
    Family("embedding", lambda b, dtype, hp: (_normal(b, (28, 28, 1), dtype),),
           lambda b, hp: (b, hp["embed_dim"]), True, "images embedded in a metric space"),
    Family("localizer", lambda b, dtype, hp: (_normal(b, (hp["image_size"],) * 2 + (1,), dtype),),
           lambda b, hp: (b, 4 + hp["num_classes"]), True, "one object's box and class"),
    Family("detector", lambda b, dtype, hp: (_normal(b, (hp["image_size"],) * 2 + (1,), dtype),),
           lambda b, hp: (b, hp["grid"], hp["grid"],
                          hp["boxes_per_cell"] * 5 + hp["num_classes"]), True,
           "boxes and classes on a grid of cells (YOLO)"),
    Family("dense", lambda b, dtype, hp: (_normal(b, (hp["image_size"],) * 2
                                                  + (hp["in_channels"],), dtype),),
           lambda b, hp: (b, hp["image_size"], hp["image_size"], hp["out_channels"]), True,
           "a value or class logits per pixel"),
    Family("dense_1d", lambda b, dtype, hp: (_normal(b, (hp["length"], 1), dtype),),
           lambda b, hp: (b, hp["length"], hp["out_channels"]), True,
           "a value per sample of a 1-D signal"),
    Family("text", lambda b, dtype, hp: (jnp.asarray(np.random.default_rng(0).integers(
        0, hp["vocab_size"], (b, hp["context_size"])), jnp.int32),),
           lambda b, hp: (b, hp["vocab_size"]), True, "next-word prediction from word ids"),
    Family("sequence", lambda b, dtype, hp: (_normal(b, (SEQUENCE_STEPS, 1), dtype),),
           lambda b, hp: (b, hp["num_classes"]), True, "sequences of steps, one class each"),
    Family("char_lm", lambda b, dtype, hp: (jnp.asarray(np.random.default_rng(0).integers(
        0, hp["num_classes"], (b, SEQUENCE_STEPS)), jnp.int32),),
           lambda b, hp: (b, SEQUENCE_STEPS, hp["num_classes"]), True,
           "the next character's logits at every step"),
)})


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """One registered model.

  Attributes:
    name: the registry key (`--config.model=<name>`).
    family: a key of `FAMILIES`: what the model takes and returns.
    factory: hyper-parameters -> `nn.Module`.
    defaults: EVERY hyper-parameter of the model with its default, so that
      `--config.model_kwargs.<key>=value` is valid for any key of it; "dtype" is the compute
      dtype (parameters are float32 whatever it is).
    param_count: the number of parameters with the defaults on `example_inputs`; pinned, the
      registry test checks it.
    symmetries: names from `dl_jax.symmetry.vocabulary` the model declares (and the symmetry
      tests check).
    description: one line, citing the course section.
    example_shape: one example's input shape when not the family's (array families only).
    full_size: a published full-size configuration (e.g. ImageNet, 224x224x3, 1000 classes):
      the registry test checks its parameters and output abstractly (`jax.eval_shape`), without
      allocating or running it.
  """
  name: str
  family: str
  factory: Callable[..., nn.Module]
  defaults: Mapping[str, Any]
  param_count: int
  symmetries: tuple[str, ...] = ()
  description: str = ""
  example_shape: tuple[int, ...] | None = None
  full_size: bool = False

  def __post_init__(self):
    object.__setattr__(self, "defaults", types.MappingProxyType(dict(self.defaults)))

  def hyperparameters(self, **overrides) -> dict[str, Any]:
    return {**self.defaults, **overrides}

  def example_inputs(self, batch: int = 2, dtype=jnp.float32, **overrides) -> tuple:
    """The positional arguments of one call on `batch` examples: deterministic N(0, 1) floats
    in `dtype` (word ids stay int32), for the defaults updated by `overrides`."""
    if self.example_shape is not None:
      return (_normal(batch, self.example_shape, dtype),)
    return FAMILIES[self.family].inputs(batch, dtype, self.hyperparameters(**overrides))

  def output_shape(self, batch: int = 2, **overrides) -> tuple[int, ...]:
    """The shape of the model's output on `example_inputs(batch)`."""
    return FAMILIES[self.family].output_shape(batch, self.hyperparameters(**overrides))

  @property
  def input_shape(self) -> tuple[int, ...] | None:
    """One example's shape without the batch axis (None for graphs, which have none)."""
    x = self.example_inputs(1)[0]
    return None if isinstance(x, jraph.GraphsTuple) else tuple(x.shape[1:])

  @property
  def num_outputs(self) -> int:
    return self.output_shape(1)[-1]
