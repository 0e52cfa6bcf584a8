"""The shared encoder f of the siamese and triplet networks (section 5.5.2, eq. 5.32): an image
-> an embedding in R^embed_dim whose squared Euclidean distances are the learned metric."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.nn import activations
from dl_jax.nn.pool import max_pool


class ConvEmbedding(nn.Module):
  """Blocks of 3x3 convolution -> activation -> 2x2 max-pool (the "conv-4" encoder of one-shot
  learning, Vinyals et al. 2016, without its batch norm: 28 -> 14 -> 7 -> 3 -> 1), then a dense
  layer to `embed_dim`. `normalize` puts the embedding on the unit sphere (FaceNet), where the
  squared distance lies in [0, 4]."""
  features: Sequence[int] = (64, 64, 64, 64)
  embed_dim: int = 64
  activation: str = "relu"
  normalize: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    act = activations.get(self.activation)
    for f in self.features:
      x = nn.Conv(f, (3, 3), padding="SAME", dtype=self.dtype, param_dtype=jnp.float32)(x)
      x = max_pool(act(x), (2, 2), (2, 2))
    x = nn.Dense(self.embed_dim, dtype=self.dtype, param_dtype=jnp.float32)(
        x.reshape((x.shape[0], -1)))
    if self.normalize:
      norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), -1, keepdims=True) + 1e-12)
      x = (x / norm).astype(x.dtype)
    return x


SPECS = (
    ModelSpec(
        name="embed_conv4",
        family="embedding",
        factory=ConvEmbedding,
        defaults={"features": (64, 64, 64, 64), "embed_dim": 64, "activation": "relu",
                  "normalize": False, "dtype": "float32"},
        param_count=(9 * 64 + 64) + 3 * (9 * 64 * 64 + 64) + (64 * 64 + 64),
        description="conv-4 encoder 28x28 -> R^64 of the siamese and triplet networks, "
                    "section 5.5.2",
    ),
)
