"""Data augmentation on NHWC batches, jit-compiled: random shift (a random crop of the image
padded with background), rotation, flip, shear, zoom (the note at the end of section 5.3.1), and
random erasing (Zhong et al. 2017).

One affine resampling does it all: for each output pixel p (row, column), the input is read at
q = M (p - c - t) + c, with c the image center, t the shift and M the inverse of
flip -> shear -> zoom -> rotation, by `jax.scipy.ndimage.map_coordinates` (order 0: nearest,
1: bilinear). Rotations by multiples of 90 degrees (`rot90=True`) use exact integer matrices,
so with no other transformation the output is exactly `jnp.rot90` of the input, i.e. the p4
action of `dl_jax.symmetry.groups.Rotation90`.

`augment(key, images, config)` and `random_erasing(key, images, p)` are pure: each example gets
its own transformation from `jax.random.split(key, N)`, and the same key gives the same batch.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy import ndimage

from dl_jax.errors import ConfigError

MODES = ("constant", "nearest", "wrap", "mirror", "reflect")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Ranges of the random transformations (all off by default).

  Attributes:
    max_shift: translation in pixels, uniform in [-max_shift, max_shift] per axis.
    integer_shift: a whole-pixel translation instead (no blur from interpolation), each of the
      offsets -floor(max_shift) .. floor(max_shift) per axis equally likely: a random crop of
      the image padded by max_shift.
    max_rotation: rotation in degrees, uniform in [-max_rotation, max_rotation].
    rot90: also rotate by a uniformly random multiple of 90 degrees.
    flip: mirror left-right with probability 1/2.
    max_shear: shear angle in degrees, uniform in [-max_shear, max_shear].
    zoom: (min, max) scale factor, uniform; > 1 enlarges.
    order: interpolation order, 0 (nearest) or 1 (bilinear).
    mode: how to read outside the image ('constant' reads `fill`).
    fill: the background value for mode 'constant' (-1 for images normalized by eq. 2.58).
  """
  max_shift: float = 0.0
  integer_shift: bool = True
  max_rotation: float = 0.0
  rot90: bool = False
  flip: bool = False
  max_shear: float = 0.0
  zoom: tuple[float, float] = (1.0, 1.0)
  order: int = 1
  mode: str = "constant"
  fill: float = 0.0

  def __post_init__(self):
    if self.order not in (0, 1):
      raise ConfigError(f"order={self.order!r}; accepted: 0 (nearest), 1 (bilinear)")
    if self.mode not in MODES:
      raise ConfigError(f"mode={self.mode!r}; accepted: {', '.join(MODES)}")
    if not 0 < self.zoom[0] <= self.zoom[1]:
      raise ConfigError(f"zoom={self.zoom!r} must be (min, max) with 0 < min <= max")
    for name in ("max_shift", "max_rotation", "max_shear"):
      if getattr(self, name) < 0:
        raise ConfigError(f"{name}={getattr(self, name)!r} must be >= 0")
    if self.max_shear >= 90:
      raise ConfigError(f"max_shear={self.max_shear!r} must be < 90 degrees")


def _rotation(angle: jax.Array) -> jax.Array:
  """Inverse map of a counterclockwise rotation by `angle` (radians) in (row, column) coords."""
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  return jnp.array([[cos, sin], [-sin, cos]])


def sample_transform(key: jax.Array, config: AugmentConfig) -> tuple[jax.Array, jax.Array]:
  """One random (M, t): M [2, 2] maps output to input offsets from the center, t [2] the shift."""
  k_shift, k_rot, k_rot90, k_flip, k_shear, k_zoom = jax.random.split(key, 6)
  m = jnp.eye(2)
  if config.rot90:  # exact: [[0, 1], [-1, 0]]^k
    k = jax.random.randint(k_rot90, (), 0, 4)
    cos = jnp.array([1.0, 0.0, -1.0, 0.0])[k]
    sin = jnp.array([0.0, 1.0, 0.0, -1.0])[k]
    m = jnp.array([[cos, sin], [-sin, cos]]) @ m
  if config.max_rotation:
    limit = math.radians(config.max_rotation)
    m = _rotation(jax.random.uniform(k_rot, (), minval=-limit, maxval=limit)) @ m
  if config.zoom != (1.0, 1.0):
    m = m / jax.random.uniform(k_zoom, (), minval=config.zoom[0], maxval=config.zoom[1])
  if config.max_shear:
    limit = math.radians(config.max_shear)
    shear = jnp.tan(jax.random.uniform(k_shear, (), minval=-limit, maxval=limit))
    m = jnp.array([[1.0, 0.0], [shear, 1.0]]) @ m
  if config.flip:
    mirror = jnp.where(jax.random.bernoulli(k_flip), -1.0, 1.0)
    m = jnp.diag(jnp.array([1.0, mirror])) @ m
  if config.integer_shift:  # each whole offset equally likely, as a random crop of the padded image
    reach = math.floor(config.max_shift)
    t = jax.random.randint(k_shift, (2,), -reach, reach + 1).astype(jnp.float32)
  else:
    t = jax.random.uniform(k_shift, (2,), minval=-config.max_shift, maxval=config.max_shift)
  return m, t


def affine_transform(image: jax.Array, m: jax.Array, t: jax.Array, order: int = 1,
                     mode: str = "constant", fill: float = 0.0) -> jax.Array:
  """Resamples one HWC image: out[p] = image[M (p - c - t) + c] (bilinear for order 1)."""
  h, w = image.shape[:2]
  center = jnp.array([(h - 1) / 2, (w - 1) / 2])
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=m.dtype), jnp.arange(w, dtype=m.dtype),
                            indexing="ij")
  p = jnp.stack([rows, cols]) - (center + t)[:, None, None]
  q = jnp.einsum("ij,jhw->ihw", m, p) + center[:, None, None]

  def one_channel(channel):
    return ndimage.map_coordinates(channel, [q[0], q[1]], order=order, mode=mode, cval=fill)

  return jax.vmap(one_channel, in_axes=-1, out_axes=-1)(image).astype(image.dtype)


@functools.partial(jax.jit, static_argnames="config")
def augment(key: jax.Array, images: jax.Array, config: AugmentConfig) -> jax.Array:
  """Applies an independent random transformation to each image of the NHWC batch."""
  m, t = jax.vmap(lambda k: sample_transform(k, config))(jax.random.split(key, images.shape[0]))
  m, t = m.astype(images.dtype), t.astype(images.dtype)
  return jax.vmap(lambda x, m, t: affine_transform(x, m, t, config.order, config.mode,
                                                   config.fill))(images, m, t)


def erase_one(key: jax.Array, image: jax.Array, probability: float,
              area: tuple[float, float] = (0.02, 0.4),
              aspect: tuple[float, float] = (0.3, 1 / 0.3),
              fill: tuple[float, float] = (-1.0, 1.0)) -> jax.Array:
  """Random erasing (Zhong et al. 2017) of one HWC image.

  With `probability`, a rectangle of area s * H * W, s ~ U(area), and aspect ratio r (height /
  width) log-uniform in `aspect` is filled with noise uniform in `fill` (the range of eq. 2.58).
  Its sides round(sqrt(s H W r)) and round(sqrt(s H W / r)) are clipped to the image (the paper
  draws again until the rectangle fits), its corner is uniform among the positions where it fits.
  """
  k_apply, k_area, k_aspect, k_top, k_left, k_fill = jax.random.split(key, 6)
  h, w = image.shape[:2]
  s = jax.random.uniform(k_area, (), minval=area[0], maxval=area[1])
  r = jnp.exp(jax.random.uniform(k_aspect, (), minval=math.log(aspect[0]),
                                 maxval=math.log(aspect[1])))
  eh = jnp.clip(jnp.round(jnp.sqrt(s * h * w * r)), 1, h).astype(jnp.int32)
  ew = jnp.clip(jnp.round(jnp.sqrt(s * h * w / r)), 1, w).astype(jnp.int32)
  top = jax.random.randint(k_top, (), 0, h - eh + 1)
  left = jax.random.randint(k_left, (), 0, w - ew + 1)
  rows = jnp.arange(h)[:, None, None]
  cols = jnp.arange(w)[None, :, None]
  inside = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
  inside &= jax.random.bernoulli(k_apply, probability)
  noise = jax.random.uniform(k_fill, image.shape, image.dtype, fill[0], fill[1])
  return jnp.where(inside, noise, image)


@functools.partial(jax.jit, static_argnames="probability")
def random_erasing(key: jax.Array, images: jax.Array, probability: float) -> jax.Array:
  """`erase_one` on each image of the NHWC batch with its own key."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, x: erase_one(k, x, probability))(keys, images)
