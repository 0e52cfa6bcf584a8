"""Model registry: name -> (module factory, default hyper-parameters, input shape, symmetries).

Every later chapter adds its models here; `tests/test_models.py` runs over every entry, so a model
added to the registry is tested (init, output shape, parameter count, jit == no-jit) without anyone
having to remember to.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn

from dl_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """How to build one registered model and what it promises."""
  name: str
  factory: Callable[..., nn.Module]
  defaults: dict[str, Any]
  input_shape: tuple[int, ...]  # one example, without the batch axis
  num_outputs: int
  param_count: int  # pinned with the defaults; the registry test checks it
  symmetries: tuple[str, ...] = ()
  description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
  if spec.name in _REGISTRY:
    raise ValueError(f"model {spec.name!r} is already registered")
  _REGISTRY[spec.name] = spec
  return spec


def names() -> list[str]:
  _load_builtin_models()
  return sorted(_REGISTRY)


def get(name: str) -> ModelSpec:
  _load_builtin_models()
  if name not in _REGISTRY:
    raise ConfigError(f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}")
  return _REGISTRY[name]


def build(name: str, **overrides) -> nn.Module:
  """Instantiates a registered model with its defaults, updated by `overrides`."""
  spec = get(name)
  unknown = sorted(set(overrides) - set(spec.defaults))
  if unknown:
    raise ConfigError(f"model {name!r} has no hyper-parameter {unknown[0]!r}; "
                      f"accepted: {', '.join(sorted(spec.defaults))}")
  return spec.factory(**{**spec.defaults, **overrides})


def _load_builtin_models() -> None:
  # Importing the model modules registers them.
  from dl_jax.models import cnn, mlp  # pylint: disable=g-import-not-at-top,unused-import
  from dl_jax.nn import group_conv  # pylint: disable=g-import-not-at-top,unused-import
  from dl_jax.symmetry import blueprint  # pylint: disable=g-import-not-at-top,unused-import
