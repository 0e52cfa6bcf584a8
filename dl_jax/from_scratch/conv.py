"""Convolution written out by hand (section 5.2 of the notes), 1-D, 2-D and 3-D.

- `convolve`: true convolution, eq. 5.1 / 5.7, y_i = sum_j x_{i-j} k_j: the kernel is flipped.
- `correlate`: cross-correlation (footnote 1: what deep-learning libraries call convolution),
  y_i = sum_j x_{i+j} k_j.

Both take a batch of N-d inputs with channels (section 5.2.4), channels last
(B, L[, M[, N]], C_in) with a kernel (K_1, ..., K_n, C_in, C_out), or channels first
(B, C_in, L, ...) with a kernel (C_out, C_in, K_1, ..., K_n); padding 'valid', 'same',
'causal' (1-D only) or 'circular' (section 5.2.2), or explicit zero padding (an int P per side, or
(low, high) pairs); strides (section 5.2.7).

The computation loops over the kernel taps only, never over output positions: the output is the
sum over taps j of the strided slice of the padded input that tap j sees, times the kernel slice
k_j (an einsum over the channels, eq. 5.15-5.16). It jits.

The backward pass (`impl='custom_vjp'`, the default) is written with the same correlation
(eq. 5.9-5.14, with strides):
- kernel gradient, eq. 5.13: dL/dk_j = sum_i dL/dy_i x_{S i + j}, the correlation of the padded
  input with the output gradient (one strided slice per tap);
- input gradient, eq. 5.14: dL/dx_l = sum_i dL/dy_i k_{l - S i}, the full convolution of the
  output gradient, dilated by the stride (S - 1 zeros between its entries), with the kernel:
  computed as a 'valid' correlation of the dilated gradient, padded by K - 1 zeros on each side,
  with the flipped kernel (input and output channels swapped).
The padding itself (zeros, or wrap-around for 'circular') and the flip of `convolve` are
differentiated by JAX (their adjoints are a slice, a wrap-around sum and a flip).
`impl='autodiff'` lets JAX differentiate the tap sum instead (the reference in the tests).
"""

import functools
import itertools
import numbers
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from dl_jax.errors import ConfigError, require

Array = jax.Array
PADDINGS = ("valid", "same", "causal", "circular")
IMPLS = ("custom_vjp", "autodiff")


def int_tuple(value, n: int, name: str) -> tuple[int, ...]:
  """An int or n ints -> n positive ints, or a ConfigError naming `name` and the value."""
  if isinstance(value, numbers.Integral):
    value = (value,) * n
  value = tuple(int(v) if isinstance(v, numbers.Integral) else v for v in value)
  require(len(value) == n and all(isinstance(v, int) and v >= 1 for v in value),
          f"{name} must be a positive int or {n} positive ints, got {value!r}")
  return value


def explicit_padding(padding, in_shape: Sequence[int], kernel_shape: Sequence[int],
                     strides: Sequence[int]) -> list[tuple[int, int]]:
  """(low, high) padding per spatial axis for `padding` (section 5.2.2).

  'same' pads so that the output has ceil(L / S) positions, the extra zero (if any) at the
  high end, as `lax.conv_general_dilated` and `flax.linen.Conv` do; 'circular' pads the same
  amounts (with wrapped-around values); 'causal' puts K - 1 zeros before the sequence only, so
  that output i sees no input after index S i.
  """
  n = len(in_shape)
  if isinstance(padding, str):
    mode = padding.lower()
    require(mode in PADDINGS,
            f"unknown padding {padding!r}; accepted: {', '.join(map(repr, PADDINGS))}, an int, "
            "or (low, high) pairs")
    if mode == "valid":
      return [(0, 0)] * n
    if mode == "causal":
      require(n == 1, f"padding 'causal' is for 1-D convolution, got {n} spatial axes")
      return [(kernel_shape[0] - 1, 0)]
    pads = []
    for size, k, s in zip(in_shape, kernel_shape, strides):
      total = max((-(-size // s) - 1) * s + k - size, 0)
      pads.append((total // 2, total - total // 2))
    return pads
  if isinstance(padding, int):
    padding = [(padding, padding)] * n
  pads = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
  require(len(pads) == n and all(len(p) == 2 and min(p) >= 0 for p in pads),
          f"padding must be a string, a non-negative int or {n} (low, high) pairs, got {padding!r}")
  return pads


def _pad(x: Array, pads, circular: bool) -> Array:
  """Pads the spatial axes 1..n of channels-last `x`: zeros, or wrapped-around values."""
  widths = [(0, 0), *pads, (0, 0)]
  if circular:
    for size, (lo, hi) in zip(x.shape[1:-1], pads):
      require(lo <= size and hi <= size,
              f"circular padding ({lo}, {hi}) is larger than the input size {size}")
    return jnp.pad(x, widths, mode="wrap")
  return jnp.pad(x, widths)


def _tap(x: Array, offset: Sequence[int], out_shape: Sequence[int],
         strides: Sequence[int]) -> Array:
  """The strided slice x[:, o_1 + S_1 i_1, ..., :] over all output positions i (one kernel tap)."""
  index = [slice(None)]
  for o, n, s in zip(offset, out_shape, strides):
    index.append(slice(o, o + (n - 1) * s + 1, s))
  return x[tuple(index)]


def _out_shape(in_shape, kernel_shape, strides) -> tuple[int, ...]:
  out = tuple((size - k) // s + 1 for size, k, s in zip(in_shape, kernel_shape, strides))
  require(all(o >= 1 for o in out),
          f"kernel {tuple(kernel_shape)} is larger than the padded input {tuple(in_shape)}")
  return out


def _correlate_valid(x: Array, kernel: Array, strides: tuple[int, ...]) -> Array:
  """y_i = sum_j x_{S i + j}^T k_j, channels last, no padding: a sum over the kernel taps j."""
  kernel_shape = kernel.shape[:-2]
  out_shape = _out_shape(x.shape[1:-1], kernel_shape, strides)
  y = None
  for offset in itertools.product(*map(range, kernel_shape)):
    term = jnp.einsum("...i,io->...o", _tap(x, offset, out_shape, strides), kernel[offset])
    y = term if y is None else y + term
  return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _correlate_valid_vjp(x: Array, kernel: Array, strides: tuple[int, ...]) -> Array:
  return _correlate_valid(x, kernel, strides)


def _correlate_valid_fwd(x, kernel, strides):
  return _correlate_valid(x, kernel, strides), (x, kernel)


def kernel_grad(x: Array, g: Array, kernel_shape: Sequence[int],
                strides: Sequence[int]) -> Array:
  """Eq. 5.13: dL/dk_j = sum_{b, i} x_{b, S i + j} dL/dy_{b, i}, one (C_in, C_out) block per tap."""
  out_shape = g.shape[1:-1]
  n = len(out_shape)
  spatial = "".join(chr(ord("a") + d) for d in range(n))
  spec = f"z{spatial}i,z{spatial}o->io"
  taps = [jnp.einsum(spec, _tap(x, offset, out_shape, strides), g)
          for offset in itertools.product(*map(range, kernel_shape))]
  return jnp.stack(taps).reshape(*kernel_shape, x.shape[-1], g.shape[-1])


def input_grad(g: Array, kernel: Array, in_shape: Sequence[int],
               strides: Sequence[int]) -> Array:
  """Eq. 5.14: dL/dx_l = sum_i dL/dy_i k_{l - S i}, a full convolution of the output gradient.

  The gradient is dilated by the strides (S - 1 zeros between entries), padded by K - 1 zeros
  on each side (plus zeros at the high end for the input positions no output saw), and
  correlated with the flipped kernel whose input and output channels are swapped.
  """
  kernel_shape = kernel.shape[:-2]
  widths = [(0, 0, 0)]
  for size, k, s, o in zip(in_shape, kernel_shape, strides, g.shape[1:-1]):
    unseen = size - ((o - 1) * s + k)
    widths.append((k - 1, k - 1 + unseen, s - 1))
  widths.append((0, 0, 0))
  g_full = lax.pad(g, jnp.zeros((), g.dtype), widths)
  flipped = jnp.flip(kernel, axis=tuple(range(len(kernel_shape)))).swapaxes(-1, -2)
  return _correlate_valid(g_full, flipped, (1,) * len(kernel_shape))


def _correlate_valid_bwd(strides, residuals, g):
  x, kernel = residuals
  return (input_grad(g, kernel, x.shape[1:-1], strides).astype(x.dtype),
          kernel_grad(x, g, kernel.shape[:-2], strides).astype(kernel.dtype))


_correlate_valid_vjp.defvjp(_correlate_valid_fwd, _correlate_valid_bwd)


def correlate(x: Array, kernel: Array, strides=1, padding="valid", *, channels: str = "last",
              impl: str = "custom_vjp") -> Array:
  """Cross-correlation y_i = sum_j x_{S i + j}^T k_j of a batch of 1-, 2- or 3-D inputs.

  Args:
    x: (B, *spatial, C_in) for channels='last', (B, C_in, *spatial) for channels='first'.
    kernel: (*K, C_in, C_out) for channels='last', (C_out, C_in, *K) for channels='first'.
    strides: S, an int or one per spatial axis.
    padding: 'valid', 'same', 'causal' (1-D), 'circular', an int P, or (low, high) pairs.
    channels: 'last' or 'first' (section 5.2.4); the output uses the same convention.
    impl: 'custom_vjp' (the backward pass of eq. 5.13-5.14 by hand) or 'autodiff'.

  Returns:
    The (B, *out, C_out) or (B, C_out, *out) output, out_d = (L_d - K_d + P_lo + P_hi) // S_d + 1.
  """
  require(channels in ("last", "first"), f"channels must be 'last' or 'first', got {channels!r}")
  require(impl in IMPLS, f"unknown impl {impl!r}; accepted: {', '.join(map(repr, IMPLS))}")
  n = kernel.ndim - 2
  require(1 <= n <= 3 and x.ndim == n + 2,
          f"expected a kernel with 1-3 spatial axes and an input with one batch, {n} spatial and "
          f"one channel axis; got input shape {x.shape} and kernel shape {kernel.shape}")
  if channels == "first":
    x = jnp.moveaxis(x, 1, -1)
    kernel = jnp.moveaxis(kernel, (0, 1), (-1, -2))
  require(x.shape[-1] == kernel.shape[-2],
          f"input has {x.shape[-1]} channels, the kernel expects {kernel.shape[-2]}")
  strides = int_tuple(strides, n, "strides")
  kernel_shape = kernel.shape[:-2]
  pads = explicit_padding(padding, x.shape[1:-1], kernel_shape, strides)
  circular = isinstance(padding, str) and padding.lower() == "circular"
  if any(p != (0, 0) for p in pads):
    x = _pad(x, pads, circular)
  fn = _correlate_valid_vjp if impl == "custom_vjp" else _correlate_valid
  y = fn(x, kernel, strides)
  return jnp.moveaxis(y, -1, 1) if channels == "first" else y


def convolve(x: Array, kernel: Array, strides=1, padding="valid", *, channels: str = "last",
             impl: str = "custom_vjp") -> Array:
  """True convolution, eq. 5.1 / 5.7: `correlate` with the kernel flipped along its spatial axes.

  Same arguments as `correlate`. For 'same' padding with an even kernel size K the output is
  y_{i + K - 1 - P_lo} of eq. 5.7 (the padding only shifts and cuts the output, section 5.2.3).
  """
  n = kernel.ndim - 2
  axes = tuple(range(n)) if channels == "last" else tuple(range(2, n + 2))
  return correlate(x, jnp.flip(kernel, axis=axes), strides, padding, channels=channels, impl=impl)


def subsample(y: Array, strides, *, channels: str = "last") -> Array:
  """Keeps every S-th output along each spatial axis (section 5.2.7, strided sub-sampling)."""
  n = y.ndim - 2
  strides = int_tuple(strides, n, "strides")
  spatial = [slice(None, None, s) for s in strides]
  index = (slice(None), *spatial, slice(None)) if channels == "last" else (
      slice(None), slice(None), *spatial)
  return y[index]


def output_size(W1: int, F: int, P: int, S: int) -> int:  # pylint: disable=invalid-name
  """W_2 = (W_1 - F + 2P) / S + 1 (section 5.2.7); a ConfigError if it is not a positive integer."""
  numerator = W1 - F + 2 * P
  if S < 1 or numerator < 0 or numerator % S:
    raise ConfigError(
        f"output size (W1 - F + 2P)/S + 1 = ({W1} - {F} + 2*{P})/{S} + 1 is not a positive "
        f"integer for W1={W1}, F={F}, P={P}, S={S}")
  return numerator // S + 1
