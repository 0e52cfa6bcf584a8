"""Structural tests of the CNN architectures of section 5.3.2 (`dl_jax.models.lenet`, `alexnet`,
`vgg`, `googlenet`, `resnet`), beyond what the registry test checks for every model: the
published variants' parameter counts (torchvision's), the ResNet stages, strides and residual
options, GoogLeNet's auxiliary heads, dropout, the LeNet-5 connection table and Krizhevsky's
response normalization against direct formulas.

Kept fast: full-size (224x224) models only through `jax.eval_shape`; the others on small inputs,
mostly with parameters drawn by numpy from the abstract shapes (an eager or jitted `init` of a
deep network compiles one random-number kernel per parameter shape, which is slow on CPU)."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax.models import alexnet, googlenet, lenet, registry, resnet, vgg
from dl_jax.models.spec import AUX_LOGITS, count_params

KEY = jax.random.PRNGKey(0)
IMAGENET = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)


def _abstract_params(model, x=IMAGENET):
  return jax.eval_shape(model.init, KEY, x)["params"]


def _random_variables(model, x, seed=0):
  """Variables of `model` for input `x` without running its init: kernels N(0, 2 / fan_in),
  biases N(0, 0.1^2) (so that bias bugs show), BN scales and variances 1, means 0."""
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    name = path[-1].key
    if name in ("scale", "var"):
      return jnp.ones(s.shape, s.dtype)
    if name == "mean":
      return jnp.zeros(s.shape, s.dtype)
    if name == "bias":
      return jnp.asarray(0.1 * rng.standard_normal(s.shape), s.dtype)
    fan_in = math.prod(s.shape[:-1]) or 1
    return jnp.asarray(rng.standard_normal(s.shape) * np.sqrt(2.0 / fan_in), s.dtype)
  return jax.tree_util.tree_map_with_path(leaf, jax.eval_shape(model.init, KEY, x))


def _images(shape, seed=1):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


@pytest.mark.parametrize("name", ["alexnet_small", "vgg11_small", "googlenet_small",
                                  "resnet18_small"])
def test_cpu_convolutions_equal_xla_in_every_architecture(name):
  """conv_impl 'auto' (on the CPU: `dl_jax.nn.conv`'s Eigen convolutions with the gradients
  written out) and 'xla' give the same training-mode logits, batch statistics and parameter
  gradients, in float64 to rounding; a model with one kernel changed (the negative control)
  does not."""
  x = np.random.default_rng(1).standard_normal((2, 28, 28, 1))
  with jax.enable_x64(True):
    models = {impl: registry.build(name, conv_impl=impl, dtype="float64")
              for impl in ("auto", "xla")}
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                             _random_variables(models["xla"], jnp.zeros((1, 28, 28, 1))))

    def gradient(model):
      def loss(params, variables):
        logits, state = model.apply({**variables, "params": params}, jnp.asarray(x), train=True,
                                    mutable=["batch_stats", AUX_LOGITS],
                                    rngs={"dropout": jax.random.PRNGKey(2)})
        return jnp.sum(jnp.sin(logits)), (logits, state.get("batch_stats"))
      grad = jax.jit(jax.grad(loss, has_aux=True))
      return lambda variables: grad(variables["params"], variables)

    ours, xla = gradient(models["auto"]), gradient(models["xla"])
    reference = xla(variables)
    # Relative to the largest entry of each of (gradients, logits, batch statistics): the
    # gradients of biases before a batch norm are zero up to rounding.
    parts = lambda out: (out[0], *out[1])  # gradients, logits, batch statistics (or None)
    # (in numpy: an eager jnp op per leaf would compile once per leaf shape)
    got_parts, want_parts = (jax.device_get(parts(out)) for out in (ours(variables), reference))
    for got_part, want_part in zip(got_parts, want_parts):
      scale = max((np.max(np.abs(a)) for a in jax.tree.leaves(want_part)), default=0)
      for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(got_part),
                                   jax.tree.leaves(want_part)):
        assert np.max(np.abs(got - want)) <= 1e-9 * scale, jax.tree_util.keystr(path)
    first_kernel = next(path for path, a in jax.tree_util.tree_leaves_with_path(variables)
                        if path[-1].key == "kernel" and a.ndim == 4 and a.shape[2] == 1)
    changed = jax.tree_util.tree_map_with_path(  # one tap of one filter: no batch norm undoes it
        lambda path, a: a.at[0, 0, 0, 0].add(0.5) if path == first_kernel else a, variables)
    assert not np.allclose(ours(changed)[1][0], reference[1][0], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Parameter counts of the published (torchvision) variants.

@pytest.mark.parametrize("aux,count", [(True, 13_004_888), (False, 6_624_904)])
def test_googlenet_with_torchvision_options_has_its_parameter_count(aux, count):
  model = googlenet.GoogLeNet(aux_logits=aux, **googlenet.TORCHVISION)
  assert count_params(_abstract_params(model)) == count
  assert googlenet.param_count(aux_logits=aux, **googlenet.TORCHVISION) == count
  # The paper's 5x5 branch: 25 - 9 more weights per 5x5-branch connection.
  paper = googlenet.GoogLeNet(aux_logits=aux, **{**googlenet.TORCHVISION, "branch5x5_kernel": 5})
  extra = 16 * sum(c[3] * c[4] for c in googlenet.INCEPTION.values())
  assert count_params(_abstract_params(paper)) == count + extra


def test_googlenet_paper_default_count_matches_the_table():
  spec = registry.get("googlenet")
  assert spec.param_count == googlenet.param_count(**spec.defaults)
  small = registry.get("googlenet_small")
  assert small.param_count == googlenet.param_count(**small.defaults)


def test_vgg16_with_batch_norm_has_torchvision_count():
  assert count_params(_abstract_params(vgg.VGG(config="D", batch_norm=True))) == 138_365_992


@pytest.mark.parametrize("config", sorted(vgg.CONFIGS))
def test_vgg_depth_is_the_number_of_weight_layers(config):
  params = _abstract_params(registry.build(f"vgg{vgg.DEPTHS[config]}_small"),
                            jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32))
  convs = [k for k in params if k.startswith("Conv")]
  dense = [k for k in params if k.startswith("Dense")]
  assert len(convs) + len(dense) == vgg.DEPTHS[config] and len(dense) == 3
  assert [params[k]["kernel"].shape[-1] for k in sorted(convs, key=lambda k: int(k[5:]))] == [
      v for v in vgg.CONFIGS[config] if v != "M"]


def test_alexnet_response_normalization_adds_no_parameters_but_changes_the_output():
  plain = alexnet.AlexNet(**{**registry.get("alexnet_small").defaults, "dtype": None})
  lrn = plain.clone(local_response_norm=True)
  x = _images((2, 28, 28, 1)) * 30  # large activations, so that the normalization matters
  variables = _random_variables(plain, x)
  assert count_params(_abstract_params(lrn, x)) == count_params(variables["params"])
  assert not np.allclose(plain.apply(variables, x), lrn.apply(variables, x), rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# ResNet: stages, strides, residual options.

@pytest.mark.parametrize("depth", sorted(resnet.STAGE_SIZES))
def test_resnet_stages_blocks_and_output_strides(depth):
  model = registry.build(f"resnet{depth}")
  variables = jax.eval_shape(model.init, KEY, IMAGENET)
  blocks = [k for k in variables["params"] if k.startswith("layer")]
  per_stage = [sum(k.startswith(f"layer{s}_") for k in blocks) for s in (1, 2, 3, 4)]
  assert per_stage == list(resnet.STAGE_SIZES[depth]) and len(blocks) == sum(per_stage)
  convs = [k for k in variables["params"]["layer1_0"] if k.startswith("conv")]
  assert len(convs) == (3 if resnet.BLOCKS[depth] == "bottleneck" else 2)
  # 2 (basic) or 3 (bottleneck) weight layers per block, plus the stem and the dense layer.
  assert len(convs) * len(blocks) + 2 == depth

  _, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, capture_intermediates=True), variables, IMAGENET)
  outs = state["intermediates"]
  expansion = 4 if resnet.BLOCKS[depth] == "bottleneck" else 1
  for s, (stride, width) in enumerate(zip((4, 8, 16, 32), (64, 128, 256, 512)), 1):
    shape = outs[f"layer{s}_{resnet.STAGE_SIZES[depth][s - 1] - 1}"]["__call__"][0].shape
    assert shape == (1, 224 // stride, 224 // stride, width * expansion), (s, shape)


def test_resnet_small_stem_keeps_28x28_in_the_first_stage():
  model = registry.build("resnet18_small")
  x = jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32)
  variables = jax.eval_shape(model.init, KEY, x)
  assert variables["params"]["conv1"]["kernel"].shape == (3, 3, 1, 64)
  _, state = jax.eval_shape(lambda v, x: model.apply(v, x, capture_intermediates=True),
                            variables, x)
  sides = [state["intermediates"][f"layer{s}_1"]["__call__"][0].shape[1] for s in (1, 2, 3, 4)]
  assert sides == [28, 14, 7, 4]


@pytest.mark.parametrize("name, depth, widen", [("wrn28_10", 28, 10), ("wrn28_10_small", 28, 10),
                                               ("wrn16_4_small", 16, 4)])
def test_wide_resnet_has_the_papers_stages_widths_and_depth(name, depth, widen):
  """WRN-d-k (Zagoruyko & Komodakis 2016, table 1): a 3x3 stem of 16, three stages of (d - 4) / 6
  pre-activation basic blocks 16k, 32k, 64k wide at strides 1, 2, 4."""
  spec = registry.get(name)
  x = jax.ShapeDtypeStruct((1, *(spec.example_shape or (28, 28, 1))), jnp.float32)
  model = registry.build(name)
  variables = jax.eval_shape(model.init, KEY, x)
  params = variables["params"]
  per_stage = (depth - 4) // 6
  blocks = sorted(k for k in params if k.startswith("layer"))
  assert blocks == sorted(f"layer{s}_{i}" for s in (1, 2, 3) for i in range(per_stage))
  convs = sum(k.startswith("conv") for b in blocks for k in params[b])
  assert convs == 6 * per_stage == depth - 4  # two 3x3 convolutions a block: d = 6N + 4
  assert params["conv1"]["kernel"].shape == (3, 3, x.shape[-1], 16)
  assert "final_bn" in params and all("preact_bn" in params[b] for b in blocks)
  assert [b for b in blocks if "downsample_conv" in params[b]] == ["layer1_0", "layer2_0",
                                                                   "layer3_0"]
  _, state = jax.eval_shape(lambda v, x: model.apply(v, x, capture_intermediates=True),
                            variables, x)
  side = x.shape[1]
  for s, width in enumerate((16 * widen, 32 * widen, 64 * widen), 1):
    shape = state["intermediates"][f"layer{s}_{per_stage - 1}"]["__call__"][0].shape
    assert shape == (1, -(-side // 2 ** (s - 1)), -(-side // 2 ** (s - 1)), width), (s, shape)


def test_resnet_needs_one_width_per_stage():
  model = resnet.ResNet(stage_sizes=(2, 2, 2), widths=(16, 32))
  with pytest.raises(ValueError, match=r"widths=\(16, 32\) must give one width per stage of "
                                       r"stage_sizes=\(2, 2, 2\)"):
    model.init(KEY, jnp.zeros((1, 28, 28, 1)))


_TINY = {"stage_sizes": (2, 1), "widths": (64, 128), "stem": "small", "num_classes": 3}


@functools.partial(jax.jit, static_argnums=0)
def _blocks(model, variables, x):
  """Each block's input and output, and its residual branch's output (the last BN in v1,
  the last conv in v2), at evaluation."""
  _, state = model.apply(variables, x, capture_intermediates=True)
  inter = state["intermediates"]
  names = [f"layer{s + 1}_{i}" for s, n in enumerate(model.stage_sizes) for i in range(n)]
  last = 3 if model.block == "bottleneck" else 2
  branch = f"conv{last}" if model.preactivation else f"bn{last}"
  stem = inter["conv1"]["__call__"][0]
  if not model.preactivation:
    stem = nn.relu(inter["bn1"]["__call__"][0])
  result, previous = {}, stem
  for name in names:
    block = inter[name]
    shortcut = previous
    if "downsample_conv" in block:
      shortcut = block["downsample_conv"]["__call__"][0]
      if not model.preactivation:
        shortcut = block["downsample_bn"]["__call__"][0]
    result[name] = (shortcut, block["__call__"][0], block[branch]["__call__"][0])
    previous = block["__call__"][0]
  return result


@pytest.mark.parametrize("block,preactivation", [("basic", False), ("bottleneck", False),
                                                 ("basic", True)])
def test_zero_init_residual_makes_every_block_its_shortcut(block, preactivation):
  model = resnet.ResNet(block=block, preactivation=preactivation, zero_init_residual=True,
                        **_TINY)
  x = _images((2, 8, 8, 1))
  variables = jax.jit(model.init)(KEY, x)
  last = f"bn{3 if block == 'bottleneck' else 2}"
  scales = {"/".join(k.key for k in path[:-1]): np.asarray(v) for path, v
            in jax.tree_util.tree_leaves_with_path(variables["params"]) if path[-1].key == "scale"}
  zeroed = sorted(k for k, v in scales.items() if np.all(v == 0))
  assert zeroed == sorted(f"{b}/{last}" for b in variables["params"] if b.startswith("layer"))
  assert all(np.all(v == 1) for k, v in scales.items() if k not in zeroed)
  finish = (lambda s: s) if preactivation else nn.relu  # v2 has no ReLU after the sum
  for name, (shortcut, out, branch) in _blocks(model, variables, x).items():
    assert np.all(np.asarray(branch) == 0), name
    np.testing.assert_array_equal(out, finish(shortcut), err_msg=name)
  # Negative control: the same network with the usual unit BN scales.
  ones = jax.tree_util.tree_map_with_path(
      lambda p, v: jnp.ones_like(v) if p[-1].key == "scale" else v, variables)
  for name, (shortcut, out, branch) in _blocks(model, ones, x).items():
    assert np.abs(np.asarray(branch)).max() > 1e-3, name
    assert not np.allclose(out, finish(shortcut), atol=1e-3), name


def test_preactivation_v2_differs_from_v1():
  x = _images((2, 8, 8, 1))
  v1 = resnet.ResNet(**_TINY)
  v2 = resnet.ResNet(preactivation=True, **_TINY)
  p1, p2 = _abstract_params(v1, x), _abstract_params(v2, x)
  assert "bn1" in p1 and "bn1" not in p2 and "final_bn" in p2 and "final_bn" not in p1
  assert "preact_bn" in p2["layer1_0"] and "preact_bn" not in p1["layer1_0"]
  assert "downsample_bn" in p1["layer2_0"] and "downsample_bn" not in p2["layer2_0"]
  # v1 blocks end with a ReLU (outputs >= 0), v2 blocks with the addition (signed outputs).
  for model, signed in ((v1, False), (v2, True)):
    blocks = _blocks(model, _random_variables(model, x), x)
    assert all(bool((out < 0).any()) == signed for _, out, _ in blocks.values()), model


def test_resnet_batch_statistics_update_in_training_only():
  model = resnet.ResNet(**_TINY)
  x = _images((4, 8, 8, 1))
  variables = _random_variables(model, x)
  _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  before, after = variables["batch_stats"]["bn1"]["mean"], updates["batch_stats"]["bn1"]["mean"]
  assert after.dtype == jnp.float32 and not np.allclose(before, after)
  _, same = model.apply(variables, x, mutable=["batch_stats"])
  np.testing.assert_array_equal(same["batch_stats"]["bn1"]["mean"], before)


# ---------------------------------------------------------------------------------------------
# GoogLeNet: auxiliary heads; dropout.

_GOOGLENET = googlenet.GoogLeNet(num_classes=5, stem="small")  # the paper's modules, no BN
_X12 = _images((2, 12, 12, 1))  # 12 -> 6 at 4a-4e (the aux heads pool 5/3 to 1x1)


@functools.lru_cache(maxsize=None)
def _googlenet_variables():
  return _random_variables(_GOOGLENET, _X12)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _apply_collecting(model, variables, key, train):
  return model.apply(variables, _X12, train=train, mutable=[AUX_LOGITS],
                     rngs={"dropout": key})


def test_googlenet_init_creates_the_aux_heads_but_sows_nothing():
  for train in (False, True):
    variables = jax.eval_shape(functools.partial(_GOOGLENET.init, train=train),
                               {"params": KEY, "dropout": KEY}, _X12)
    assert set(variables) == {"params"}
    assert {"aux1_head", "aux2_head"} <= set(variables["params"])
  without = _GOOGLENET.clone(aux_logits=False)
  assert not {"aux1_head", "aux2_head"} & set(_abstract_params(without, _X12))


def test_googlenet_sows_aux1_and_aux2_in_training_only():
  variables = _googlenet_variables()
  logits, state = _apply_collecting(_GOOGLENET, variables, KEY, True)
  assert set(state) == {AUX_LOGITS} and set(state[AUX_LOGITS]) == {"aux1", "aux2"}
  for name in ("aux1", "aux2"):
    (aux,) = state[AUX_LOGITS][name]
    assert aux.shape == logits.shape == (2, 5) and bool(jnp.isfinite(aux).all())
    assert not np.allclose(aux, logits)
  _, state = _apply_collecting(_GOOGLENET, variables, KEY, False)
  assert not state.get(AUX_LOGITS)
  _, state = _apply_collecting(_GOOGLENET.clone(aux_logits=False),
                               {"params": {k: v for k, v in variables["params"].items()
                                           if not k.startswith("aux")}}, KEY, True)
  assert not state.get(AUX_LOGITS)


def test_googlenet_main_logits_do_not_depend_on_the_aux_heads():
  variables = _googlenet_variables()
  out, _ = _apply_collecting(_GOOGLENET, variables, KEY, False)
  moved = {"params": {**variables["params"], "aux1_head": jax.tree.map(
      lambda v: v + 1.0, variables["params"]["aux1_head"])}}
  np.testing.assert_array_equal(_apply_collecting(_GOOGLENET, moved, KEY, False)[0], out)


def test_evaluation_is_deterministic_and_training_dropout_depends_on_the_key():
  variables = _googlenet_variables()
  k1, k2 = jax.random.split(KEY)
  eval1 = _apply_collecting(_GOOGLENET, variables, k1, False)[0]
  np.testing.assert_array_equal(eval1, _apply_collecting(_GOOGLENET, variables, k2, False)[0])
  train1 = _apply_collecting(_GOOGLENET, variables, k1, True)
  train2 = _apply_collecting(_GOOGLENET, variables, k2, True)
  np.testing.assert_array_equal(train1[0], _apply_collecting(_GOOGLENET, variables, k1,
                                                             True)[0])
  assert not np.allclose(train1[0], train2[0])
  assert not np.allclose(train1[1][AUX_LOGITS]["aux1"][0], train2[1][AUX_LOGITS]["aux1"][0])
  assert not np.allclose(train1[0], eval1)


def test_alexnet_dropout_only_in_training():
  model = alexnet.AlexNet(**{**registry.get("alexnet_small").defaults, "dtype": None})
  x = _images((2, 28, 28, 1))
  variables = _random_variables(model, x)
  apply = jax.jit(lambda key, train: model.apply(variables, x, train=train,
                                                 rngs={"dropout": key}), static_argnums=1)
  k1, k2 = jax.random.split(KEY)
  np.testing.assert_array_equal(apply(k1, False), apply(k2, False))
  assert not np.allclose(apply(k1, True), apply(k2, True))
  with pytest.raises(Exception, match="dropout"):  # training needs the "dropout" rng
    model.apply(variables, x, train=True)


# ---------------------------------------------------------------------------------------------
# LeNet-5.

def test_lenet5_c3_follows_table_one():
  mask = lenet.connections()
  assert mask.shape == (6, 16) and mask.sum() == 60
  assert list(mask.sum(axis=0)) == [3] * 6 + [4] * 9 + [6]
  layer = lenet.PartialConv()
  x = _images((1, 5, 5, 6))  # one 5x5 window: C3 output 1x1x16
  params = layer.init(KEY, x)
  assert count_params(params) == 1_516
  assert params["params"]["kernel"].shape == (5, 5, 60)
  # d C3 map j / d S2 map i: exactly zero where table I has no connection.
  jac = jax.jacrev(lambda x: layer.apply(params, x)[0, 0, 0])(x)  # [16, 1, 5, 5, 6]
  sensitivity = np.abs(np.asarray(jac)).sum(axis=(1, 2, 3))  # [16 outputs, 6 inputs]
  np.testing.assert_array_equal(sensitivity > 0, mask.T)
  assert np.all(sensitivity[~mask.T] == 0)


def test_lenet5_layers_follow_the_paper():
  params = _abstract_params(registry.build("lenet5"), jax.ShapeDtypeStruct((1, 28, 28, 1),
                                                                           jnp.float32))
  shapes = {k: jax.tree.map(lambda s: s.shape, v) for k, v in params.items()}
  assert shapes == {
      "C1": {"kernel": (5, 5, 1, 6), "bias": (6,)},
      "S2": {"coefficient": (6,), "bias": (6,)},
      "C3": {"kernel": (5, 5, 60), "bias": (16,)},
      "S4": {"coefficient": (16,), "bias": (16,)},
      "C5": {"kernel": (5, 5, 16, 120), "bias": (120,)},
      "F6": {"kernel": (120, 84), "bias": (84,)},
      "output": {"kernel": (84, 10), "bias": (10,)}}
  modern = _abstract_params(registry.build("lenet5_relu"),
                            jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32))
  assert modern["C3"]["kernel"].shape == (5, 5, 6, 16) and "S2" not in modern


def test_lenet5_subsampling_and_squashing():
  np.testing.assert_allclose(lenet.scaled_tanh(jnp.array([1.0, -1.0])), [1.0, -1.0], atol=2e-4)
  x = _images((1, 4, 4, 2))
  params = {"params": {"coefficient": jnp.array([2.0, -0.5]), "bias": jnp.array([0.1, 0.3])}}
  y = lenet.Subsampling().apply(params, x)
  blocks = np.asarray(x).reshape(1, 2, 2, 2, 2, 2).mean(axis=(2, 4))
  np.testing.assert_allclose(y, blocks * [2.0, -0.5] + [0.1, 0.3], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Helpers: Krizhevsky's LRN, adaptive average pooling, ceil-mode max-pooling.

def test_local_response_norm_equals_the_formula_of_the_paper():
  a = np.random.default_rng(2).standard_normal((2, 3, 3, 9)) * 40  # alpha sum ~ k
  n, k, alpha, beta = 5, 2.0, 1e-4, 0.75
  expected = np.empty_like(a)
  N = a.shape[-1]
  for i in range(N):
    lo, hi = max(0, i - n // 2), min(N - 1, i + n // 2)
    expected[..., i] = a[..., i] / (k + alpha * (a[..., lo:hi + 1] ** 2).sum(-1)) ** beta
  np.testing.assert_allclose(alexnet.local_response_norm(jnp.asarray(a, jnp.float32)),
                             expected, rtol=1e-5)
  assert not np.allclose(expected, a / k ** beta, rtol=1e-3)  # the sum matters here


@pytest.mark.parametrize("size_in,size_out", [(13, 6), (5, 3), (7, 7), (12, 6), (2, 3)])
def test_adaptive_avg_pool_matches_torch_bins(size_in, size_out):
  x = np.random.default_rng(3).standard_normal((2, size_in, size_in + 1, 3))
  y = alexnet.adaptive_avg_pool(jnp.asarray(x), (size_out, size_out))
  bins = lambda n: [(i * n // size_out, -(-(i + 1) * n // size_out)) for i in range(size_out)]
  expected = np.array([[x[:, a:b, c:d].mean(axis=(1, 2)) for c, d in bins(size_in + 1)]
                       for a, b in bins(size_in)]).transpose(2, 0, 1, 3)
  np.testing.assert_allclose(y, expected, rtol=1e-5)


@pytest.mark.parametrize("size,window,expected", [(112, 3, 56), (14, 2, 7), (14, 3, 7),
                                                  (6, 3, 3)])
def test_ceil_mode_max_pool(size, window, expected):
  x = np.random.default_rng(4).standard_normal((1, size, size, 2))
  y = np.asarray(googlenet.max_pool_ceil(jnp.asarray(x), window, 2))
  assert y.shape == (1, expected, expected, 2)
  for i in range(expected):
    for j in range(expected):
      window_max = x[:, 2 * i:2 * i + window, 2 * j:2 * j + window].max(axis=(1, 2))
      np.testing.assert_allclose(y[:, i, j], window_max, rtol=1e-6)
