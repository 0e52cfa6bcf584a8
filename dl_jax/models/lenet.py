"""LeNet-5 (section 5.3.2, figure 5.24; LeCun, Bottou, Bengio and Haffner 1998, "Gradient-based
learning applied to document recognition", section II.B), as the paper and as it is usually
rebuilt today.

`lenet5`, the paper's network (28x28 digits zero-padded by 2 on each side, standing for the
paper's 32x32 field, in which the 20x20 digits were centred):

    C1 conv 6@5x5          32x32x1 -> 28x28x6        156 parameters
    S2 sub-sampling 2x2    -> 14x14x6                 12  (a coefficient and a bias per map)
    C3 conv 16@5x5 on the  -> 10x10x16             1,516  (60 of the 96 map pairs, table I)
       paper's table I connections
    S4 sub-sampling 2x2    -> 5x5x16                  32
    C5 conv 120@5x5        -> 1x1x120             48,120
    F6 dense 84            -> 84                  10,164
    output dense 10        -> 10                     850     total 60,850

Sub-sampling (S2, S4): the average of each 2x2 block (the paper adds the four; the factor
is absorbed by the coefficient) times a trainable coefficient plus a trainable bias, one pair
per map. Every unit up to F6 is squashed by the paper's f(a) = 1.7159 tanh(2a/3) (its
section II.A and appendix A). C3 connects each of its 16 maps to a subset of the six S2 maps
(table I): maps 0-5 to three contiguous maps, 6-11 to four contiguous, 12-14 to four
non-contiguous, 15 to all six; its kernel is stored as the 60 connected 5x5 slices and
scattered into a dense 5x5x6x16 kernel whose other slices are 0 (exact zeros: an unconnected
output map has zero gradient with respect to the input map). The output layer is a dense
layer giving logits instead of the paper's 84-input Euclidean RBF units with fixed (bitmap)
weights, so that it goes with the cross-entropy of the other classifiers.

`lenet5_relu`, the modern variant: same layout with ReLU, 2x2 max-pools and a fully connected
C3 (5x5x6x16 + 16 = 2,416 parameters; 61,706 in all). `activation`, `pooling` and
`partial_c3` switch each change alone.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.models.spec import ModelSpec
from dl_jax.nn.pool import max_pool

# Table I of the paper: the S2 maps each C3 map is connected to.
C3_TABLE = ((0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
            (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
            (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
            (0, 1, 2, 3, 4, 5))


def connections(table=C3_TABLE, in_maps: int = 6) -> np.ndarray:
  """The boolean [in_maps, len(table)] connection matrix of a table (table I: 6 x 16, 60
  True)."""
  mask = np.zeros((in_maps, len(table)), bool)
  for out, inputs in enumerate(table):
    mask[list(inputs), out] = True
  return mask


def scaled_tanh(x: jax.Array) -> jax.Array:
  """LeCun et al. 1998, appendix A: f(a) = A tanh(S a), A = 1.7159, S = 2/3 (f(1) ~ 1)."""
  return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


class PartialConv(nn.Module):
  """A VALID convolution of which only some (input, output) map pairs exist: output map j
  reads the input maps `table[j]`. The parameter `kernel` holds one [kh, kw] slice per
  connected pair ([kh, kw, pairs], pairs in the row-major order of `connections`), scattered
  into a dense [kh, kw, in, out] kernel with zeros elsewhere. Initialised N(0, 1 / fan_in) per
  output map, fan_in = kh kw x its number of inputs."""
  table: tuple[tuple[int, ...], ...] = C3_TABLE
  kernel_size: tuple[int, int] = (5, 5)
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    mask = connections(self.table, x.shape[-1])
    rows, cols = np.nonzero(mask)
    kh, kw = self.kernel_size
    scale = 1.0 / np.sqrt(kh * kw * mask.sum(axis=0)[cols])

    def init(key, shape, dtype=jnp.float32):
      return jax.random.normal(key, shape, dtype) * jnp.asarray(scale, dtype)

    slices = self.param("kernel", init, (kh, kw, len(rows)), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (mask.shape[1],), jnp.float32)
    kernel = jnp.zeros((kh, kw, *mask.shape), jnp.float32).at[:, :, rows, cols].set(slices)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


class Subsampling(nn.Module):
  """The paper's S layer: mean of each 2x2 block x a trainable coefficient + a trainable
  bias, per map (2 parameters per map; coefficient 1, bias 0 at init)."""
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    maps = x.shape[-1]
    coefficient = self.param("coefficient", nn.initializers.ones, (maps,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (maps,), jnp.float32)
    x, coefficient, bias = nn.dtypes.promote_dtype(x, coefficient, bias, dtype=self.dtype)
    return nn.avg_pool(x, (2, 2), strides=(2, 2)) * coefficient + bias


class LeNet5(nn.Module):
  """LeNet-5, section 5.3.2 (figure 5.24); see the module docstring."""
  num_classes: int = 10
  activation: str = "scaled_tanh"  # "scaled_tanh" (the paper) or "relu"
  pooling: str = "subsample"  # "subsample" (trainable, the paper) or "max"
  partial_c3: bool = True  # C3 connected as table I of the paper, else fully
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    acts = {"scaled_tanh": scaled_tanh, "relu": nn.relu}
    if self.activation not in acts:
      raise ValueError(f"unknown activation {self.activation!r}; accepted: {', '.join(acts)}")
    if self.pooling not in ("subsample", "max"):
      raise ValueError(f"unknown pooling {self.pooling!r}; accepted: 'subsample', 'max'")
    act = acts[self.activation]
    conv = lambda features, name: nn.Conv(features, (5, 5), padding="VALID", dtype=self.dtype,
                                          param_dtype=jnp.float32, name=name)
    dense = lambda width, name: nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32,
                                         name=name)

    def pool(x, name):
      if self.pooling == "max":
        return max_pool(x, (2, 2), (2, 2))
      return Subsampling(dtype=self.dtype, name=name)(x)

    x = jnp.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])  # 28x28 -> the paper's 32x32
    x = act(conv(6, "C1")(x))
    x = act(pool(x, "S2"))
    if self.partial_c3:
      x = PartialConv(C3_TABLE, dtype=self.dtype, name="C3")(x)
    else:
      x = conv(16, "C3")(x)
    x = act(x)
    x = act(pool(x, "S4"))
    x = act(conv(120, "C5")(x))
    x = x.reshape((x.shape[0], -1))
    x = act(dense(84, "F6")(x))
    return dense(self.num_classes, "output")(x)


_DEFAULTS = {"num_classes": 10, "activation": "scaled_tanh", "pooling": "subsample",
             "partial_c3": True, "dtype": "float32"}
_REST = (5 * 5 * 16 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)  # C5, F6, output

SPECS = (
    ModelSpec(
        name="lenet5",
        family="image",
        factory=LeNet5,
        defaults=_DEFAULTS,
        param_count=(5 * 5 * 6 + 6) + 2 * 6 + (5 * 5 * 60 + 16) + 2 * 16 + _REST,  # 60,850
        description="LeNet-5 as LeCun et al. 1998 (scaled tanh, trainable sub-sampling, "
                    "table I C3), section 5.3.2",
    ),
    ModelSpec(
        name="lenet5_relu",
        family="image",
        factory=LeNet5,
        defaults={**_DEFAULTS, "activation": "relu", "pooling": "max", "partial_c3": False},
        param_count=(5 * 5 * 6 + 6) + (5 * 5 * 6 * 16 + 16) + _REST,  # 61,706
        description="LeNet-5, modern variant (ReLU, max-pool, full C3), section 5.3.2",
    ),
)
