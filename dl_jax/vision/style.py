"""The losses of the style transfer of Gatys, Ecker and Bethge ("A neural algorithm of artistic
style", 2015), section 5.3.5 (figure 5.38), and the features they are computed on.

With F^l [N_l, M_l] the activations of layer l (N_l channels, M_l = h * w positions) of the
generated image x, P^l those of the content photo p and A^l the Gram matrix of the style image a:

- Gram matrix: G^l_ij = sum_k F^l_ik F^l_jk, here divided by M_l (`gram_matrix`): the mean
  over positions, so that a style image of another size gives comparable targets;
- content loss at one layer: the mean of (F^l - P^l)^2 over channels and positions (the paper
  takes 1/2 the sum);
- style loss: E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G^l_ij - A^l_ij)^2 with the paper's Gram
  matrices, that is sum_ij (G - A)^2 / (4 N_l^2) with the ones divided by M_l (the same number
  when x and a have the same size), and L_style = sum_l w_l E_l, w_l = 1 / (number of layers)
  as in the paper;
- total variation: the mean squared difference of vertically and of horizontally adjacent
  pixels, summed (the squared, smooth form of Mahendran and Vedaldi 2015, a regularizer the
  paper does not have; L-BFGS needs a differentiable one).

Features: the layers of a grey-scale network (`dl_jax.models.style_features.StyleVGG`, trained
on Fashion-MNIST or with random weights) on colour photos. Each colour channel goes through the
network as its own grey image (pixels mapped to [-1, 1] as the classifiers' inputs,
`pipeline.normalize`), and the three activations of a layer are concatenated along the
channels: N_l = 3 * width, so the Gram matrix also holds the correlations between the features
of different colour channels (the colours of the style, not only its grey texture).
"""

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import skimage.data
import skimage.transform

CONTENT_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
STYLE_IMAGES = ("brick", "grass", "gravel", "hubble_deep_field", "immunohistochemistry",
                "colorwheel", "retina")


def gram_matrix(features: jax.Array) -> jax.Array:
  """Gram matrices of activations [..., h, w, N]: [..., N, N], G_ij = sum over the M = h * w
  positions of F_i F_j, divided by M."""
  *batch, h, w, n = features.shape
  flat = features.reshape(*batch, h * w, n).astype(jnp.float32)
  return jnp.einsum("...mi,...mj->...ij", flat, flat) / (h * w)


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
  """Mean squared difference of two activations of one layer."""
  return jnp.mean(jnp.square(features.astype(jnp.float32) - target.astype(jnp.float32)))


def style_layer_loss(gram: jax.Array, target_gram: jax.Array) -> jax.Array:
  """E_l = sum_ij (G_ij - A_ij)^2 / (4 N^2) for Gram matrices [N, N] divided by M (`gram_matrix`):
  Gatys et al.'s 1 / (4 N^2 M^2) sum (G - A)^2 with their undivided ones."""
  n = gram.shape[-1]
  return jnp.sum(jnp.square(gram - target_gram)) / (4.0 * n * n)


def style_loss(features: Mapping[str, jax.Array], target_grams: Mapping[str, jax.Array],
               weights: Mapping[str, float] | None = None) -> jax.Array:
  """sum_l w_l E_l over the layers of `target_grams` (w_l = 1 / number of layers by default)."""
  weights = weights or {name: 1.0 / len(target_grams) for name in target_grams}
  return sum(weights[name] * style_layer_loss(gram_matrix(features[name]), target)
             for name, target in target_grams.items())


def total_variation(images: jax.Array) -> jax.Array:
  """Mean squared difference of vertical neighbours plus that of horizontal neighbours, for
  images [..., H, W, C]."""
  images = images.astype(jnp.float32)
  vertical = images[..., 1:, :, :] - images[..., :-1, :, :]
  horizontal = images[..., :, 1:, :] - images[..., :, :-1, :]
  return jnp.mean(jnp.square(vertical)) + jnp.mean(jnp.square(horizontal))


def grey_inputs(images: jax.Array) -> jax.Array:
  """Colour images [B, H, W, C] in [0, 1] -> the network's inputs [B * C, H, W, 1] in [-1, 1],
  image b's channel c at row b * C + c."""
  b, h, w, c = images.shape
  return jnp.moveaxis(images, -1, 1).reshape(b * c, h, w, 1) * 2.0 - 1.0


def channel_features(model, params, images: jax.Array,
                     layers: Sequence[str]) -> dict[str, jax.Array]:
  """{layer: activations [B, h, w, 3 * width]} of colour images [B, H, W, 3] in [0, 1]: each
  channel through the grey-scale `model` (its `features` method) as an image in [-1, 1], the
  channels' activations concatenated (channel c's in [..., c * width:(c + 1) * width])."""
  b, c = images.shape[0], images.shape[-1]
  out = model.apply({"params": params}, grey_inputs(images), tuple(layers), method="features")
  joined = {}
  for name, value in out.items():
    _, fh, fw, width = value.shape
    joined[name] = jnp.moveaxis(value.reshape(b, c, fh, fw, width), 1, 3).reshape(
        b, fh, fw, c * width)
  return joined


def photo(name: str, size: int) -> np.ndarray:
  """An image of `skimage.data` as float32 [size, size, 3] in [0, 1]: the central square crop,
  resized with anti-aliasing; grey images repeated on the three channels, an alpha channel
  dropped."""
  if name not in CONTENT_PHOTOS + STYLE_IMAGES:
    raise ValueError(f"unknown image {name!r}; accepted: "
                     f"{', '.join(CONTENT_PHOTOS + STYLE_IMAGES)}")
  image = getattr(skimage.data, name)()
  image = np.asarray(image, np.float32) / 255.0
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  image = image[..., :3]
  h, w = image.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  square = image[top:top + side, left:left + side]
  resized = skimage.transform.resize(square, (size, size), anti_aliasing=True)
  return np.clip(resized, 0.0, 1.0).astype(np.float32)
