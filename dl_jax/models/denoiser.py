"""A fully convolutional denoiser (section 5.3.5): DnCNN of Zhang, Zuo, Chen, Meng and Zhang,
"Beyond a Gaussian denoiser: residual learning of deep CNN for image denoising" (2017), sized
for the CPU, on images (family "dense") and on 1-D signals (family "dense_1d").

Layers: convolution + ReLU; `depth` times convolution + batch normalization + ReLU (the
convolution without a bias when normalized); a last convolution to `out_channels`. All "same"
padding, stride 1, so the output has the input's size, whatever that size is. The last layer
predicts the noise, not the image (residual learning): the output is

    x_hat = y - r(y),

y the noisy input and r the stack of layers, so trained with the MSE against the clean image
(eq. 5.29) r learns the noise y - x, which the paper found easier than the image itself.
`residual=False` returns r(y) as the image (a plain fully convolutional network). Residual
learning needs as many output channels as input channels.

Defaults: 32 features, depth 8, so 10 convolutions: a receptive field of 21 x 21 pixels with
3 x 3 kernels (the paper: 64 features, 17 convolutions, 35 x 35), 81 samples (0.23 s of the ECG)
with the 1-D kernels of 9 samples.

`image_size` (images) and `length` (signals) only describe the family's example inputs: the
network is fully convolutional and takes any size.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec


def _layers(module, x: jax.Array, train: bool) -> jax.Array:
  """The network of the module docstring, its layers made inside `module`'s compact call."""
  if module.residual and x.shape[-1] != module.out_channels:
    raise ValueError(f"residual learning needs out_channels ({module.out_channels}) equal to "
                     f"the input's channels ({x.shape[-1]})")
  window = (module.kernel_size,) * (x.ndim - 2)
  conv = lambda width, name, bias=True: nn.Conv(
      width, window, padding="SAME", use_bias=bias, dtype=module.dtype,
      param_dtype=jnp.float32, name=name)
  h = nn.relu(conv(module.features, "conv_in")(x))
  for i in range(module.depth):
    h = conv(module.features, f"conv{i}", bias=not module.batch_norm)(h)
    if module.batch_norm:
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                       dtype=module.dtype, param_dtype=jnp.float32, name=f"bn{i}")(h)
    h = nn.relu(h)
  out = conv(module.out_channels, "conv_out")(h)
  return x.astype(out.dtype) - out if module.residual else out


class DnCNN(nn.Module):
  """Images [batch, H, W, in_channels] -> [batch, H, W, out_channels], any H and W (the
  family's examples are image_size x image_size); kernel_size x kernel_size kernels."""
  image_size: int = 28
  in_channels: int = 1
  out_channels: int = 1
  features: int = 32
  depth: int = 8  # the conv + BN + ReLU layers between the first and the last convolution
  kernel_size: int = 3
  batch_norm: bool = True
  residual: bool = True  # output = input - predicted noise
  dtype: Any = None  # compute dtype; parameters float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(f"DnCNN with in_channels={self.in_channels} takes [batch, H, W, "
                       f"{self.in_channels}], not {tuple(x.shape)}")
    return _layers(self, x, train)


class DnCNN1D(nn.Module):
  """Signals [batch, L, 1] -> [batch, L, out_channels], any L (the family's examples have
  `length` samples); kernels of kernel_size samples."""
  length: int = 256
  out_channels: int = 1
  features: int = 32
  depth: int = 8
  kernel_size: int = 9
  batch_norm: bool = True
  residual: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if x.ndim != 3 or x.shape[-1] != 1:
      raise ValueError(f"DnCNN1D takes signals [batch, L, 1], not {tuple(x.shape)}")
    return _layers(self, x, train)


def param_count(in_channels: int, out_channels: int, features: int, depth: int,
                kernel_size: int, spatial_dims: int, batch_norm: bool) -> int:
  """The number of parameters of `DnCNN` (BatchNorm: scale and bias per channel, in place of
  the convolution's bias)."""
  taps = kernel_size ** spatial_dims
  middle = taps * features * features + (2 * features if batch_norm else features)
  return (taps * in_channels * features + features + depth * middle
          + taps * features * out_channels + out_channels)


_COMMON = {"out_channels": 1, "features": 32, "depth": 8, "batch_norm": True, "residual": True,
           "dtype": "float32"}
SPECS = (
    ModelSpec(
        name="dncnn",
        family="dense",
        factory=DnCNN,
        defaults={"image_size": 28, "in_channels": 1, **_COMMON, "kernel_size": 3},
        param_count=param_count(1, 1, 32, 8, 3, 2, True),
        description="DnCNN (Zhang et al. 2017), residual learning of the noise; fully "
                    "convolutional denoiser of section 5.3.5",
    ),
    ModelSpec(
        name="dncnn_1d",
        family="dense_1d",
        factory=DnCNN1D,
        defaults={"length": 256, **_COMMON, "kernel_size": 9},
        param_count=param_count(1, 1, 32, 8, 9, 1, True),
        description="DnCNN on 1-D signals (kernels of 9 samples), section 5.3.5",
    ),
)
