"""The recurrent cells of `dl_jax.nn.recurrent` against flax.linen's cells with transplanted
weights; backpropagation through time (the scan against a python loop, the hand-written Elman
BPTT and every cell's written-out backward pass against `jax.grad`); causality of the
unidirectional encoder and its negative control, the bidirectional one; the sequence task's
data, bad values, and a short real training."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dl_jax import engine
from dl_jax.errors import ConfigError
from dl_jax.nn import recurrent
from dl_jax.tasks import sequence_classification as seq
from experiments.configs import seq_mnist_rows_gru

FEATURES, HIDDEN, BATCH, STEPS = 3, 5, 2, 7
ATOL = 1e-6  # float32


def normal(seed: int, shape) -> jax.Array:
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


def concat(*arrays):
  return jnp.concatenate(arrays, axis=-1)


# flax cell -> (our cell, the transplant of its parameters into ours). Gate blocks in the order
# of the equations: LSTM (i, f, g, o), GRU (r, z, n).
def _lstm_params(p):
  gates = "ifgo"
  return {"input_kernel": concat(*(p[f"i{g}"]["kernel"] for g in gates)),
          "recurrent_kernel": concat(*(p[f"h{g}"]["kernel"] for g in gates)),
          "bias": concat(*(p[f"h{g}"]["bias"] for g in gates))}


def _gru_params(p):
  gates = "rzn"
  return {"input_kernel": concat(*(p[f"i{g}"]["kernel"] for g in gates)),
          "recurrent_kernel": concat(*(p[f"h{g}"]["kernel"] for g in gates)),
          "bias": concat(*(p[f"i{g}"]["bias"] for g in gates)),
          "recurrent_bias": p["hn"]["bias"]}


def _elman_params(p):
  return {"input_kernel": p["i"]["kernel"], "recurrent_kernel": p["h"]["kernel"],
          "bias": p["i"]["bias"]}


PAIRS = {
    "lstm": (nn.LSTMCell, recurrent.LSTMCell, _lstm_params),
    "optimized_lstm": (nn.OptimizedLSTMCell, recurrent.LSTMCell, _lstm_params),
    "gru": (nn.GRUCell, recurrent.GRUCell, _gru_params),
    "elman": (nn.SimpleCell, recurrent.ElmanCell, _elman_params),
}


def flax_params(flax_cls, seed=0):
  """Parameters of a flax cell, with random (not zero) biases so that bias bugs show."""
  cell = flax_cls(HIDDEN)
  carry = cell.initialize_carry(jax.random.PRNGKey(1), (BATCH, FEATURES))
  params = cell.init(jax.random.PRNGKey(seed), carry, jnp.zeros((BATCH, FEATURES)))["params"]
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
  return jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape)
                                   for x, k in zip(leaves, keys)])


def random_carry(cell, seed=2):
  carry = cell.initialize_carry(None, (BATCH, FEATURES))
  leaves, tree = jax.tree.flatten(carry)
  return jax.tree.unflatten(tree, [0.5 * normal(seed + i, x.shape) for i, x in enumerate(leaves)])


def unroll_both(name, transplant):
  """Both cells over STEPS steps from one random carry: (flax's carries and outputs, ours)."""
  flax_cls, ours_cls, _ = PAIRS[name]
  params = flax_params(flax_cls)
  flax_cell, ours = flax_cls(HIDDEN), ours_cls(HIDDEN)
  ours_params = transplant(params)
  results = []
  for cell, p in ((flax_cell, params), (ours, ours_params)):
    carry, outputs = random_carry(ours), []
    for t in range(STEPS):
      carry, y = cell.apply({"params": p}, carry, normal(10 + t, (BATCH, FEATURES)))
      outputs.append(y)
    results.append((carry, jnp.stack(outputs)))
  return results


def max_difference(a, b) -> float:
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a),
                                                             jax.tree.leaves(b)))


@pytest.mark.parametrize("name", PAIRS)
def test_cell_equals_flax_cell_with_transplanted_weights(name):
  (flax_carry, flax_out), (carry, out) = unroll_both(name, PAIRS[name][2])
  assert max_difference(flax_out, out) < ATOL and max_difference(flax_carry, carry) < ATOL
  assert float(jnp.std(out)) > 0.1  # the comparison is not between constants


def _swap_blocks(kernel, a, b, gates):
  blocks = jnp.split(kernel, gates, axis=-1)
  blocks[a], blocks[b] = blocks[b], blocks[a]
  return concat(*blocks)


SWAPPED = {  # a wrong transplant of each cell: two gates exchanged (Elman: W_h transposed)
    "lstm": lambda p: {**_lstm_params(p), "input_kernel": _swap_blocks(
        _lstm_params(p)["input_kernel"], 0, 1, 4)},
    "optimized_lstm": lambda p: {**_lstm_params(p), "recurrent_kernel": _swap_blocks(
        _lstm_params(p)["recurrent_kernel"], 1, 3, 4)},
    "gru": lambda p: {**_gru_params(p), "input_kernel": _swap_blocks(
        _gru_params(p)["input_kernel"], 0, 1, 3)},
    "elman": lambda p: {**_elman_params(p), "recurrent_kernel": p["h"]["kernel"].T},
}


@pytest.mark.parametrize("name", PAIRS)
def test_negative_control_a_wrong_transplant_does_not_match(name):
  (_, flax_out), (_, out) = unroll_both(name, SWAPPED[name])
  assert max_difference(flax_out, out) > 1e-2


@pytest.mark.parametrize("name", ["lstm", "gru", "elman"])
def test_scan_unroll_and_bidirectional_equal_flax(name):
  """`Recurrent` (lax.scan) equals `flax.linen.RNN` over the flax cell; the bidirectional
  encoder's outputs equal `flax.linen.Bidirectional`'s (forward, backward concatenated)."""
  flax_cls, _, transplant = PAIRS[name]
  xs = normal(3, (BATCH, STEPS, FEATURES))
  forward, backward = flax_params(flax_cls, 0), flax_params(flax_cls, 5)
  flax_rnn = nn.RNN(flax_cls(HIDDEN))
  want = flax_rnn.apply({"params": {"cell": forward}}, xs)
  ours = recurrent.Recurrent(name, HIDDEN)
  _, got = ours.apply({"params": transplant(forward)}, xs)
  assert max_difference(want, got) < ATOL

  flax_bi = nn.Bidirectional(nn.RNN(flax_cls(HIDDEN)), nn.RNN(flax_cls(HIDDEN)))
  want = flax_bi.apply({"params": {"forward_rnn": {"cell": forward},
                                   "backward_rnn": {"cell": backward}}}, xs)
  encoder = recurrent.RecurrentEncoder(name, HIDDEN, bidirectional=True)
  got, summary = encoder.apply({"params": {"layer0_forward": transplant(forward),
                                           "layer0_backward": transplant(backward)}}, xs)
  assert max_difference(want, got) < ATOL
  assert max_difference(summary, concat(want[:, -1, :HIDDEN], want[:, 0, HIDDEN:])) < ATOL


def python_loop(cell_name, params, xs, carry):
  """The same layer unrolled by a python loop over the cell's step function: outputs [b, T, H]."""
  outputs = []
  for t in range(xs.shape[1]):
    x_terms = recurrent.input_terms(params, xs[:, t], jnp.float32)
    carry, y = recurrent.STEPS[cell_name](params, carry, x_terms, jnp.float32)
    outputs.append(y)
  return jnp.stack(outputs, 1)


@pytest.mark.parametrize("name", recurrent.CELLS)
def test_scan_gradient_equals_python_loop_gradient(name):
  """BPTT through the scan (`jax.grad` of `Recurrent`) equals `jax.grad` of a python unroll,
  for the parameters and the inputs, with a loss on every output."""
  layer = recurrent.Recurrent(name, HIDDEN)
  xs = normal(4, (BATCH, STEPS, FEATURES))
  params = layer.init(jax.random.PRNGKey(0), xs)["params"]
  weights = normal(6, (BATCH, STEPS, HIDDEN))
  zero = recurrent.zero_carry(name, (BATCH,), HIDDEN)
  scan_loss = lambda p, x: jnp.sum(weights * layer.apply({"params": p}, x)[1])
  loop_loss = lambda p, x: jnp.sum(weights * python_loop(name, p, x, zero))
  scan_grads = jax.grad(scan_loss, argnums=(0, 1))(params, xs)
  loop_grads = jax.grad(loop_loss, argnums=(0, 1))(params, xs)
  assert max_difference(scan_grads, loop_grads) < 1e-5
  assert min(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(scan_grads)) > 1e-3


def elman_setup():
  layer = recurrent.Recurrent("elman", HIDDEN)
  xs = normal(4, (BATCH, STEPS, FEATURES))
  params = layer.init(jax.random.PRNGKey(0), xs)["params"]
  params = {**params, "bias": 0.3 * normal(8, params["bias"].shape)}
  h0 = 0.5 * normal(9, (BATCH, HIDDEN))
  upstream = normal(6, (STEPS, BATCH, HIDDEN))  # dL/dh_t: L = sum_t <upstream_t, h_t>
  return layer, params, jnp.swapaxes(xs, 0, 1), h0, upstream


def autodiff_grads(params, xs_time_major, h0, upstream, truncation=0):
  """`jax.grad` of L = sum_t <upstream_t, h_t> through a python loop of Elman steps; with
  `truncation`, the state is cut from the gradient (stop_gradient) at every chunk start."""
  def loss(p, xs, h):
    total = 0.0
    for t in range(len(xs)):
      if truncation and t % truncation == 0:
        h = jax.lax.stop_gradient(h)
      h, _ = recurrent.elman_step(p, h, recurrent.input_terms(p, xs[t], jnp.float32),
                                  jnp.float32)
      total += jnp.sum(upstream[t] * h)
    return total
  return jax.grad(loss, argnums=(0, 1, 2))(params, xs_time_major, h0)


def test_hand_written_bptt_equals_jax_grad_for_the_elman_cell():
  layer, params, xs, h0, upstream = elman_setup()
  by_hand = recurrent.elman_bptt(params, xs, h0, upstream)
  assert max_difference(by_hand, autodiff_grads(params, xs, h0, upstream)) < 1e-5
  # and the same through the scan-unrolled layer
  scan_loss = lambda p, x, h: jnp.sum(
      jnp.swapaxes(upstream, 0, 1) * layer.apply({"params": p}, jnp.swapaxes(x, 0, 1), h)[1])
  assert max_difference(by_hand, jax.grad(scan_loss, argnums=(0, 1, 2))(params, xs, h0)) < 1e-5


def test_truncated_bptt_equals_jax_grad_of_the_cut_graph_and_not_the_full_gradient():
  """Negative control of the BPTT check: cutting the gradient every 3 steps gives the gradient
  of the cut graph, which is not the full one."""
  _, params, xs, h0, upstream = elman_setup()
  truncated = recurrent.elman_bptt(params, xs, h0, upstream, truncation=3)
  assert max_difference(truncated, autodiff_grads(params, xs, h0, upstream, 3)) < 1e-5
  assert max_difference(truncated, autodiff_grads(params, xs, h0, upstream)) > 1e-2



def layer_gradients(name, bptt, reverse):
  """float64 value and gradients (parameters, inputs, initial carry) of a loss on every output
  and on the final carry of one `Recurrent` layer, its parameters and initial carry random."""
  with jax.enable_x64(True):
    layer = recurrent.Recurrent(name, HIDDEN, reverse=reverse, bptt=bptt, dtype=jnp.float64)
    xs = normal(4, (BATCH, STEPS, FEATURES)).astype(jnp.float64)
    params = layer.init(jax.random.PRNGKey(0), xs)["params"]
    leaves, tree = jax.tree.flatten(params)
    params = jax.tree.unflatten(tree, [x + 0.3 * normal(20 + i, x.shape)
                                       for i, x in enumerate(leaves)])
    carry = jax.tree.map(lambda z: 0.5 * normal(7, z.shape).astype(jnp.float64),
                         recurrent.zero_carry(name, (BATCH,), HIDDEN, jnp.float64))
    weights = normal(6, (BATCH, STEPS, HIDDEN)).astype(jnp.float64)

    def loss(p, x, c):
      final, outputs = layer.apply({"params": p}, x, c)
      return jnp.sum(weights * outputs) + sum(jnp.sum(f ** 2) for f in jax.tree.leaves(final))
    return jax.value_and_grad(loss, argnums=(0, 1, 2))(params, xs, carry)


def relative_differences(a, b) -> list[tuple[str, float]]:
  """(dtype, max |a - b| / max |a|) per leaf, in numpy (x64 is off outside the tests' scope)."""
  pairs = [(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
  return [(str(x.dtype), float(np.max(np.abs(x - y)) / np.max(np.abs(x)))) for x, y in pairs]


def assert_same_gradients(written, autodiff):
  """float64 leaves (inputs, carry) to rounding; the float32 parameters' gradients to float32."""
  for dtype, difference in relative_differences(written, autodiff):
    assert difference < (1e-12 if dtype == "float64" else 1e-6), (dtype, difference)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", recurrent.CELLS)
def test_written_bptt_equals_jax_grad_of_the_scan(name, reverse):
  """`unroll`'s backward pass, written out per cell, against `jax.grad` of the plain scan: the
  same value, and the same gradients for the parameters, every input and the initial carry."""
  (value, grads), (want_value, want) = (layer_gradients(name, bptt, reverse)
                                        for bptt in ("written", "autodiff"))
  assert abs(float(value) - float(want_value)) < 1e-12 * abs(float(want_value))
  assert min(float(np.max(np.abs(g))) for g in jax.tree.leaves(grads)) > 1e-3
  assert_same_gradients(grads, want)


@pytest.mark.parametrize("name", recurrent.CELLS)
def test_negative_control_a_wrong_written_derivative_is_caught(name, monkeypatch):
  """The check above fails when one local derivative is wrong: the first gate's delta of the
  backward step doubled (the Elman cell's only one)."""
  forward, backward = recurrent._WRITTEN[name]  # pylint: disable=protected-access

  def wrong_backward(*args):
    d_prev, d_x, d_rec = backward(*args)
    return d_prev, (2 * d_x[0], *d_x[1:]), d_rec
  want = layer_gradients(name, "autodiff", False)[1]
  monkeypatch.setitem(recurrent._WRITTEN, name,  # pylint: disable=protected-access
                      (forward, wrong_backward))
  with pytest.raises(AssertionError):
    assert_same_gradients(layer_gradients(name, "written", False)[1], want)


def dependence(encoder, xs) -> np.ndarray:
  """[T_out, T_in]: the largest |d output_t / d input_s| of the first example."""
  params = encoder.init(jax.random.PRNGKey(0), xs)["params"]
  jacobian = jax.jacobian(lambda x: encoder.apply({"params": params}, x)[0][0])(xs)
  return np.asarray(jnp.max(jnp.abs(jacobian[:, :, 0]), axis=(1, 3)))  # [T, H, b, T, F]


@pytest.mark.parametrize("name", recurrent.CELLS)
def test_unidirectional_output_ignores_later_inputs_and_bidirectional_does_not(name):
  xs = normal(4, (BATCH, STEPS, FEATURES))
  later = np.triu(np.ones((STEPS, STEPS), bool), k=1)  # [t, s]: s > t
  stacked = dependence(recurrent.RecurrentEncoder(name, HIDDEN, num_layers=2), xs)
  assert np.all(stacked[later] == 0)
  assert np.all(stacked[~later] > 0)  # every earlier input reaches the output
  both = dependence(recurrent.RecurrentEncoder(name, HIDDEN, bidirectional=True), xs)
  assert np.all(both[later] > 0)  # the negative control: later inputs reach output t


def test_stacked_layers_feed_each_other():
  encoder = recurrent.RecurrentEncoder("gru", HIDDEN, num_layers=3, bidirectional=True)
  params = encoder.init(jax.random.PRNGKey(0), normal(4, (BATCH, STEPS, FEATURES)))["params"]
  shapes = {k: v["input_kernel"].shape for k, v in params.items()}
  assert shapes["layer0_forward"] == (FEATURES, 3 * HIDDEN)
  assert shapes["layer2_backward"] == (2 * HIDDEN, 3 * HIDDEN)
  assert len(shapes) == 6


def test_lstm_forget_gate_bias_starts_at_one():
  params = recurrent.LSTMCell(HIDDEN).init(
      jax.random.PRNGKey(0), recurrent.zero_carry("lstm", (1,), HIDDEN), jnp.zeros((1, 2)))
  bias = np.asarray(params["params"]["bias"]).reshape(4, HIDDEN)
  np.testing.assert_array_equal(bias, np.array([0, 1, 0, 0])[:, None] * np.ones(HIDDEN))


def memory_time_scales(lstm_bias, hidden: int) -> np.ndarray:
  """1 / (1 - sigma(b_f)) per unit: the steps over which a unit's cell state decays at the start."""
  forget = np.asarray(lstm_bias, np.float64).reshape(4, hidden)[1]
  return 1 / (1 - jax.nn.sigmoid(forget))


def test_lstm_chrono_initialization_spreads_memory_time_scales_over_the_sequence():
  """Tallec & Ollivier (2018): b_f = log U[1, T - 1], b_i = -b_f; so the initial memory time
  scale 1 / (1 - sigma(b_f)) = 1 + u of each unit lies in [2, T], drawn from the key."""
  steps, hidden = 784, 256
  cell = recurrent.LSTMCell(hidden, chrono_steps=steps)
  init = lambda seed: np.asarray(cell.init(jax.random.PRNGKey(seed),
                                           recurrent.zero_carry("lstm", (1,), hidden),
                                           jnp.zeros((1, 1)))["params"]["bias"])
  bias = init(0)
  i, f, g, o = bias.reshape(4, hidden)
  np.testing.assert_array_equal(i, -f)
  np.testing.assert_array_equal(np.concatenate([g, o]), 0)
  time_scale = memory_time_scales(bias, hidden)
  assert 2 - 1e-3 <= time_scale.min() and time_scale.max() <= steps + 1e-3
  assert np.median(time_scale) > 100  # spread over the sequence, not all at 3.7 steps (b_f = 1)
  np.testing.assert_array_equal(init(0), bias)
  assert not np.array_equal(init(1), bias)
  # The layer takes T from its inputs: a 28-step sequence gets time scales up to 28.
  layer = recurrent.RecurrentEncoder("lstm", hidden, chrono=True)
  bias = layer.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 1)))["params"]["layer0"]["bias"]
  time_scale = memory_time_scales(bias, hidden)
  assert 2 - 1e-3 <= time_scale.min() and 20 < time_scale.max() <= 28 + 1e-3


def test_sequences_from_images():
  images = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28, 1)
  rows = seq.to_sequences(images, "rows")
  assert rows.shape == (2, 28, 28) and rows[1, 3, 5] == images[1, 3, 5, 0]
  pixels = seq.to_sequences(images, "pixels")
  assert pixels.shape == (2, 784, 1) and pixels[1, 3 * 28 + 5, 0] == images[1, 3, 5, 0]
  permutation = seq.pixel_permutation(7)
  permuted = seq.to_sequences(images, "permuted", permutation)
  np.testing.assert_array_equal(permuted[:, :, 0], pixels[:, permutation, 0])
  np.testing.assert_array_equal(permutation, seq.pixel_permutation(7))  # fixed by the seed
  assert sorted(permutation) == list(range(784)) and not np.all(permutation == np.arange(784))


def config(**overrides) -> ml_collections.ConfigDict:
  cfg = seq_mnist_rows_gru.get_config()
  cfg.update(overrides)
  return cfg


@pytest.mark.parametrize("overrides, message", [
    ({"order": "columns"}, "unknown order 'columns'; accepted: rows, pixels, permuted"),
    ({"clip_norm": -1.0}, "clip_norm=-1.0"),
    ({"model": "mnist_mlp"}, "unknown model 'mnist_mlp'; registered sequence models: "
     "gru_classifier, lstm_classifier, rnn_classifier"),
    ({"model_kwargs": {"num_classes": 5}}, "model_kwargs.num_classes=5"),
    ({"model_kwargs": {"hidden": 0}}, "model_kwargs.hidden=0 must be an integer >= 1"),
    ({"model_kwargs": {"num_layers": "two"}}, "model 'gru_classifier': model_kwargs.num_layers"),
    ({"model": "lstm_classifier", "model_kwargs": {"chrono": 1}},
     "model 'lstm_classifier': model_kwargs.chrono=1 (type int) has the wrong type; accepted: "
     "a bool"),
    ({"model_kwargs": {"chrono": True}}, "model 'gru_classifier' has no hyper-parameter "
     "'chrono'"),
])
def test_bad_values_are_one_error_line(overrides, message):
  with pytest.raises(ConfigError) as info:
    engine.validate(config(**overrides))
  assert "\n" not in str(info.value) and message in str(info.value), str(info.value)


def test_short_row_by_row_training_learns(tmp_path):
  """200 real steps of a GRU (64 units), row by row, reach an accuracy far above chance."""
  cfg = config(train_subset=6400, val_size=1000, test_subset=1000, num_epochs=4,
               log_every_steps=100, checkpoint_every_steps=10_000)
  cfg.model_kwargs.hidden = 64
  results = engine.run(cfg, str(tmp_path))
  assert results["steps"] == 200
  assert results["test_accuracy"] > 0.6, results
  assert results["param_count"] == 3 * (28 * 64 + 64 * 64 + 64) + 64 + 64 * 10 + 10
