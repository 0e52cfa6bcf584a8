"""Test your own layer: a DeepSets layer written outside dl_jax, its symmetry declared once.

The layer (Zaheer et al. 2017; section 4.4's blueprint on sets) maps a set of n elements
[batch, n, F] to [batch, n, features] by x W1 + mean(x) W2 + b: relabelling the elements
relabels the output, f(P x) = P f(x) (section 4.2). `BrokenDeepSets` adds a learned embedding
per position, as a careless positional encoding would: it declares the same symmetry, and its
checks must fail.

    python -m dl_jax.symmetry check examples/own_layer.py:deepsets     # exit 0
    python -m dl_jax.symmetry check examples/own_layer.py:broken       # exit 1
    python -m dl_jax.symmetry check examples/own_layer.py:plain_jax_pool  # plain JAX, exit 0
    python examples/own_layer.py                                       # both reports
    pytest examples/test_own_layer.py                                  # the same, as tests
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax import symmetry


class DeepSets(nn.Module):
  """x W1 + mean_i(x_i) W2 + b: permutation-equivariant for any W1, W2, b."""
  features: int

  @nn.compact
  def __call__(self, x):
    pooled = jnp.mean(x, axis=1, keepdims=True)
    return nn.Dense(self.features)(x) + nn.Dense(self.features, use_bias=False)(pooled)


class BrokenDeepSets(nn.Module):
  """DeepSets on x + a learned embedding per position: the output depends on the order."""
  features: int

  @nn.compact
  def __call__(self, x):
    x = x + self.param("position", nn.initializers.normal(1.0), x.shape[1:])
    return DeepSets(self.features)(x)


@symmetry.declare("permutation_equivariant", input_shape=(2, 7, 5),
                  dtypes=("float32", "float64"))
def deepsets():
  return DeepSets(features=5)


@symmetry.declare("permutation_equivariant", input_shape=(2, 7, 5),
                  dtypes=("float32", "float64"))
def broken():
  return BrokenDeepSets(features=5)


@symmetry.declare("permutation_invariant", input_shape=(2, 7, 5))
def plain_jax_pool():
  """Plain JAX, no flax: (apply_fn, variables), sum_i tanh(x_i W + b) (DeepSets' phi)."""
  def apply(variables, x):
    return jnp.tanh(x @ variables["w"] + variables["b"]).sum(axis=1)
  key_w, key_b = jax.random.split(jax.random.PRNGKey(0))
  return apply, {"w": jax.random.normal(key_w, (5, 3)) / jnp.sqrt(5.0),
                 "b": jax.random.normal(key_b, (3,))}


if __name__ == "__main__":
  for factory in (deepsets, plain_jax_pool, broken):
    suite = symmetry.run_checks(factory)
    print(suite.table(), suite.vacuity_line(), suite.summary(), sep="\n", end="\n\n")
