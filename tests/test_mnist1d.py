"""MNIST-1D (`dl_jax.data.signals.mnist1d`) and its baselines (`dl_jax.models.signal`): the data
are a pure function of the generator's arguments, the cache round-trips and refuses a corrupted
file, the shuffled variant is the same signals with permuted positions, and the CNN's
convolutional part is translation-equivariant while the checks fail where they must."""

import pathlib
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax.data import cache
from dl_jax.data.signals import mnist1d
from dl_jax.errors import ConfigError, DataError
from dl_jax.models import registry

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("mnist1d"))


@pytest.fixture(scope="module")
def data(data_dir):
  return mnist1d.load(data_dir)


# ---------------------------------------------------------------------------------------------
# The data.

def test_generation_is_a_pure_function_of_the_arguments(data):
  random.seed(7)
  np.random.seed(7)
  before = (random.random(), np.random.rand())
  random.seed(7)
  np.random.seed(7)
  again = mnist1d.generate()
  # The package reseeds the global generators; generate() puts them back.
  assert (random.random(), np.random.rand()) == before
  for key in mnist1d.SPEC:
    np.testing.assert_array_equal(again[key], data[key])
  small = mnist1d.generate(num_samples=500)
  other_seed = mnist1d.generate(num_samples=500, seed=43)
  assert small["train_images"].shape == (400, 40, 1)
  assert not np.allclose(small["train_images"], other_seed["train_images"])
  with pytest.raises(ConfigError, match="unknown MNIST-1D argument.*num_sample"):
    mnist1d.generate(num_sample=500)


def test_shapes_dtypes_and_classes(data):
  for key, (shape, dtype) in mnist1d.SPEC.items():
    assert data[key].shape == shape and data[key].dtype == dtype, key
  for split in ("train", "test"):
    counts = np.bincount(data[f"{split}_labels"], minlength=10)
    assert len(counts) == 10
    expected = len(data[f"{split}_labels"]) / 10
    assert counts.min() > 0.8 * expected and counts.max() < 1.2 * expected, counts
  x = np.concatenate([data["train_images"], data["test_images"]])
  assert np.isfinite(x).all()
  assert abs(x.mean()) < 1e-3 and abs(x.std() - 1) < 1e-2  # standardized by the package
  assert len(np.unique(x.reshape(len(x), -1), axis=0)) == len(x)  # no duplicated signal


def test_cache_round_trips_and_refuses_a_corrupted_file(data, data_dir, tmp_path):
  path = tmp_path / "mnist1d.npz"
  cache.write(path, data)
  loaded = mnist1d.load(str(tmp_path))  # read from the file, not regenerated
  for key in mnist1d.SPEC:
    np.testing.assert_array_equal(loaded[key], data[key])
  raw = bytearray(path.read_bytes())
  raw[len(raw) // 2] ^= 0xFF
  path.write_bytes(bytes(raw))
  with pytest.raises(DataError, match="mnist1d.npz is unusable: its sha256 is") as error:
    mnist1d.load(str(tmp_path))
  assert "\n" not in str(error.value) and "Delete it" in str(error.value)
  # The module's own cache is the generated data, byte-reproducibly written.
  path.unlink()
  cache.sidecar(path).unlink()
  mnist1d.load(str(tmp_path))
  assert path.read_bytes() == (pathlib.Path(data_dir) / "mnist1d.npz").read_bytes()


def test_shuffled_variant_permutes_the_positions_of_the_same_signals(data, data_dir):
  shuffled = mnist1d.load(data_dir, shuffled=True)
  perm = mnist1d.permutation()
  assert sorted(perm) == list(range(40)) and (perm != np.arange(40)).sum() > 30
  np.testing.assert_array_equal(perm, mnist1d.permutation())  # fixed
  for split in ("train", "test"):
    x, xs = data[f"{split}_images"], shuffled[f"{split}_images"]
    np.testing.assert_array_equal(shuffled[f"{split}_labels"], data[f"{split}_labels"])
    np.testing.assert_array_equal(np.sort(xs, axis=1), np.sort(x, axis=1))  # same multiset
    assert not np.array_equal(xs, x)
    np.testing.assert_array_equal(xs, x[:, perm])  # one permutation for every signal
  # Neighbouring samples are correlated in the signals, not after shuffling.
  corr = lambda x: np.corrcoef(x[:, :-1, 0].ravel(), x[:, 1:, 0].ravel())[0, 1]
  assert corr(data["train_images"]) > 0.8 > 0.3 > corr(shuffled["train_images"])


# ---------------------------------------------------------------------------------------------
# The models.

def test_cnn_shapes_follow_their_conv_base():
  model = registry.build("mnist1d_cnn")
  x = jnp.zeros((2, 40, 1))
  variables = model.init(KEY, x)
  params = variables["params"]
  assert [params[f"conv{i}"]["kernel"].shape for i in (1, 2, 3)] == [
      (5, 1, 25), (3, 25, 25), (3, 25, 25)]
  assert params["linear"]["kernel"].shape == (125, 10)
  assert model.apply(variables, x, method="features").shape == (2, 5, 25)


def _random_biases(variables, scale=1.0):
  """Large random biases, so that a bias applied at the wrong place cannot hide."""
  leaves, tree = jax.tree.flatten_with_path(variables)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  new = [scale * jax.random.normal(k, v.shape) if "bias" in jax.tree_util.keystr(path) else v
         for (path, v), k in zip(leaves, keys)]
  return jax.tree.unflatten(tree, new)


def _shift_error(f, x, shift: int, stride: int = 8, crop: int = 3) -> float:
  """max |f(roll(x, shift)) - roll(f(x), shift / stride)| over the outputs away from both ends
  (crop outputs: the receptive field, 17 samples wide, reaches neither the zero padding nor the
  wrapped-around end of either input), relative to the output scale."""
  out, moved = f(x), f(jnp.roll(x, shift, axis=1))
  k = shift // stride
  a, b = moved[:, crop + k:out.shape[1] - crop], out[:, crop:out.shape[1] - crop - k]
  return float(jnp.abs(a - b).max() / jnp.abs(out).max())


def test_cnn_features_are_translation_equivariant_and_the_check_can_fail():
  model = registry.build("mnist1d_cnn")
  x = jax.random.normal(jax.random.PRNGKey(2), (4, 160, 1))  # any length: 160 -> 20 outputs
  variables = _random_biases(model.init(KEY, x[:, :40]))
  features = lambda x: model.apply(variables, x, method="features")
  assert features(x).shape == (4, 20, 25)
  for shift in (8, 16, 24):
    assert _shift_error(features, x, shift) < 1e-5, shift
  # Negative controls: a shift that is not a multiple of the total stride 8; the CNN behind the
  # fixed permutation of the shuffled data (on 40 samples, tiled); a perturbed, position-aware map.
  assert _shift_error(features, x, 4, stride=4) > 1e-2
  perm = np.concatenate([mnist1d.permutation() + 40 * i for i in range(4)])
  assert _shift_error(lambda x: features(x[:, perm]), x, 8) > 1e-2
  ramp = jnp.linspace(0, 1, 20)[None, :, None]
  assert _shift_error(lambda x: features(x) * (1 + 0.1 * ramp), x, 8) > 1e-3


def test_the_mlp_has_no_notion_of_position():
  """The MLP on permuted signals with its first layer's rows permuted alike is the same function
  (why shuffling leaves it at 68 %), while the CNN's equivariance above is lost behind the
  permutation."""
  x = jax.random.normal(jax.random.PRNGKey(3), (8, 40, 1))
  perm = mnist1d.permutation()
  mlp = registry.build("mnist1d_mlp")
  variables = _random_biases(mlp.init(KEY, x))
  params = jax.tree.map(lambda v: v, variables["params"])
  first = sorted(params)[0]
  params[first] = {**params[first], "kernel": params[first]["kernel"][perm]}
  apply = jax.jit(mlp.apply)
  out = apply(variables, x)
  np.testing.assert_allclose(apply({"params": params}, x[:, perm]), out, rtol=1e-5, atol=1e-5)
  # Negative control: permuting only the data changes the MLP's outputs.
  assert not np.allclose(apply(variables, x[:, perm]), out, atol=1e-3)
