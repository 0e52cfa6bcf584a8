"""Weight initializers by name (section 2.5.5; Glorot & Bengio 2010, He et al. 2015).

Each draws weights with mean 0 and variance 2 / (fan_in + fan_out) (Glorot), 2 / fan_in (He) or
1 / fan_in (LeCun). The uniform ones draw from U(-a, a) with a = sqrt(3 variance); the normal ones
from a normal truncated at two standard deviations, rescaled so the variance is still the target.
"""

from typing import Callable

import flax.linen as nn

from dl_jax.errors import ConfigError

Initializer = Callable  # (key, shape, dtype) -> array

INITIALIZERS: dict[str, Initializer] = {
    "glorot_uniform": nn.initializers.glorot_uniform(),
    "glorot_normal": nn.initializers.glorot_normal(),
    "he_uniform": nn.initializers.he_uniform(),
    "he_normal": nn.initializers.he_normal(),
    "lecun_normal": nn.initializers.lecun_normal(),
}


def get(name: str) -> Initializer:
  if name not in INITIALIZERS:
    raise ConfigError(f"unknown initializer {name!r}; accepted: {', '.join(INITIALIZERS)}")
  return INITIALIZERS[name]
