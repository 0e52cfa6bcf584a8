"""Autoencoders of section 5.5.1: an encoder f and a decoder g trained so that g(f(x)) = x
(eq. 5.25) through a bottleneck, the code h = f(x) (eq. 5.26).

Each model has `encode(x) -> h [batch, code_size]` and `decode(h) -> logits [batch, 28, 28, 1]`;
calling it returns decode(encode(x)). The decoder's output is a logit per pixel: sigmoid(logit)
is the reconstructed intensity in [0, 1], and the per-pixel cross-entropy takes the logits
directly (`dl_jax.tasks.autoencoding`). The sparse (eq. 5.27-5.28) and denoising (eq. 5.29)
autoencoders are these models trained with another loss or input, not other architectures.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn import activations

IMAGE_SHAPE = (28, 28, 1)
CODE_ACTIVATIONS = ("linear", "relu")  # relu: the non-negative code of the sparse autoencoder


def _code_activation(name: str, h: jnp.ndarray) -> jnp.ndarray:
  if name not in CODE_ACTIVATIONS:
    raise ValueError(f"code_activation={name!r}; accepted: {', '.join(CODE_ACTIVATIONS)}")
  return h if name == "linear" else nn.relu(h)


class MLPAutoencoder(nn.Module):
  """The deep autoencoder of Hinton and Salakhutdinov (2006), figure 5.40: 784-1000-500-250-30
  and its mirror image 30-250-500-1000-784, the code layer linear.

  They trained it layer by layer as restricted Boltzmann machines with logistic units, then
  fine-tuned by backpropagation; here it is trained end to end from a random initialization,
  with `activation` (default ReLU) in the hidden layers.
  """
  hidden: Sequence[int] = (1000, 500, 250)
  code_size: int = 30
  activation: str = "relu"
  code_activation: str = "linear"
  dtype: Any = None  # compute dtype; parameters float32

  def setup(self):
    dense = lambda width: nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32)
    self.encoder = [dense(w) for w in self.hidden] + [dense(self.code_size)]
    self.decoder = [dense(w) for w in reversed(self.hidden)] + [dense(IMAGE_SHAPE[0] *
                                                                     IMAGE_SHAPE[1])]

  def encode(self, x: jnp.ndarray) -> jnp.ndarray:
    act = activations.get(self.activation)
    h = x.reshape((x.shape[0], -1))
    for layer in self.encoder[:-1]:
      h = act(layer(h))
    return _code_activation(self.code_activation, self.encoder[-1](h))

  def decode(self, h: jnp.ndarray) -> jnp.ndarray:
    act = activations.get(self.activation)
    for layer in self.decoder[:-1]:
      h = act(layer(h))
    return self.decoder[-1](h).reshape((h.shape[0], *IMAGE_SHAPE))

  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    return self.decode(self.encode(x))


class ConvAutoencoder(nn.Module):
  """A convolutional autoencoder (figure 5.41): strided 3x3 convolutions 28 -> 14 -> 7, a dense
  code, and the mirror image with transposed convolutions 7 -> 14 -> 28."""
  features: Sequence[int] = (32, 64)
  code_size: int = 30
  activation: str = "relu"
  code_activation: str = "linear"
  dtype: Any = None

  def setup(self):
    conv = lambda f: nn.Conv(f, (3, 3), strides=(2, 2), padding="SAME", dtype=self.dtype,
                             param_dtype=jnp.float32)
    deconv = lambda f: nn.ConvTranspose(f, (3, 3), strides=(2, 2), padding="SAME",
                                        dtype=self.dtype, param_dtype=jnp.float32)
    self.down = [conv(f) for f in self.features]
    self.to_code = nn.Dense(self.code_size, dtype=self.dtype, param_dtype=jnp.float32)
    side = IMAGE_SHAPE[0] // 2 ** len(self.features)
    self.grid = (side, side, self.features[-1])
    self.from_code = nn.Dense(side * side * self.features[-1], dtype=self.dtype,
                              param_dtype=jnp.float32)
    self.up = [deconv(f) for f in reversed(self.features[:-1])] + [deconv(IMAGE_SHAPE[-1])]

  def encode(self, x: jnp.ndarray) -> jnp.ndarray:
    act = activations.get(self.activation)
    for layer in self.down:
      x = act(layer(x))
    return _code_activation(self.code_activation, self.to_code(x.reshape((x.shape[0], -1))))

  def decode(self, h: jnp.ndarray) -> jnp.ndarray:
    act = activations.get(self.activation)
    x = act(self.from_code(h)).reshape((h.shape[0], *self.grid))
    for layer in self.up[:-1]:
      x = act(layer(x))
    return self.up[-1](x)

  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    return self.decode(self.encode(x))


def _mlp_count(sizes: Sequence[int]) -> int:
  return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


_HINTON = (784, 1000, 500, 250, 30)
SPECS = (
    ModelSpec(
        name="ae_mlp",
        family="autoencoder",
        factory=MLPAutoencoder,
        defaults={"hidden": (1000, 500, 250), "code_size": 30, "activation": "relu",
                  "code_activation": "linear", "dtype": "float32"},
        param_count=_mlp_count(_HINTON) + _mlp_count(_HINTON[::-1]),
        description="MLP autoencoder 784-1000-500-250-30 (Hinton & Salakhutdinov 2006), "
                    "figure 5.40",
    ),
    ModelSpec(
        name="ae_conv",
        family="autoencoder",
        factory=ConvAutoencoder,
        defaults={"features": (32, 64), "code_size": 30, "activation": "relu",
                  "code_activation": "linear", "dtype": "float32"},
        param_count=(9 * 32 + 32) + (9 * 32 * 64 + 64) + (7 * 7 * 64 * 30 + 30)
        + (30 * 7 * 7 * 64 + 7 * 7 * 64) + (9 * 64 * 32 + 32) + (9 * 32 + 1),
        description="convolutional autoencoder 28-14-7 -> code 30 -> 7-14-28, figure 5.41",
    ),
)
