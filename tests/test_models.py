"""One parameterized test over every registered model of every family (`dl_jax.models.registry`),
in float32 and bfloat16 (deeper variants of one table in float32, without the eager run: their
shallowest covers those), init shapes, pinned parameter count, jit == eager (float32), output
shape, output dtype (the compute dtype) and parameter dtype (float32 always), finite outputs, rows
independent where the family allows. A model added to a module's `SPECS` is tested here without
further work. Then the registry's API and messages."""

import dataclasses
import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax.errors import ConfigError
from dl_jax.models import registry
from dl_jax.models.spec import FAMILIES, count_params

KEY = jax.random.PRNGKey(0)
# Random bits from one RngBitGenerator op: deep models' `init` compiles in a fraction of the time
# threefry's unrolled hash takes (the values do not matter here, only shapes and dtypes).
INIT_KEY = jax.random.key(0, impl="unsafe_rbg")
DTYPES = ("float32", "bfloat16")
TOLERANCE = {"float32": 1e-5, "bfloat16": 3e-2}  # relative to the output scale
BATCH = 3


def _close(a, b, dtype):
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  tol = TOLERANCE[dtype] * max(1.0, float(np.abs(b).max()))
  np.testing.assert_allclose(a, b, rtol=TOLERANCE[dtype], atol=tol)


@functools.lru_cache(maxsize=None)
def _variables(name: str):
  """The model's variables, initialised once per model: parameters are float32 whatever the
  compute dtype (the test checks each dtype's `init` abstractly against them)."""
  spec = registry.get(name)
  return jax.jit(registry.build(name).init)(INIT_KEY, *spec.example_inputs(BATCH, jnp.float32))


@functools.lru_cache(maxsize=None)
def _setup(name: str, dtype: str):
  spec = registry.get(name)
  model = registry.build(name, dtype=dtype)
  args = spec.example_inputs(BATCH, jnp.float32)  # float32 data, as the pipelines give it
  return spec, model, args, _variables(name)


def _row_0_among_copies(apply, variables, args):
  """Output row 0 when every other input row is a copy of row 0: equal to row 0 of the output
  of the original batch if rows are independent (same shapes: the compiled `apply` is reused)."""
  row_0_everywhere = jax.tree.map(lambda a: jnp.broadcast_to(a[:1], a.shape), args)
  return apply(variables, *row_0_everywhere)[:1]


def test_the_rows_check_fails_on_a_model_that_mixes_rows():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((BATCH, 4)), jnp.float32)
  apply = jax.jit(lambda variables, x: x - jnp.mean(x, axis=0) * variables)  # batch centring
  with pytest.raises(AssertionError):
    _close(_row_0_among_copies(apply, 1.0, (x,)), apply(1.0, x)[:1], "float32")
  _close(_row_0_among_copies(apply, 0.0, (x,)), apply(0.0, x)[:1], "float32")  # rows alone


FULL_SIZE = [n for n in registry.names() if registry.get(n).full_size]
RUNNABLE = [n for n in registry.names() if n not in FULL_SIZE]
# Deeper variants built by the same code from the same table as a shallower one, whose eager
# run and bfloat16 run cover theirs (they are run in float32, jitted).
COVERED_BY = {"resnet34_small": "resnet18_small", "resnet101_small": "resnet50_small",
              "resnet152_small": "resnet50_small", "vgg13_small": "vgg11_small",
              "vgg16_small": "vgg11_small", "vgg19_small": "vgg11_small",
              "wrn28_10_small": "wrn16_4_small"}


def test_deeper_variants_share_the_code_of_the_variant_that_covers_them():
  for deeper, checked in COVERED_BY.items():
    assert checked in RUNNABLE and checked not in COVERED_BY
    assert type(registry.build(deeper)) is type(registry.build(checked)), deeper


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_model_abstractly(name, dtype):
  """Published full-size configurations: parameter count, parameter and output dtypes and the
  output shape, from shapes alone (nothing allocated, nothing run)."""
  spec = registry.get(name)
  model = registry.build(name, dtype=dtype)
  args = [jax.ShapeDtypeStruct((BATCH, *spec.example_shape), jnp.float32)]
  variables = jax.eval_shape(model.init, KEY, *args)
  assert count_params(variables["params"]) == spec.param_count
  for leaf in jax.tree.leaves(variables):
    assert leaf.dtype == jnp.float32, (name, leaf.dtype)
  out = jax.eval_shape(model.apply, variables, *args)
  assert out.shape == spec.output_shape(BATCH) and out.dtype == jnp.dtype(dtype)


@pytest.mark.parametrize("name, dtype", [(name, dtype) for name in RUNNABLE for dtype in DTYPES
                                         if dtype == "float32" or name not in COVERED_BY])
def test_registered_model(name, dtype):
  spec, model, args, variables = _setup(name, dtype)
  shapes = jax.eval_shape(model.init, KEY, *args)
  chex.assert_trees_all_equal_shapes_and_dtypes(variables, shapes)
  assert count_params(variables["params"]) == spec.param_count
  for leaf in jax.tree.leaves(variables):  # parameters and batch statistics
    assert leaf.dtype == jnp.float32, (name, leaf.dtype)

  apply = jax.jit(model.apply)
  out = apply(variables, *args)
  assert out.shape == spec.output_shape(BATCH) and out.dtype == jnp.dtype(dtype)
  chex.assert_tree_all_finite(out)
  if dtype == "float32":  # jit == eager (once per model: eager op-by-op compiles are slow)
    if name not in COVERED_BY:
      _close(model.apply(variables, *args), out, dtype)
  else:  # inputs already in the compute dtype give the same outputs
    _close(apply(variables, *spec.example_inputs(BATCH, dtype)), out, dtype)
  if FAMILIES[spec.family].rows_independent:  # each row depends only on its own input
    _close(_row_0_among_copies(apply, variables, args), out[:1], dtype)


@pytest.mark.parametrize("name", registry.names())
def test_defaults_name_every_hyperparameter(name):
  """`--config.model_kwargs.<key>` is valid for every attribute of the module (but the ones
  the spec's factory fixes, such as the layer kind of a graph model)."""
  spec = registry.get(name)
  model = registry.build(name)
  fixed = set(getattr(spec.factory, "keywords", {}))
  fields = {f.name for f in dataclasses.fields(model) if f.init} - {"parent", "name"} - fixed
  assert fields == set(spec.defaults)
  assert spec.defaults["dtype"] == "float32" and spec.family in FAMILIES and spec.description
  assert registry.build(name, **spec.defaults) == model


def test_batch_norm_and_prelu_keep_float32_parameters_under_bfloat16():
  spec = registry.get("mnist_mlp")
  model = registry.build("mnist_mlp", batch_norm=True, activation="prelu", dropout_rate=0.1,
                         dtype="bfloat16")
  (x,) = spec.example_inputs(4)
  variables = model.init(KEY, x)
  out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"],
                             rngs={"dropout": KEY})
  assert out.dtype == jnp.bfloat16
  for leaf in jax.tree.leaves((variables, updates)):
    assert leaf.dtype == jnp.float32


def test_cnn_shapes_follow_section_5_3_1():
  model = registry.build("mnist_cnn")
  variables = jax.eval_shape(model.init, KEY, jnp.zeros((1, 28, 28, 1)))
  kernels = [variables["params"][k]["kernel"].shape for k in sorted(variables["params"])]
  assert kernels == [(5, 5, 1, 6), (5, 5, 6, 12), (5, 5, 12, 12), (108, 256), (256, 10)]


# ---------------------------------------------------------------------------------------------
# The registry's API and messages.

IMAGE_MODELS = [
    "alexnet", "alexnet_small", "blueprint_grid", "googlenet", "googlenet_small", "lenet5",
    "lenet5_relu", "mnist_cnn", "mnist_mlp", "p4cnn", "resnet101", "resnet101_small",
    "resnet152", "resnet152_small", "resnet18", "resnet18_small", "resnet34",
    "resnet34_small", "resnet50", "resnet50_small", "style_vgg", "vgg11", "vgg11_small",
    "vgg13", "vgg13_small", "vgg16", "vgg16_small", "vgg19", "vgg19_small", "wrn16_4_small",
    "wrn28_10", "wrn28_10_small"]


def test_names_partition_the_registry_by_family():
  assert registry.names() == sorted(registry.MODELS)
  by_family = {family: registry.names(family) for family in FAMILIES}
  assert sorted(sum(by_family.values(), [])) == registry.names()
  assert by_family["image"] == IMAGE_MODELS
  assert by_family["graph"] == ["graph_deepsets", "graph_gcn", "graph_gin"]
  assert by_family["vae"] == ["vae_conv", "vae_mlp"]
  assert by_family["gan"] == ["dcgan"]
  assert by_family["sequence"] == ["gru_classifier", "lstm_classifier", "rnn_classifier"]
  assert by_family["char_lm"] == ["gru_lm", "lstm_lm"]
  assert by_family["text"] == ["nplm"] and "gcn" in by_family["node"]
  assert registry.get("gcn", family="node").family == "node"


def test_unknown_model_and_hyperparameter():
  with pytest.raises(ConfigError, match="unknown model 'resnet9000'; registered models: "
                                        "ae_conv, ae_mlp, alexnet, alexnet_small, .*mnist_cnn"):
    registry.get("resnet9000")
  with pytest.raises(ConfigError, match=r"^unknown model 'gcn'; registered image models: "
                                        + re.escape(", ".join(IMAGE_MODELS))
                                        + r" \('gcn' is a node model\)$"):
    registry.get("gcn", family="image")
  with pytest.raises(ConfigError, match="unknown model 'mnist_cnn'; registered graph models: "
                                        "graph_deepsets, graph_gcn, graph_gin"):
    registry.get("mnist_cnn", family="graph")
  with pytest.raises(ConfigError, match="unknown model family 'video'; accepted: image, "
                                        "signal, set"):
    registry.names("video")
  with pytest.raises(ConfigError, match="^model 'mnist_mlp' has no hyper-parameter 'depth'; "
                                        "accepted: activation, batch_norm, dropout_rate, dtype, "
                                        "hidden, kernel_init, num_classes$"):
    registry.build("mnist_mlp", depth=3)


@pytest.mark.parametrize("key,value,accepted", [
    ("hidden", "64,64", "a tuple of ints (or a list), e.g. (256, 256)"),
    ("hidden", (64, 64.5), "a tuple of ints"),
    ("hidden", 64, "a tuple of ints"),
    ("num_classes", True, "an int, e.g. 10"),
    ("num_classes", 10.0, "an int"),
    ("dropout_rate", "0.1", "a number, e.g. 0.0"),
    ("batch_norm", 1, "a bool, e.g. False"),
    ("activation", None, "a string, e.g. 'relu'"),
])
def test_hyperparameters_of_the_wrong_type_are_one_config_error(key, value, accepted):
  with pytest.raises(ConfigError) as info:
    registry.build("mnist_mlp", **{key: value})
  message = str(info.value)
  assert message.startswith(f"model 'mnist_mlp': model_kwargs.{key}={value!r} (type "
                            f"{type(value).__name__}) has the wrong type; accepted: "), message
  assert accepted in message


def test_hyperparameters_are_normalized():
  model = registry.build("mnist_mlp", hidden=[64, np.int64(32)], dropout_rate=0,
                         dtype=jnp.bfloat16)
  assert model.hidden == (64, 32) and isinstance(model.dropout_rate, float)
  assert model.dtype == jnp.dtype("bfloat16")
  assert registry.build("mnist_mlp").dtype == jnp.dtype("float32")
  assert type(registry.build("gcn", num_classes=np.int64(5)).num_classes) is int
  assert registry.build("p4cnn", pool_after=[0]).pool_after == (0,)
  for bad in ("int8", "float", None):
    with pytest.raises(ConfigError, match=f"model_kwargs.dtype={bad!r} is not a compute dtype; "
                                          "accepted: bfloat16, float16, float32, float64"):
      registry.build("gcn", dtype=bad)


def test_example_inputs_follow_the_hyperparameters():
  spec = registry.get("nplm")
  (contexts,) = spec.example_inputs(5, context_size=2, vocab_size=10)
  assert contexts.shape == (5, 2) and contexts.dtype == jnp.int32
  assert 0 <= int(contexts.min()) and int(contexts.max()) < 10
  assert spec.output_shape(5, vocab_size=10) == (5, 10)
  (graph,) = registry.get("gcn").example_inputs(4)
  assert graph.n_node.tolist() == [5, 1, 3, 6] and graph.n_edge.tolist() == [10, 0, 6, 12]
  assert registry.get("gcn").output_shape(4) == (15, 7)
