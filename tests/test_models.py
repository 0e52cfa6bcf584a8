"""One parameterized test over every registered model: init, output shape, parameter count,
jit == no-jit. A model added to the registry is tested here without further work."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax.errors import ConfigError
from dl_jax.models import registry
from dl_jax.train.state import param_count


@pytest.mark.parametrize("name", registry.names())
def test_registered_model(name):
  spec = registry.get(name)
  model = registry.build(name)
  x = jax.random.normal(jax.random.PRNGKey(1), (3, *spec.input_shape))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  assert param_count(variables["params"]) == spec.param_count
  out = model.apply(variables, x, train=False)
  chex.assert_shape(out, (3, spec.num_outputs))
  chex.assert_tree_all_finite(out)
  jitted = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  np.testing.assert_allclose(jitted, out, rtol=1e-5, atol=1e-5)
  # Examples do not interact: each row depends only on its own input.
  np.testing.assert_allclose(model.apply(variables, x[:1], train=False), out[:1], rtol=1e-5,
                             atol=1e-5)


def test_cnn_shapes_follow_section_5_3_1():
  model = registry.build("mnist_cnn")
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
  kernels = [variables["params"][k]["kernel"].shape for k in sorted(variables["params"])]
  assert kernels == [(5, 5, 1, 6), (5, 5, 6, 12), (5, 5, 12, 12), (108, 256), (256, 10)]


def test_unknown_model_and_hyperparameter():
  with pytest.raises(ConfigError, match="unknown model 'resnet9000'.*mnist_cnn"):
    registry.get("resnet9000")
  with pytest.raises(ConfigError, match="no hyper-parameter 'depth'.*accepted: activation, batch_norm, dropout_rate, hidden"):
    registry.build("mnist_mlp", depth=3)
