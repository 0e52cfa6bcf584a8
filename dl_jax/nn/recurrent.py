"""Recurrent networks (the models for sequential data of the course overview, section 1.5): the
Elman RNN, LSTM and GRU cells written out from their equations, their unroll over time with
`jax.lax.scan`, stacked and bidirectional encoders, and backpropagation through time written
out for every cell (for the Elman cell also truncated, in `elman_bptt`).

The cells follow flax.linen's conventions: `cell(carry, x_t) -> (new_carry, y_t)` on inputs
[..., F], `cell.initialize_carry(rng, input_shape)`, `num_feature_axes == 1`; the carry is h
(Elman, GRU) or (c, h) (LSTM), and y_t = h_t. With H hidden units and G gates, a cell holds

    input_kernel [F, G*H]   recurrent_kernel [H, G*H]   bias [G*H]   (GRU: recurrent_bias [H])

the gate blocks side by side in the order of the equations: LSTM (i, f, g, o), GRU (r, z, n),
Elman one block. Parameters are float32; products run in the compute dtype `dtype`, and the carry
stays in float32 (the promotion of float32 and `dtype`) so that long unrolls in bfloat16 do not
round the state at every step. The unroll computes the input terms x_t W_x + b of all steps in
one product before the scan (they do not depend on the state), so each scan step only multiplies
the state by the recurrent kernel.

Backpropagation through time is written out for every cell (`unroll`, a `jax.custom_vjp`): the
forward scan keeps the gate activations; the backward scan runs from the last step to the first,
carrying dL/dh_t (and dL/dc_t) and applying each cell's local derivatives; the kernel gradient
sum_t h_{t-1}^T delta_t is one matrix product over all steps after the scan, not an update at
every step. Each gate block is its own array (sliced out of one [batch, G*H] array inside the
loop, the gate arithmetic ran several times slower on the CPU). On 784-step sequential MNIST
(batch 128, 2 CPU cores) the forward and backward pass of the GRU classifier take 0.62 s against
0.92 s for `jax.grad` of the plain scan, the LSTM's 0.77 against 0.94; `bptt="autodiff"` selects
the latter, which the bfloat16 compute dtype uses.
"""

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

CELLS = ("elman", "lstm", "gru")
GATES = {"elman": 1, "lstm": 4, "gru": 3}


def _per_gate(init, gates: int):
  """An initializer of a [rows, gates * H] kernel: `init` applied to each gate's block."""
  def initializer(key, shape, dtype=jnp.float32):
    rows, cols = shape
    keys = jax.random.split(key, gates)
    return jnp.concatenate([init(k, (rows, cols // gates), dtype) for k in keys], axis=-1)
  return initializer


def _bias_init(cell: str, features: int, forget_bias: float, chrono_steps: int = 0):
  """Zeros, but the LSTM forget gate's block: `forget_bias` (Gers et al. 2000; Jozefowicz et al.
  2015 recommend 1, so that the cell remembers by default at the start of training).

  `chrono_steps` T > 0 replaces it by the chrono initialization of Tallec & Ollivier (2018), "Can
  recurrent neural networks warp time?": per unit b_f = log(u), u ~ U[1, T - 1], and b_i = -b_f,
  so that the units' initial memory time scales 1 / (1 - sigma(b_f)) = 1 + u spread over the
  sequence's length instead of all near 1 / (1 - sigma(1)) = 3.7 steps."""
  def initializer(key, shape, dtype=jnp.float32):
    bias = jnp.zeros(shape, dtype)
    if cell != "lstm":
      return bias
    if chrono_steps:
      forget = jnp.log(jax.random.uniform(key, (features,), dtype, 1.0, chrono_steps - 1.0))
      return bias.at[:features].set(-forget).at[features:2 * features].set(forget)
    return bias.at[features:2 * features].set(forget_bias)
  return initializer


def cell_parameters(module: nn.Module, cell: str, in_features: int, features: int,
                    forget_bias: float = 1.0, chrono_steps: int = 0) -> dict:
  """The float32 parameters of `cell` declared in `module` (call inside its compact method):
  lecun-normal input kernels, orthogonal recurrent kernels (each gate's block), zero biases but
  the LSTM's (see `_bias_init`)."""
  if cell not in CELLS:
    raise ValueError(f"unknown cell {cell!r}; accepted: {', '.join(CELLS)}")
  if features < 1:
    raise ValueError(f"a recurrent layer needs at least one unit, not {features}")
  if chrono_steps != 0 and (cell != "lstm" or chrono_steps < 3):
    raise ValueError(f"chrono_steps={chrono_steps}: the chrono initialization is for the LSTM "
                     "only, on sequences of at least 3 steps (0: off)")
  gates = GATES[cell]
  params = {
      "input_kernel": module.param("input_kernel", _per_gate(nn.initializers.lecun_normal(),
                                                             gates),
                                   (in_features, gates * features), jnp.float32),
      "recurrent_kernel": module.param("recurrent_kernel",
                                       _per_gate(nn.initializers.orthogonal(), gates),
                                       (features, gates * features), jnp.float32),
      "bias": module.param("bias", _bias_init(cell, features, forget_bias, chrono_steps),
                           (gates * features,), jnp.float32),
  }
  if cell == "gru":
    params["recurrent_bias"] = module.param("recurrent_bias", nn.initializers.zeros,
                                            (features,), jnp.float32)
  return params


def input_terms(params: dict, x: jax.Array, dtype) -> jax.Array:
  """x W_x + b for every gate: [..., F] -> [..., G*H] in `dtype`."""
  return (jnp.dot(x.astype(dtype), params["input_kernel"].astype(dtype))
          + params["bias"].astype(dtype))


def _recurrent_terms(params: dict, h: jax.Array, dtype) -> jax.Array:
  return jnp.dot(h.astype(dtype), params["recurrent_kernel"].astype(dtype))


def elman_step(params: dict, h: jax.Array, x_terms: jax.Array, dtype):
  """Elman (1990): h_t = tanh(W_x x_t + b + W_h h_{t-1}); y_t = h_t."""
  new_h = jnp.tanh(x_terms + _recurrent_terms(params, h, dtype)).astype(h.dtype)
  return new_h, new_h


def lstm_step(params: dict, carry, x_terms: jax.Array, dtype):
  """LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000):

      i = sigma(W_xi x + W_hi h + b_i)     f = sigma(W_xf x + W_hf h + b_f)
      g = tanh(W_xg x + W_hg h + b_g)      o = sigma(W_xo x + W_ho h + b_o)
      c' = f * c + i * g                   h' = o * tanh(c')

  the carry is (c, h), the output h'."""
  c, h = carry
  i, f, g, o = jnp.split(x_terms + _recurrent_terms(params, h, dtype), 4, axis=-1)
  i, f, g, o = nn.sigmoid(i), nn.sigmoid(f), jnp.tanh(g), nn.sigmoid(o)
  new_c = (f * c + i * g).astype(c.dtype)
  new_h = (o * jnp.tanh(new_c)).astype(h.dtype)
  return (new_c, new_h), new_h


def gru_step(params: dict, h: jax.Array, x_terms: jax.Array, dtype):
  """GRU (Cho et al. 2014), with the reset gate applied after the recurrent product (as cuDNN,
  PyTorch and flax do; Cho et al. apply it before, n = tanh(W_xn x + W_hn (r * h))):

      r = sigma(W_xr x + b_r + W_hr h)     z = sigma(W_xz x + b_z + W_hz h)
      n = tanh(W_xn x + b_n + r * (W_hn h + b_hn))
      h' = (1 - z) * n + z * h."""
  x_r, x_z, x_n = jnp.split(x_terms, 3, axis=-1)
  h_r, h_z, h_n = jnp.split(_recurrent_terms(params, h, dtype), 3, axis=-1)
  r, z = nn.sigmoid(x_r + h_r), nn.sigmoid(x_z + h_z)
  n = jnp.tanh(x_n + r * (h_n + params["recurrent_bias"].astype(dtype)))
  new_h = ((1 - z) * n + z * h).astype(h.dtype)
  return new_h, new_h


STEPS = {"elman": elman_step, "lstm": lstm_step, "gru": gru_step}


def compute_dtype(dtype, x: jax.Array):
  """`dtype`, or (None) that of the inputs promoted with the float32 parameters."""
  return jnp.dtype(dtype) if dtype is not None else jnp.result_type(x.dtype, jnp.float32)


def zero_carry(cell: str, batch_shape: tuple[int, ...], features: int, dtype=jnp.float32):
  """The initial state: h = 0 (and c = 0 for the LSTM), float32 (or wider) whatever the compute
  dtype."""
  dtype = jnp.promote_types(dtype, jnp.float32)
  h = jnp.zeros((*batch_shape, features), dtype)
  return (h, h) if cell == "lstm" else h


class _Cell(nn.Module):
  """One step of a recurrent cell (see the subclasses' equations)."""
  features: int
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32
  cell: ClassVar[str] = ""

  def _bias_options(self) -> dict:
    return {"forget_bias": 0.0}

  @nn.compact
  def __call__(self, carry, inputs: jax.Array):
    params = cell_parameters(self, self.cell, inputs.shape[-1], self.features,
                             **self._bias_options())
    dtype = compute_dtype(self.dtype, inputs)
    return STEPS[self.cell](params, carry, input_terms(params, inputs, dtype), dtype)

  @nn.nowrap
  def initialize_carry(self, rng, input_shape: tuple[int, ...]):
    del rng
    return zero_carry(self.cell, tuple(input_shape[:-1]), self.features)

  @property
  def num_feature_axes(self) -> int:
    return 1


class ElmanCell(_Cell):
  """The Elman (simple) recurrent cell; see `elman_step`."""
  cell: ClassVar[str] = "elman"


class LSTMCell(_Cell):
  """The LSTM cell; see `lstm_step`."""
  forget_bias: float = 1.0  # initial bias of the forget gate
  chrono_steps: int = 0  # > 0: chrono initialization for sequences of this length instead
  cell: ClassVar[str] = "lstm"

  def _bias_options(self) -> dict:
    return {"forget_bias": self.forget_bias, "chrono_steps": self.chrono_steps}


class GRUCell(_Cell):
  """The GRU cell; see `gru_step`."""
  cell: ClassVar[str] = "gru"


class Recurrent(nn.Module):
  """One recurrent layer unrolled over time with `jax.lax.scan`: inputs [batch, T, F] ->
  (final carry, outputs [batch, T, H]). `reverse` runs from t = T to 1 (the backward half of a
  bidirectional layer), the outputs staying in input order. `bptt`: "auto" (the written-out
  backward pass of `unroll` in float32 and float64, `jax.grad` of the scan otherwise),
  "written" or "autodiff"."""
  cell: str = "lstm"
  features: int = 128
  reverse: bool = False
  forget_bias: float = 1.0  # LSTM only
  chrono: bool = False  # LSTM only: chrono initialization for the inputs' length (`_bias_init`)
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32
  bptt: str = "auto"

  @nn.compact
  def __call__(self, inputs: jax.Array, carry=None):
    lstm = self.cell == "lstm"
    params = cell_parameters(self, self.cell, inputs.shape[-1], self.features,
                             self.forget_bias if lstm else 0.0,
                             inputs.shape[-2] if lstm and self.chrono else 0)
    dtype = compute_dtype(self.dtype, inputs)
    if carry is None:
      carry = zero_carry(self.cell, inputs.shape[:1], self.features, dtype)
    if self.bptt not in ("auto", "written", "autodiff"):
      raise ValueError(f"unknown bptt {self.bptt!r}; accepted: auto, written, autodiff")
    written = self.bptt == "written" or (
        self.bptt == "auto" and jnp.promote_types(dtype, jnp.float32) == dtype)
    if written:
      carry, outputs = unroll(self.cell, params, jnp.swapaxes(inputs, 0, 1), carry, dtype,
                              self.reverse)
      return carry, jnp.swapaxes(outputs, 0, 1)
    x_terms = jnp.swapaxes(input_terms(params, inputs, dtype), 0, 1)  # [T, batch, G*H]
    step = functools.partial(STEPS[self.cell], params, dtype=dtype)
    carry, outputs = jax.lax.scan(lambda c, x: step(c, x), carry, x_terms,
                                  reverse=self.reverse)
    return carry, jnp.swapaxes(outputs, 0, 1)


class RecurrentEncoder(nn.Module):
  """`num_layers` stacked recurrent layers, each the input of the next; bidirectional: each layer
  is a forward and a backward layer whose outputs are concatenated per step (Schuster & Paliwal
  1997). Returns (outputs [batch, T, H or 2H], summary [batch, H or 2H]): the summary is the
  last forward output, with the backward layer's output at t = 1 (its final state) beside it."""
  cell: str = "lstm"
  features: int = 128
  num_layers: int = 1
  bidirectional: bool = False
  forget_bias: float = 1.0
  dtype: Any = None
  chrono: bool = False

  @nn.compact
  def __call__(self, inputs: jax.Array):
    if self.num_layers < 1:
      raise ValueError(f"num_layers={self.num_layers} must be at least 1")
    layer = functools.partial(Recurrent, self.cell, self.features, forget_bias=self.forget_bias,
                              chrono=self.chrono, dtype=self.dtype)
    x = inputs
    for i in range(self.num_layers):
      if self.bidirectional:
        _, forward = layer(name=f"layer{i}_forward")(x)
        _, backward = layer(reverse=True, name=f"layer{i}_backward")(x)
        x = jnp.concatenate([forward, backward], axis=-1)
      else:
        _, x = layer(name=f"layer{i}")(x)
    if self.bidirectional:
      return x, jnp.concatenate([x[:, -1, :self.features], x[:, 0, self.features:]], axis=-1)
    return x, x[:, -1]


# ---------------------------------------------------------------------------------------------
# Backpropagation through time written out. Per cell: the forward step on one gate block per
# array (x: the input terms of each gate, rec: h_{t-1} W_h of each gate), returning the new carry
# and what the backward step keeps; the backward step maps dL/d(new carry) to dL/d(carry) outside
# the recurrent product, dL/d(input terms) of each gate, and dL/d(recurrent product) of the gates
# where it differs from the former (None elsewhere: stored once). The product's own derivative,
# dL/dh_{t-1} += sum_g delta_g W_g^T, is common to all cells.

def _elman_forward(carry, x, rec, recurrent_bias):
  del recurrent_bias
  h = jnp.tanh(x[0] + rec[0]).astype(carry.dtype)
  return h, ()


def _elman_backward(d_new, prev, new_h, kept):
  del prev, kept
  delta = d_new * (1 - new_h * new_h)  # tanh' = 1 - tanh^2
  return jnp.zeros_like(d_new), (delta,), (None,)


def _lstm_forward(carry, x, rec, recurrent_bias):
  del recurrent_bias
  c, h = carry
  i, f = nn.sigmoid(x[0] + rec[0]), nn.sigmoid(x[1] + rec[1])
  g, o = jnp.tanh(x[2] + rec[2]), nn.sigmoid(x[3] + rec[3])
  new_c = (f * c + i * g).astype(c.dtype)
  return (new_c, (o * jnp.tanh(new_c)).astype(h.dtype)), (i, f, g, o, new_c)


def _lstm_backward(d_new, prev, new_h, kept):
  """c' = f c + i g, h' = o tanh(c'); sigma' = sigma (1 - sigma), tanh' = 1 - tanh^2."""
  del new_h
  (dc, dh), (c, _), (i, f, g, o, new_c) = d_new, prev, kept
  tanh_c = jnp.tanh(new_c)
  dc = dc + dh * o * (1 - tanh_c * tanh_c)
  deltas = (dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g * g),
            dh * tanh_c * o * (1 - o))
  return (dc * f, jnp.zeros_like(dh)), deltas, (None,) * 4


def _gru_forward(h, x, rec, recurrent_bias):
  r, z = nn.sigmoid(x[0] + rec[0]), nn.sigmoid(x[1] + rec[1])
  h_n = rec[2] + recurrent_bias
  n = jnp.tanh(x[2] + r * h_n)
  return ((1 - z) * n + z * h).astype(h.dtype), (r, z, n, h_n)


def _gru_backward(dh, h, new_h, kept):
  """h' = (1 - z) n + z h, n = tanh(x_n + r (h W_n + b_hn))."""
  del new_h
  r, z, n, h_n = kept
  dn = dh * (1 - z) * (1 - n * n)
  dr = dn * h_n * r * (1 - r)
  dz = dh * (h - n) * z * (1 - z)
  return dh * z, (dr, dz, dn), (None, None, dn * r)


_WRITTEN = {"elman": (_elman_forward, _elman_backward), "lstm": (_lstm_forward, _lstm_backward),
            "gru": (_gru_forward, _gru_backward)}


def _hidden(cell: str, carry):
  return carry[1] if cell == "lstm" else carry


def _with_hidden(cell: str, carry, h):
  return (carry[0], h) if cell == "lstm" else h


def _forward_scan(cell, reverse, kernel, recurrent_bias, x_terms, carry, keep: bool):
  forward = _WRITTEN[cell][0]
  kernels = jnp.split(kernel, GATES[cell], axis=-1)

  def step(carry, x):
    h = _hidden(cell, carry)
    rec = tuple(jnp.dot(h.astype(k.dtype), k) for k in kernels)
    new, kept = forward(carry, x, rec, recurrent_bias)
    new_h = _hidden(cell, new)
    return new, ((new_h, kept) if keep else new_h)
  return jax.lax.scan(step, carry, x_terms, reverse=reverse)


def _merged(d_x, d_rec):
  return tuple(x if r is None else r for x, r in zip(d_x, d_rec))


def _shifted(sequence, first, reverse: bool):
  """The state each step starts from: [first, s_1, ..., s_{T-1}] (from the end if `reverse`)."""
  if reverse:
    return jnp.concatenate([sequence[1:], first[None]])
  return jnp.concatenate([first[None], sequence[:-1]])


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _unroll(cell, reverse, kernel, recurrent_bias, x_terms, carry):
  return _forward_scan(cell, reverse, kernel, recurrent_bias, x_terms, carry, keep=False)


def _unroll_forward(cell, reverse, kernel, recurrent_bias, x_terms, carry):
  final, (outputs, kept) = _forward_scan(cell, reverse, kernel, recurrent_bias, x_terms, carry,
                                         keep=True)
  return (final, outputs), (kernel, recurrent_bias, carry, outputs, kept)


def _unroll_backward(cell, reverse, residuals, cotangents):
  kernel, recurrent_bias, carry, outputs, kept = residuals
  d_final, d_outputs = cotangents
  backward = _WRITTEN[cell][1]
  previous_h = _shifted(outputs, _hidden(cell, carry), reverse)
  previous = ((_shifted(kept[-1], carry[0], reverse), previous_h) if cell == "lstm"
              else previous_h)
  transposed = tuple(k.T for k in jnp.split(kernel, GATES[cell], axis=-1))

  def step(d_carry, inputs):
    d_output, prev, new_h, kept_t = inputs
    d_carry = _with_hidden(cell, d_carry, _hidden(cell, d_carry) + d_output)
    d_prev, d_x, d_rec = backward(d_carry, prev, new_h, kept_t)
    d_h = _hidden(cell, d_prev) + sum(jnp.dot(d.astype(k.dtype), k)
                                      for d, k in zip(_merged(d_x, d_rec), transposed))
    return _with_hidden(cell, d_prev, d_h.astype(previous_h.dtype)), (d_x, d_rec)
  new_h = outputs if cell == "elman" else None  # what the Elman step differentiates
  d_carry, (d_x, d_rec) = jax.lax.scan(step, d_final, (d_outputs, previous, new_h, kept),
                                       reverse=not reverse)
  d_rec = _merged(d_x, d_rec)
  h_rows = previous_h.reshape(-1, previous_h.shape[-1]).T  # [H, T * batch]
  d_kernel = jnp.concatenate([jnp.dot(h_rows, d.reshape(-1, d.shape[-1])) for d in d_rec], -1)
  d_recurrent_bias = (None if recurrent_bias is None
                      else d_rec[-1].sum((0, 1)).astype(recurrent_bias.dtype))
  d_carry = jax.tree.map(lambda d, c: d.astype(c.dtype), d_carry, carry)
  return (d_kernel.astype(kernel.dtype), d_recurrent_bias,
          tuple(d.astype(kernel.dtype) for d in d_x), d_carry)


_unroll.defvjp(_unroll_forward, _unroll_backward)


def gate_terms(params: dict, xs: jax.Array, cell: str, dtype) -> tuple[jax.Array, ...]:
  """x W_x + b of each gate, one array [..., H] per gate block."""
  kernels = jnp.split(params["input_kernel"].astype(dtype), GATES[cell], axis=-1)
  biases = jnp.split(params["bias"].astype(dtype), GATES[cell])
  xs = xs.astype(dtype)
  return tuple(jnp.dot(xs, k) + b for k, b in zip(kernels, biases))


def unroll(cell: str, params: dict, xs: jax.Array, carry, dtype, reverse: bool = False):
  """The layer over time-major inputs xs [T, batch, F] from `carry`: (final carry, outputs
  [T, batch, H]), equal to the scan of `STEPS[cell]`, with backpropagation through time written
  out (see the module docstring) instead of `jax.grad` of the scan."""
  if cell not in CELLS:
    raise ValueError(f"unknown cell {cell!r}; accepted: {', '.join(CELLS)}")
  kernel = params["recurrent_kernel"].astype(dtype)
  recurrent_bias = params["recurrent_bias"].astype(dtype) if cell == "gru" else None
  return _unroll(cell, reverse, kernel, recurrent_bias, gate_terms(params, xs, cell, dtype),
                 carry)


def elman_bptt(params: dict, xs: jax.Array, h0: jax.Array, grad_outputs: jax.Array,
               truncation: int = 0):
  """Backpropagation through time for the Elman cell, written out.

  Forward, t = 1..T: a_t = x_t W_x + h_{t-1} W_h + b, h_t = tanh(a_t). `grad_outputs` holds
  dL/dh_t from outside the recurrence (e.g. a loss on each output); the gradient flows back:

      delta_h_t = dL/dh_t + delta_a_{t+1} W_h^T      (delta_a_{T+1} = 0)
      delta_a_t = delta_h_t * (1 - h_t^2)
      dL/dW_x = sum_t x_t^T delta_a_t     dL/dW_h = sum_t h_{t-1}^T delta_a_t
      dL/db = sum_t delta_a_t
      dL/dx_t = delta_a_t W_x^T         dL/dh_0 = delta_a_1 W_h^T

  `truncation` > 0: truncated BPTT, the sequence cut into chunks of that many steps, and nothing
  flows from a chunk into the one before (a step of 0-based index i with i % truncation == 0
  starts a chunk, the first included: dL/dh_0 = 0). Arrays are time-major: xs [T, batch, F],
  h0 [batch, H], grad_outputs [T, batch, H]. Returns ({"input_kernel", "recurrent_kernel",
  "bias"}, dL/dxs, dL/dh0).
  """
  w_x, w_h, b = params["input_kernel"], params["recurrent_kernel"], params["bias"]

  def forward(h, x):
    h = jnp.tanh(x @ w_x + h @ w_h + b)
    return h, h
  _, hs = jax.lax.scan(forward, h0, xs)
  previous = jnp.concatenate([h0[None], hs[:-1]])  # h_{t-1}
  steps = jnp.arange(len(xs))
  starts_chunk = (steps % truncation == 0) if truncation else jnp.zeros(len(xs), bool)

  def backward(from_later, inputs):  # from_later = delta_a_{t+1} W_h^T
    grad, h, start = inputs
    delta_a = (grad + from_later) * (1 - h * h)
    to_earlier = jnp.where(start, 0.0, delta_a @ w_h.T)
    return to_earlier, delta_a
  _, delta_a = jax.lax.scan(backward, jnp.zeros_like(h0), (grad_outputs, hs, starts_chunk),
                            reverse=True)
  grads = {"input_kernel": jnp.einsum("tbf,tbh->fh", xs, delta_a),
           "recurrent_kernel": jnp.einsum("tbk,tbh->kh", previous, delta_a),
           "bias": delta_a.sum((0, 1))}
  grad_h0 = jnp.where(starts_chunk[0], 0.0, delta_a[0] @ w_h.T)
  return grads, delta_a @ w_x.T, grad_h0
