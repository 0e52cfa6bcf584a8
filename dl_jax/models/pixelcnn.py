"""PixelCNN and the gated PixelCNN (the autoregressive models and density estimation of the course
overview, section 1.5): exact likelihoods of binary images by masked convolutions.

An autoregressive model writes the probability of an image as a product of conditionals in
raster order (row by row, left to right), p(x) = prod_i p(x_i | x_1, ..., x_{i-1}), and outputs
all 784 conditionals at once: one Bernoulli logit per pixel, [batch, 28, 28, 1] (the registry's
"autoregressive" family). The logit at pixel i must depend on the pixels before i only; then
-log p(x) = sum_i BCE(logit_i, x_i) is exact (no bound, no sampling) and sampling is ancestral,
one pixel after another (`ancestral_sample`).

The masked convolution (`mask`, `MaskedConv`; van den Oord, Kalchbrenner and Kavukcuoglu 2016,
"Pixel Recurrent Neural Networks", section 3.4 and its figure of masks A and B, which also
split R, G and B sub-pixels: one grey channel does not need that) multiplies the kernel by a fixed
0/1 mask before convolving, so that the output at a pixel never sees the input below it or to
its right. For a 5x5 kernel, centre C:

        mask A            mask B            vertical A        vertical B
    1 1 1 1 1         1 1 1 1 1         1 1 1 1 1         1 1 1 1 1
    1 1 1 1 1         1 1 1 1 1         1 1 1 1 1         1 1 1 1 1
    1 1 C 0 0         1 1 C 0 0         0 0 C 0 0         1 1 C 1 1
    0 0 0 0 0         0 0 0 0 0         0 0 0 0 0         0 0 0 0 0
    0 0 0 0 0         0 0 0 0 0         0 0 0 0 0         0 0 0 0 0
    (C = 0)           (C = 1)           (C = 0)           (C = 1)

Mask A (the first layer) excludes the centre: the first features at pixel i see pixels < i.
Mask B (every later layer) includes it: features at i, which already see pixels < i only, may
be combined with those at i. Mask A twice, or mask B first, breaks the property (tests).

`PixelCNN` is the network of the PixelRNN paper (section 3.5, table 1, figure 5): a 7x7 mask A
convolution, residual blocks (1x1 conv 2h -> h, 3x3 mask B conv h -> h, 1x1 conv h -> 2h, each
after a ReLU), and two ReLU + 1x1 layers to the logit. Stacking mask-B kernels grows the receptive
field as a cone that widens by one pixel to the right per row up: pixels up and to the right
outside it are never seen however deep the stack (the "blind spot", section 2.3 and figure 1
of the gated paper).

`GatedPixelCNN` is that of "Conditional Image Generation with PixelCNN Decoders" (van den Oord et
al. 2016, sections 2.2-2.3, figure 2), which removes the blind spot with two stacks: a vertical
stack whose features at (r, c) see every input row above r (k x k kernels masked "vertical A" on the
first layer, rows above only, then "vertical B", rows above and the own row, which the
previous vertical features allow), and a horizontal stack along the own row (1 x k kernels, mask
A then B) that receives the vertical features at its pixel through a 1x1 convolution. Each
layer is gated, tanh(W_f * x) . sigmoid(W_g * x) (their eq. 2), and the horizontal stack is
residual. The paper implements the vertical stack with unmasked ceil(k/2) x k kernels and a
down-shift; the masks here give the same dependencies and `MaskedConv` convolves with the
nonzero rows and columns of the mask only, so the work is that of the shifted version.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.models.spec import ModelSpec
from dl_jax.models.vae import bernoulli_log_likelihood
from dl_jax.nn import conv as conv_lib

MASK_TYPES = ("A", "B", "vertical_A", "vertical_B", "none")


# ---------------------------------------------------------------------------------------------
# The mechanism

def mask(kernel_hw: tuple[int, int], mask_type: str) -> np.ndarray:
  """The 0/1 mask [kh, kw] of a kernel whose centre (kh // 2, kw // 2) sits on the output pixel
  (see the figure in the module docstring): "A" rows above the centre and the centre row left
  of it; "B" also the centre; "vertical_A" rows above only; "vertical_B" rows above and the
  whole centre row; "none" everything (the unmasked negative control)."""
  if mask_type not in MASK_TYPES:
    raise ValueError(f"unknown mask type {mask_type!r}; accepted: {', '.join(MASK_TYPES)}")
  kh, kw = kernel_hw
  ch, cw = kh // 2, kw // 2
  rows, cols = np.arange(kh)[:, None], np.arange(kw)[None, :]
  above, centre_row = rows < ch, rows == ch
  out = {"A": above | (centre_row & (cols < cw)),
         "B": above | (centre_row & (cols <= cw)),
         "vertical_A": above & (cols >= 0),
         "vertical_B": (above | centre_row) & (cols >= 0),
         "none": np.ones((kh, kw), bool)}[mask_type]
  return out.astype(np.float32)


def _support(m: np.ndarray) -> tuple[slice, slice, tuple[tuple[int, int], tuple[int, int]]]:
  """The rows and columns of the smallest box holding the nonzeros of mask `m` and its centre,
  and the padding ((top, bottom), (left, right)) that makes a VALID convolution with the kernel
  cut to that box equal to the SAME convolution with the whole masked kernel."""
  kh, kw = m.shape
  ch, cw = kh // 2, kw // 2
  rows, cols = np.nonzero(m)
  r0, r1 = min(rows.min(initial=ch), ch), max(rows.max(initial=ch), ch)
  c0, c1 = min(cols.min(initial=cw), cw), max(cols.max(initial=cw), cw)
  return (slice(r0, r1 + 1), slice(c0, c1 + 1),
          ((ch - r0, r1 - ch), (cw - c0, c1 - cw)))


class MaskedConv(nn.Module):
  """A stride-1 SAME convolution whose HWIO kernel is multiplied by `mask(kernel_size,
  mask_type)` before use: the output equals `flax.linen.Conv(features, kernel_size,
  padding="SAME")` with the masked kernel. The parameters are the whole kernel (masked entries
  get zero gradient); the convolution itself runs on the box of the mask's nonzero rows and
  columns (with the centre), zero-padded to keep the size, via `dl_jax.nn.conv.conv2d`."""
  features: int
  kernel_size: tuple[int, int]
  mask_type: str = "B"
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.linear.default_kernel_init
  impl: str = "auto"  # see dl_jax.nn.conv

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param("bias", nn.initializers.zeros_init(), (self.features,),
                       self.param_dtype) if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    m = mask((kh, kw), self.mask_type)
    rows, cols, padding = _support(m)
    masked = (kernel * jnp.asarray(m, kernel.dtype)[:, :, None, None])[rows, cols]
    if masked.shape[:2] == (1, 1):  # a 1x1 convolution is a matrix product per pixel
      y = jnp.einsum("bhwi,io->bhwo", x, masked[0, 0])
    else:
      y = conv_lib.conv2d(x, masked, 1, padding, self.impl)
    return y if bias is None else y + bias


def nll(logits: jax.Array, x: jax.Array) -> jax.Array:
  """-log p(x) per image in nats: the sum over the pixels of the binary cross-entropy of
  Bernoulli(sigmoid(logit)) (course eq. 2.39), exact for an autoregressive model. [batch]"""
  return -bernoulli_log_likelihood(logits, x)


def ancestral_sample(logits_fn: Callable[[jax.Array], jax.Array], key, canvas: jax.Array,
                     start: int | jax.Array = 0) -> jax.Array:
  """Pixels start, start + 1, ..., H * W - 1 of `canvas` [batch, H, W, 1] drawn one at a time in
  raster order: at step i the network reads the canvas so far, pixel i ~ Bernoulli(sigmoid(
  logits_fn(canvas)[:, i])) with key fold_in(key, i), and is written into the canvas (pixels
  before `start` are kept: completions). One `lax.fori_loop` of H * W - start full passes; jit
  the caller."""
  _, height, width, _ = canvas.shape

  def body(i, canvas):
    r, c = i // width, i % width
    logits = logits_fn(canvas)[:, r, c, 0].astype(jnp.float32)
    bits = jax.random.bernoulli(jax.random.fold_in(key, i), jax.nn.sigmoid(logits))
    return canvas.at[:, r, c, 0].set(bits.astype(canvas.dtype))

  return jax.lax.fori_loop(start, height * width, body, canvas)


# ---------------------------------------------------------------------------------------------
# The models

class _MaskedStack(nn.Module):
  """What both PixelCNNs share: their sizes, the switches of the negative controls (`first_mask`
  and `masked` are fixed by the registry to "A" and True; the tests set them to "B" or False),
  and the output head (ReLU, 1x1 to `output_features`, ReLU, 1x1 to one logit per pixel)."""
  features: int = 64
  num_layers: int = 5
  first_kernel_size: int = 7
  kernel_size: int = 3
  output_features: int = 64
  dtype: Any = None  # compute dtype; parameters float32
  first_mask: str = "A"
  masked: bool = True

  def _conv(self, features, size, mask_type, name):
    return MaskedConv(features, size, mask_type if self.masked else "none", dtype=self.dtype,
                      name=name)

  def _logits(self, y: jax.Array) -> jax.Array:
    y = self._conv(self.output_features, (1, 1), "B", "out_hidden")(nn.relu(y))
    return self._conv(1, (1, 1), "B", "out_logits")(nn.relu(y))


class PixelCNN(_MaskedStack):
  """The PixelCNN of van den Oord et al. (2016a, table 1): a first_kernel_size^2 mask A
  convolution to `features` (= 2h) maps, `num_layers` residual blocks (ReLU, 1x1 to h, ReLU,
  kernel_size^2 mask B, ReLU, 1x1 to 2h; figure 5), then the output head. Any image size."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    h = self.features // 2
    k1, k = (self.first_kernel_size,) * 2, (self.kernel_size,) * 2
    y = self._conv(self.features, k1, self.first_mask, "conv_in")(x)
    for i in range(self.num_layers):
      z = self._conv(h, (1, 1), "B", f"block{i}_reduce")(nn.relu(y))
      z = self._conv(h, k, "B", f"block{i}_conv")(nn.relu(z))
      y = y + self._conv(self.features, (1, 1), "B", f"block{i}_expand")(nn.relu(z))
    return self._logits(y)


def _gate(a: jax.Array) -> jax.Array:
  """tanh(first half) * sigmoid(second half) along the channels (gated paper, eq. 2)."""
  f, g = jnp.split(a, 2, axis=-1)
  return jnp.tanh(f) * jax.nn.sigmoid(g)


class GatedPixelCNN(_MaskedStack):
  """The gated PixelCNN of van den Oord et al. (2016b, figure 2) with `features` (= h) maps per
  stack: `num_layers` gated layers, the first with first_kernel_size kernels (vertical
  k x k masked "vertical_A", horizontal 1 x k mask A), the others with kernel_size kernels
  ("vertical_B", mask B). In each layer the vertical convolution's 2h outputs also reach the
  horizontal stack through a 1x1 convolution; both stacks are gated; the horizontal output goes
  through a 1x1 convolution and, after the first layer, a residual connection; then the output
  head."""
  features: int = 32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    h2 = 2 * self.features
    v, horizontal = x, x
    for i in range(self.num_layers):
      first = i == 0
      k = self.first_kernel_size if first else self.kernel_size
      v = self._conv(h2, (k, k), "vertical_A" if first else "vertical_B", f"layer{i}_v")(v)
      hz = self._conv(h2, (1, k), self.first_mask if first else "B", f"layer{i}_h")(horizontal)
      hz = hz + self._conv(h2, (1, 1), "B", f"layer{i}_v_to_h")(v)
      v = _gate(v)
      out = self._conv(self.features, (1, 1), "B", f"layer{i}_h_out")(_gate(hz))
      horizontal = out if first else horizontal + out
    return self._logits(horizontal)


def _conv_params(kh: int, kw: int, n_in: int, n_out: int) -> int:
  return kh * kw * n_in * n_out + n_out


def pixelcnn_params(features=64, num_layers=5, first_kernel_size=7, kernel_size=3,
                    output_features=64, **_) -> int:
  h = features // 2
  block = (_conv_params(1, 1, features, h) + _conv_params(kernel_size, kernel_size, h, h)
           + _conv_params(1, 1, h, features))
  return (_conv_params(first_kernel_size, first_kernel_size, 1, features) + num_layers * block
          + _conv_params(1, 1, features, output_features) + _conv_params(1, 1, output_features, 1))


def gated_pixelcnn_params(features=32, num_layers=5, first_kernel_size=7, kernel_size=3,
                          output_features=64, **_) -> int:
  h, h2 = features, 2 * features

  def layer(k, n_in):
    return (_conv_params(k, k, n_in, h2) + _conv_params(1, k, n_in, h2)
            + _conv_params(1, 1, h2, h2) + _conv_params(1, 1, h, h))
  return (layer(first_kernel_size, 1) + (num_layers - 1) * layer(kernel_size, h)
          + _conv_params(1, 1, h, output_features) + _conv_params(1, 1, output_features, 1))


_PIXELCNN_DEFAULTS = {"features": 64, "num_layers": 5, "first_kernel_size": 7, "kernel_size": 3,
                      "output_features": 64, "dtype": "float32"}
_GATED_DEFAULTS = {"features": 32, "num_layers": 5, "first_kernel_size": 7, "kernel_size": 3,
                   "output_features": 64, "dtype": "float32"}

SPECS = (
    ModelSpec(
        name="pixelcnn",
        family="autoregressive",
        factory=functools.partial(PixelCNN, first_mask="A", masked=True),
        defaults=_PIXELCNN_DEFAULTS,
        param_count=pixelcnn_params(**_PIXELCNN_DEFAULTS),
        description="PixelCNN: 7x7 mask A, residual 3x3 mask B blocks, Bernoulli logit per pixel "
                    "(van den Oord et al. 2016), section 1.5",
    ),
    ModelSpec(
        name="gated_pixelcnn",
        family="autoregressive",
        factory=functools.partial(GatedPixelCNN, first_mask="A", masked=True),
        defaults=_GATED_DEFAULTS,
        param_count=gated_pixelcnn_params(**_GATED_DEFAULTS),
        description="gated PixelCNN: vertical and horizontal stacks, no blind spot (van den Oord "
                    "et al. 2016b), section 1.5",
    ),
)
