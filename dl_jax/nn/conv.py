"""A 2-D convolution layer that is fast on CPU as well (section 5.2 of the notes).

`Conv` is a drop-in replacement for `flax.linen.Conv` on NHWC inputs: same attributes, same
parameters (`kernel` of shape HWIO, `bias` of shape (features,)), same output. Its `impl`
attribute picks how the convolution of eq. 5.7 and its gradients, eq. 5.13 (kernel) and
eq. 5.14 (input), are computed:

- 'xla': `lax.conv_general_dilated`, differentiated by JAX. On GPU/TPU this is the library
  convolution (cuDNN etc.) and the fastest choice.
- 'im2col': the kh*kw shifted (strided) views of the input are concatenated on the channel
  axis ("patches") and multiplied by the kernel reshaped to (kh*kw*C_in, C_out) in one matmul;
  JAX differentiates the slices (pads and adds) and the matmul.
- 'custom_vjp': the forward pass is XLA's convolution (stride 1: kept on Eigen, see below;
  one input channel: a sum of kh*kw broadcast products), and the backward pass is written out
  by hand:
  * eq. 5.13, dL/dk_j = sum_i dL/dy_i x_{i-j}: a correlation of the input with the output
    gradient over the batch, computed as one convolution per chunk of up to 128 examples
    (the examples as its input features), summed over the chunks;
  * eq. 5.14, dL/dx_l = sum_i dL/dy_i k_{i-l}: a convolution of the output gradient with
    the kernel along the width only, giving kh partial rows at once, which are then shifted
    and summed along the height.
- 'folded' (stride 1; otherwise 'custom_vjp'): the same three computations on the width
  folded into the channels. In NHWC, [N, H, W, C] and [N, H, W/s, s*C] are the same array, and
  the convolution with kernel k is the convolution of the folded input with the folded kernel
  k'[i, q, (t, c), (r, o)] = k[i, s*q + t - r, c, o] (zero outside k), which gives the output
  folded the same way, [N, H', W'/s, s*C_out]. Only the small kernel is rearranged. s is the
  smallest power of 2 giving >= 16 input channels, at most 8 and 48 output channels (5.3.1
  network: 8, 4, 2); Eigen's convolution runs these wider channels faster, despite the taps
  that the folded kernel multiplies by zero.
- 'auto': 'folded' when `jax.default_backend()` is 'cpu', else 'xla'; on the CPU, 1x1 kernels,
  strides > 1 and inputs smaller than 5x5 go to 'im2col' (there matmuls beat the hand-written
  gradients and XLA's convolution), inputs of 5x5 and 6x6 to 'xla' (`_auto_cpu_impl`).
  The 5.3.2 architectures (AlexNet, VGG, GoogLeNet, ResNet) build their convolutions with this
  layer and `conv_impl='auto'`.

XLA:CPU gives convolutions with more than 16 input or output features to YNNPACK, which is
several times slower than Eigen on these shapes (layer 2: XLA's kernel gradient, a convolution
over the whole batch, 12.0 ms; folded forward pass through YNNPACK 4.9 ms, through Eigen 1.9 ms);
every convolution here with more features is written with an equivalent dilated width that XLA
keeps on Eigen (`_eigen_conv`). The XLA flag --xla_cpu_experimental_ynn_fusion_type= (empty)
does the same for a whole program.

Measured with jax/jaxlib 0.10.2 on 2 cores (AMD EPYC, load ~1.5 from other work), batch 128,
the 5.3.1 network, `python bench/train_step.py --layers`: forward / input gradient / kernel
gradient in ms, PyTorch 2.13 (oneDNN) alongside (a train step skips the first input gradient):

| layer | xla | custom_vjp | folded | torch |
|---|---|---|---|---|
| 1: 28x28x1 -> 6 | 2.70/8.84/1.94 | 0.33/2.62/0.79 | 0.75/0.84/0.80 | 0.60/4.81/0.48 |
| 2: 24x24x6 -> 12 | 3.78/10.88/12.04 | 3.84/3.75/2.57 | 1.91/2.39/2.49 | 1.42/3.57/2.25 |
| 3: 10x10x12 -> 12 | 0.55/2.13/0.88 | 0.54/0.72/0.60 | 0.50/0.56/0.69 | 0.42/0.57/0.70 |

On the wide layers of the 5.3.2 networks (2 cores of an Intel Xeon with AVX-512, batch 128,
3x3 kernels, ms for forward / forward + both gradients; `xla` against `custom_vjp`): 28x28x64
-> 64 58/250 against 36/96 (PyTorch: 26 ms forward, 27 each gradient), 14x14x128 -> 128
30/133 against 30/72, 7x7x256 -> 256 35/82 against 25/70. Most of XLA's time goes to the kernel
gradient (28x28x64: 190 ms), a convolution over the whole batch that YNNPACK runs at 40
GFLOP/s; the chunked one here takes 65 ms. Forward and backward of whole networks (batch 128):
ResNet-18 small 3.1 s -> 2.1 s, GoogLeNet small 18.3 -> 12.5 s, VGG-11 small 0.60 -> 0.50 s,
AlexNet small 0.23 -> 0.18 s; 'auto''s routing (`_auto_cpu_impl`) gains the rest.

In the train step 'folded' also runs the first layer's forward pass as a convolution: the
broadcast sum is faster alone but is an elementwise chain that XLA fuses into, and recomputes
in, each consumer (the folded view for layer 2, every chunk of layer 2's kernel gradient).
'im2col' materializes kh*kw = 25 copies of the input and is memory-bound (layer 2 forward:
21.85 ms).
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

IMPLS = ("auto", "xla", "im2col", "custom_vjp", "folded")

_DN = ("NHWC", "HWIO", "NHWC")
# Examples per convolution in the kernel gradient (its "input features"): a batch of 128 in one
# convolution. Against chunks of 16 (Intel Xeon, 2 cores, 3x3 kernels, batch 128): 28x28x64 -> 64
# 104 -> 83 ms, 14x14x128 -> 128 52 -> 42, 7x7x256 -> 256 34 -> 34, 4x4x512 -> 512 77 -> 41;
# ResNet-18 small forward + backward 2.33 -> 2.21 s, VGG-11 small 0.465 -> 0.448 s; the 5.3.1
# network, AlexNet and GoogLeNet small unchanged.
_CHUNK = 128
# XLA:CPU hands convolutions with more input or output features than this to YNNPACK.
_YNN_FEATURES = 16
# 'folded' folds the width into the channels until there are at least _FOLD_FEATURES of them,
# by at most _MAX_FOLD and to at most _MAX_FOLDED_FEATURES output channels (the 5.3.1 network:
# folds 8, 4 and 2; wider layers are not folded).
_FOLD_FEATURES = 16
_MAX_FOLD = 8
_MAX_FOLDED_FEATURES = 48
# Above this many chunks the kernel gradient loops with `lax.scan` instead of unrolling.
_MAX_UNROLLED_CHUNKS = 32
# 'auto' on the CPU: inputs smaller than _MIN_IM2COL_SIDE (height or width) as 'im2col', the
# others smaller than _MIN_AUTO_SIDE with XLA's convolution (`_auto_cpu_impl`).
_MIN_IM2COL_SIDE = 5
_MIN_AUTO_SIDE = 7

Array = jax.Array
PaddingLike = str | int | Sequence[int | tuple[int, int]]


def resolve_impl(impl: str) -> str:
  """Validates `impl` and resolves 'auto' for the current default backend."""
  if impl not in IMPLS:
    raise ValueError(f"unknown conv impl {impl!r}; accepted: {', '.join(map(repr, IMPLS))}")
  if impl == "auto":
    return "folded" if jax.default_backend() == "cpu" else "xla"
  return impl


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
  if isinstance(value, int):
    return (value, value)
  value = tuple(value)
  if len(value) != 2 or not all(isinstance(v, int) for v in value):
    raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
  return value


def _explicit_padding(padding: PaddingLike, in_hw: Sequence[int], kernel_hw: Sequence[int],
                      strides: Sequence[int]) -> list[tuple[int, int]]:
  """(low, high) zero padding per spatial axis, as `flax.linen.Conv` does it (section 5.2.2)."""
  if isinstance(padding, str):
    if padding.upper() not in ("SAME", "VALID"):
      raise ValueError(f"unknown padding {padding!r}; accepted: 'SAME', 'VALID', an int, "
                       "or a pair (low, high) per spatial axis")
    return list(lax.padtype_to_pads(in_hw, kernel_hw, strides, padding.upper()))
  if isinstance(padding, int):
    return [(padding, padding)] * 2
  pads = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
  if len(pads) != 2 or not all(len(p) == 2 for p in pads):
    raise ValueError(f"padding must give 2 spatial axes, got {padding!r}")
  return pads


def _strided_view(x: Array, i: int, j: int, out_hw: tuple[int, int],
                  strides: tuple[int, int]) -> Array:
  """x[:, i + s_h*h, j + s_w*w, :] for h < H_out, w < W_out: one shifted view of the input."""
  (ho, wo), (sh, sw) = out_hw, strides
  return lax.slice(x, (0, i, j, 0), (x.shape[0], i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1,
                                     x.shape[3]), (1, sh, sw, 1))


def _out_hw(in_hw: Sequence[int], kernel_hw: Sequence[int],
            strides: Sequence[int]) -> tuple[int, int]:
  """Output size (W_1 - F)/S + 1 of a valid convolution (section 5.2.7)."""
  return tuple((n - k) // s + 1 for n, k, s in zip(in_hw, kernel_hw, strides))


def _patches(x: Array, kernel_hw: tuple[int, int], strides: tuple[int, int]) -> Array:
  """im2col: the kh*kw shifted views, concatenated on the channel axis, (i, j, c)-major."""
  out_hw = _out_hw(x.shape[1:3], kernel_hw, strides)
  return jnp.concatenate([_strided_view(x, i, j, out_hw, strides)
                          for i in range(kernel_hw[0]) for j in range(kernel_hw[1])], axis=-1)


def _conv_xla(x: Array, kernel: Array, strides: tuple[int, int]) -> Array:
  return lax.conv_general_dilated(x, kernel, strides, "VALID", dimension_numbers=_DN)


def _eigen_conv(x: Array, kernel: Array, pad_w: tuple[int, int] = (0, 0),
                preferred_element_type=None) -> Array:
  """Stride-1 convolution, 'VALID' in height, zero-padded by `pad_w` in width.

  XLA:CPU gives convolutions with more than 16 input or output features to YNNPACK, several
  times slower than Eigen on these shapes, and keeps those with a dilated input (base dilation)
  on Eigen. Above 16 features the same convolution is written with the width dilated by 2 on both
  sides and stride 2: y[w] = sum_q x_d[2w + 2q] k[q] = sum_q x[w + q] k[q], identical values.
  """
  if max(x.shape[-1], kernel.shape[-1]) <= _YNN_FEATURES:
    return lax.conv_general_dilated(x, kernel, (1, 1), ((0, 0), pad_w), dimension_numbers=_DN,
                                    preferred_element_type=preferred_element_type)
  return lax.conv_general_dilated(x, kernel, (1, 2), ((0, 0), (2 * pad_w[0], 2 * pad_w[1])),
                                  lhs_dilation=(1, 2), rhs_dilation=(1, 2), dimension_numbers=_DN,
                                  preferred_element_type=preferred_element_type)


def _conv_im2col(x: Array, kernel: Array, strides: tuple[int, int]) -> Array:
  kh, kw, _, cout = kernel.shape
  return jnp.einsum("nhwp,po->nhwo", _patches(x, (kh, kw), strides),
                    kernel.reshape(-1, cout))


def _conv_forward(x: Array, kernel: Array, strides: tuple[int, int]) -> Array:
  """Eq. 5.7 with channels (eq. 5.16); one input channel is a sum of kh*kw broadcast products."""
  kh, kw, cin, _ = kernel.shape
  if cin != 1:
    return _eigen_conv(x, kernel) if strides == (1, 1) else _conv_xla(x, kernel, strides)
  out_hw = _out_hw(x.shape[1:3], (kh, kw), strides)
  y = None
  for i in range(kh):
    for j in range(kw):
      term = _strided_view(x, i, j, out_hw, strides) * kernel[i, j, 0]
      y = term if y is None else y + term
  return y


def _kernel_grad(x: Array, g: Array, kernel_shape: tuple[int, ...],
                 strides: tuple[int, int]) -> Array:
  """Eq. 5.13: dL/dk[i,j,c,o] = sum_{n,h,w} x[n, s_h*h+i, s_w*w+j, c] g[n,h,w,o].

  Per chunk of examples this is a valid convolution of the input (batch axis <- channels,
  feature axis <- examples) with the output gradient as kernel (dilated by the strides);
  the chunks' results are summed.
  """
  kh, kw, cin, cout = kernel_shape
  n = x.shape[0]
  acc_dtype = jnp.promote_types(x.dtype, jnp.float32)  # sum low-precision chunks in f32
  chunk = min(_CHUNK, n)
  num_chunks = -(-n // chunk)
  if num_chunks * chunk != n:  # zero examples add nothing to the sum
    x = jnp.pad(x, ((0, num_chunks * chunk - n), (0, 0), (0, 0), (0, 0)))
    g = jnp.pad(g, ((0, num_chunks * chunk - n), (0, 0), (0, 0), (0, 0)))
  # [chunks, C_in, H, W, chunk] and [chunks, H_out, W_out, chunk, C_out].
  xt = jnp.transpose(x.reshape(num_chunks, chunk, *x.shape[1:]), (0, 4, 2, 3, 1))
  gt = jnp.transpose(g.reshape(num_chunks, chunk, *g.shape[1:]), (0, 2, 3, 1, 4))

  def one_chunk(xc, gc):
    if strides == (1, 1):
      return _eigen_conv(xc, gc, preferred_element_type=acc_dtype)
    return lax.conv_general_dilated(xc, gc, (1, 1), "VALID", rhs_dilation=strides,
                                    dimension_numbers=_DN, preferred_element_type=acc_dtype)

  if num_chunks <= _MAX_UNROLLED_CHUNKS:
    dk = sum(one_chunk(xt[b], gt[b]) for b in range(num_chunks))
  else:
    first = one_chunk(xt[0], gt[0])
    dk, _ = lax.scan(lambda acc, xg: (acc + one_chunk(*xg), None), first, (xt[1:], gt[1:]))
  # The strided correlation may cover rows/columns past the kernel: keep [C_in, kh, kw, C_out].
  return jnp.transpose(dk[:, :kh, :kw, :], (1, 2, 0, 3)).astype(x.dtype)


def _input_grad(g: Array, kernel: Array, x_shape: tuple[int, ...],
                strides: tuple[int, int]) -> Array:
  """Eq. 5.14: dL/dx[n,y,x,c] = sum_{i,j,o} g[n, y-i, x-j, o] k[i,j,c,o] (stride 1).

  Rows: r[n,h,x,(i,c)] = sum_{j,o} g[n,h,x-j,o] k[i,j,c,o] is a convolution along the width
  with kh*C_in output channels; then dL/dx[n,y,x,c] = sum_i r[n, y-i, x, (i,c)].
  """
  if strides != (1, 1):
    # Strided: the transposed convolution as XLA derives it.
    zeros = jnp.zeros(x_shape, g.dtype)
    return jax.vjp(lambda x: _conv_xla(x, kernel, strides), zeros)[1](g)[0]
  kh, kw, cin, cout = kernel.shape
  n, h, w, _ = x_shape
  ho = g.shape[1]
  # kernel_w[0, j', o, (i, c)] = k[i, kw-1-j', c, o]: a correlation along the width.
  kernel_w = jnp.transpose(kernel[:, ::-1], (1, 3, 0, 2)).reshape(1, kw, cout, kh * cin)
  rows = _eigen_conv(g, kernel_w, (kw - 1, kw - 1)).reshape(n, ho, w, kh, cin)
  dx = None
  for i in range(kh):
    term = jnp.pad(rows[:, :, :, i, :], ((0, 0), (i, h - ho - i), (0, 0), (0, 0)))
    dx = term if dx is None else dx + term
  return dx


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_custom_vjp(x: Array, kernel: Array, strides: tuple[int, int]) -> Array:
  return _conv_forward(x, kernel, strides)


def _conv_custom_vjp_fwd(x, kernel, strides):
  return _conv_forward(x, kernel, strides), (x, kernel)


def _conv_custom_vjp_bwd(strides, residuals, g):
  x, kernel = residuals
  return (_input_grad(g, kernel, x.shape, strides).astype(x.dtype),
          _kernel_grad(x, g, kernel.shape, strides).astype(kernel.dtype))


_conv_custom_vjp.defvjp(_conv_custom_vjp_fwd, _conv_custom_vjp_bwd)


# --- 'folded': the width folded into the channels ------------------------------------------

def _fold_factor(cin: int, cout: int, out_w: int) -> int:
  """Width fold s (a power of 2): the smallest giving >= _FOLD_FEATURES input channels, within
  _MAX_FOLD, _MAX_FOLDED_FEATURES output channels and the output width."""
  s = 1
  while (s * cin < _FOLD_FEATURES and 2 * s <= min(_MAX_FOLD, out_w)
         and 2 * s * cout <= _MAX_FOLDED_FEATURES):
    s *= 2
  return s


def _folded_kernel_width(kw: int, s: int) -> int:
  """Q: output column s*w' + r needs input columns s*w' + r + j, j < kw, i.e. folded q < Q."""
  return (s + kw - 2) // s + 1


def _fold_geometry(w: int, kw: int, s: int) -> tuple[int, int, int]:
  """(W_out, folded output width, folded input width) of a valid convolution, fold s."""
  wo = w - kw + 1
  wo_f = -(-wo // s)
  return wo, wo_f, wo_f + _folded_kernel_width(kw, s) - 1


def _fold_matrix(kw: int, s: int) -> np.ndarray:
  """E[q, t, r, j] = 1 where s*q + t - r = j: folded kernel tap (q, t, r) <- kernel column j."""
  e = np.zeros((_folded_kernel_width(kw, s), s, s, kw), np.float32)
  for r in range(s):
    for j in range(kw):
      q, t = divmod(r + j, s)
      e[q, t, r, j] = 1
  return e


def _fold(x: Array, s: int, width: int) -> Array:
  """[N, H, W, C] -> [N, H, width, s*C]: zero-pads W to s*width, then a free reshape (NHWC)."""
  n, h, w, c = x.shape
  if s * width != w:
    x = jnp.pad(x, ((0, 0), (0, 0), (0, s * width - w), (0, 0)))
  return x.reshape(n, h, width, s * c)


def _fold_kernel(kernel: Array, s: int) -> Array:
  """k'[i, q, (t, c), (r, o)] = k[i, s*q + t - r, c, o] (zero outside the kernel)."""
  kh, kw, cin, cout = kernel.shape
  e = jnp.asarray(_fold_matrix(kw, s), kernel.dtype)
  return jnp.einsum("qtrj,ijco->iqtcro", e, kernel, precision=lax.Precision.HIGHEST).reshape(
      kh, e.shape[0], s * cin, s * cout)


def _unfold_kernel_grad(dk_folded: Array, kernel_shape: tuple[int, ...], s: int) -> Array:
  """The transpose of `_fold_kernel`: sums the folded taps back onto the kernel."""
  kh, kw, cin, cout = kernel_shape
  e = jnp.asarray(_fold_matrix(kw, s), dk_folded.dtype)
  return jnp.einsum("qtrj,iqtcro->ijco", e, dk_folded.reshape(kh, e.shape[0], s, cin, s, cout),
                    precision=lax.Precision.HIGHEST)


def _folded_forward(x: Array, kernel: Array, s: int) -> Array:
  kh, kw, _, cout = kernel.shape
  n, h, w, _ = x.shape
  wo, wo_f, w_f = _fold_geometry(w, kw, s)
  y = _eigen_conv(_fold(x, s, w_f), _fold_kernel(kernel, s))
  return y.reshape(n, h - kh + 1, s * wo_f, cout)[:, :, :wo]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_folded(x: Array, kernel: Array, s: int) -> Array:
  return _folded_forward(x, kernel, s)


def _conv_folded_fwd(x, kernel, s):
  return _folded_forward(x, kernel, s), (x, kernel)


def _conv_folded_bwd(s, residuals, g):
  """Eq. 5.13-5.14 as in 'custom_vjp', on the folded input, output gradient and kernel."""
  x, kernel = residuals
  n, h, w, cin = x.shape
  _, wo_f, w_f = _fold_geometry(w, kernel.shape[1], s)
  kernel_f = _fold_kernel(kernel, s)
  x_f, g_f = _fold(x, s, w_f), _fold(g, s, wo_f)
  dx = _input_grad(g_f, kernel_f, x_f.shape, (1, 1)).reshape(n, h, s * w_f, cin)[:, :, :w]
  dk = _kernel_grad(x_f, g_f, kernel_f.shape, (1, 1))
  return dx.astype(x.dtype), _unfold_kernel_grad(dk, kernel.shape, s).astype(kernel.dtype)


_conv_folded.defvjp(_conv_folded_fwd, _conv_folded_bwd)


def _auto_cpu_impl(x_shape: Sequence[int], kernel_shape: Sequence[int],
                   strides: tuple[int, int]) -> str:
  """What 'auto' computes a convolution with on the CPU, measured layer by layer (batch 128,
  forward + both gradients, 2 cores of an Intel Xeon; PyTorch/oneDNN beside):

  - 'im2col' for 1x1 kernels (then a single matmul), strides > 1 and inputs smaller than 5x5:
    XLA's matmuls beat its convolutions there. ResNet-18 small: 28x28x64 -> 128 stride 2
    133 -> 72 ms (PyTorch 56), its 1x1 projection 47 -> 16 ms (25), 4x4x512 -> 512 121 -> 109 ms
    (93); GoogLeNet's 1x1 28x28x192 -> 64 128 -> 58 ms (59); VGG's 1x1x512 -> 512 40 -> 11 ms.
  - 'xla' for inputs of 5x5 and 6x6 (AlexNet small's 6x6 maps: im2col 25-36 ms, XLA 19-30 ms).
  - 'folded' otherwise: Eigen's convolution with hand-written gradients.
  """
  kernel_hw, side = tuple(kernel_shape[:2]), min(x_shape[1:3])
  if kernel_hw == (1, 1) or strides != (1, 1) or side < _MIN_IM2COL_SIDE:
    return "im2col"
  return "xla" if side < _MIN_AUTO_SIDE else "folded"


def conv2d(x: Array, kernel: Array, strides: int | Sequence[int] = 1,
           padding: PaddingLike = "VALID", impl: str = "auto") -> Array:
  """2-D convolution (cross-correlation, as in the notes' footnote 1) of NHWC `x` with HWIO
  `kernel`, zero-padded per `padding` ('VALID', 'SAME', an int, or (low, high) pairs)."""
  chosen = impl
  impl = resolve_impl(impl)
  strides = _pair(strides, "strides")
  kernel_hw = kernel.shape[:2]
  if chosen == "auto" and impl == "folded":
    impl = _auto_cpu_impl(x.shape, kernel.shape, strides)
  if impl == "xla":
    pad = padding.upper() if isinstance(padding, str) else _explicit_padding(
        padding, x.shape[1:3], kernel_hw, strides)
    return lax.conv_general_dilated(x, kernel, strides, pad, dimension_numbers=_DN)
  pads = _explicit_padding(padding, x.shape[1:3], kernel_hw, strides)
  if any(p != (0, 0) for p in pads):
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  if impl == "im2col":
    return _conv_im2col(x, kernel, strides)
  if impl == "folded" and strides == (1, 1):
    s = _fold_factor(x.shape[3], kernel.shape[3], x.shape[2] - kernel.shape[1] + 1)
    if s > 1:
      return _conv_folded(x, kernel, s)
  return _conv_custom_vjp(x, kernel, strides)


class Conv(nn.Module):
  """2-D convolutional layer (section 5.2.5), interchangeable with `flax.linen.Conv`.

  Same parameters and outputs as `flax.linen.Conv(features, (kh, kw), ...)`. One difference:
  an int `kernel_size` F means (F, F) here, whereas flax would make a 1-D convolution.

  Attributes:
    features: number of filters K (output channels).
    kernel_size: F, an int (square kernel) or (kh, kw).
    strides: S, an int or (s_h, s_w) (section 5.2.7).
    padding: 'SAME' (flax's default), 'VALID', an int, or (low, high) per spatial axis
      (section 5.2.2).
    use_bias: whether to add a bias per filter (eq. 5.3).
    dtype: computation dtype (None: inferred from inputs and params), as in flax.
    param_dtype: parameter dtype.
    kernel_init: initializer of the HWIO kernel (flax's default: LeCun normal).
    bias_init: initializer of the bias (flax's default: zeros).
    impl: 'auto', 'xla', 'im2col', 'custom_vjp' or 'folded' (see the module docstring).
  """
  features: int
  kernel_size: int | Sequence[int]
  strides: int | Sequence[int] = 1
  padding: PaddingLike = "SAME"
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.linear.default_kernel_init
  bias_init: Callable = nn.initializers.zeros_init()
  impl: str = "auto"

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    """Applies the layer to NHWC `inputs` (or HWC, or with several leading batch axes)."""
    resolve_impl(self.impl)  # fails early on an unknown impl
    kernel_hw = _pair(self.kernel_size, "kernel_size")
    batch_shape = inputs.shape[:-3]
    if len(batch_shape) != 1:
      inputs = inputs.reshape((-1, *inputs.shape[-3:]))
    kernel = self.param("kernel", self.kernel_init, (*kernel_hw, inputs.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    y = conv2d(inputs, kernel, self.strides, self.padding, self.impl)
    if bias is not None:
      y = y + bias
    if len(batch_shape) != 1:
      y = y.reshape((*batch_shape, *y.shape[1:]))
    return y
