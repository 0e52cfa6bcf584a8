"""The model registry: one static table name -> `ModelSpec` for every family.

    spec = registry.get("mnist_cnn", family="image")  # ConfigError: unknown, or not an image model
    model = registry.build("mnist_mlp", hidden=(64, 64), dtype="bfloat16")
    registry.names("node")  # ['gat', 'gcn', 'ggnn', ...]

The model modules export their specs (`SPECS`) and never import this module; it imports them
and builds `MODELS` once, so nothing registers itself on import and the imports are acyclic.
`tests/test_models.py` runs over every entry (init, pinned parameter count, jit == eager,
output shape and dtype in float32 and bfloat16), so a model added to a module's `SPECS` is
tested without anyone having to remember to.

`build` checks every override against the spec's defaults: an unknown key or a value of the
wrong type is one ConfigError naming `model_kwargs.<key>` and what is accepted. A tuple-valued
hyper-parameter takes a tuple or a list; "dtype" takes a name of `COMPUTE_DTYPES` (or the dtype)
and reaches the module as a `jnp.dtype`; parameters stay float32 whatever it is.
"""

import numbers
import types
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.errors import ConfigError
from dl_jax.models import (alexnet, autoencoder, blueprint, cnn, denoiser, detection, egnn,
                           embedding, gnn, googlenet, lenet, mlp, nplm, p4cnn, resnet, signal,
                           style_features, unet, vgg)
from dl_jax.models import vae
from dl_jax.models import recurrent
from dl_jax.models import language
from dl_jax.models import pixelcnn
from dl_jax.models import gan
from dl_jax.models.spec import FAMILIES, ModelSpec, count_params  # noqa: F401 (re-exported)

COMPUTE_DTYPES = ("bfloat16", "float16", "float32", "float64")


def _table(*modules) -> Mapping[str, ModelSpec]:
  table = {}
  for module in modules:
    for spec in module.SPECS:
      if spec.name in table:
        raise ValueError(f"model {spec.name!r} is defined twice ({module.__name__})")
      if spec.family not in FAMILIES:
        raise ValueError(f"model {spec.name!r}: unknown family {spec.family!r}")
      if "dtype" not in spec.defaults:
        raise ValueError(f"model {spec.name!r} has no 'dtype' hyper-parameter")
      table[spec.name] = spec
  return types.MappingProxyType(table)


MODELS: Mapping[str, ModelSpec] = _table(mlp, cnn, p4cnn, blueprint, lenet, alexnet, vgg,
                                         googlenet, resnet, signal, gnn, nplm, egnn,
                                         autoencoder, embedding, unet, denoiser, detection,
                                         style_features, vae, recurrent, pixelcnn, gan, language)


def _check_family(family: str | None) -> None:
  if family is not None and family not in FAMILIES:
    raise ConfigError(f"unknown model family {family!r}; accepted: {', '.join(FAMILIES)}")


def names(family: str | None = None) -> list[str]:
  """The registered model names (of `family`, when given), sorted."""
  _check_family(family)
  return sorted(n for n, s in MODELS.items() if family is None or s.family == family)


def get(name: str, family: str | None = None) -> ModelSpec:
  """The spec of model `name`; ConfigError when there is none (of `family`, when given)."""
  _check_family(family)
  spec = MODELS.get(name)
  if spec is None or (family is not None and spec.family != family):
    kind = f"{family} models" if family else "models"
    message = f"unknown model {name!r}; registered {kind}: {', '.join(names(family))}"
    if spec is not None:
      article = "an" if spec.family[0] in "aeiou" else "a"
      message += f" ({name!r} is {article} {spec.family} model)"
    raise ConfigError(message)
  return spec


def build(name: str, **overrides) -> nn.Module:
  """Instantiates a registered model with its defaults, updated by `overrides`."""
  spec = get(name)
  unknown = sorted(set(overrides) - set(spec.defaults))
  if unknown:
    raise ConfigError(f"model {name!r} has no hyper-parameter {unknown[0]!r}; "
                      f"accepted: {', '.join(sorted(spec.defaults))}")
  values = spec.hyperparameters(**overrides)
  return spec.factory(**{key: _checked(spec, key, value) for key, value in values.items()})


def check_output_shape(name: str, model_kwargs: dict, accepted: str) -> None:
  """ConfigError when model `name` with `model_kwargs` does not map one example input of its
  family to the family's output shape (e.g. strides that do not divide the image), found from
  shapes alone; `accepted` says which hyper-parameters would."""
  spec = get(name)
  model = build(name, **model_kwargs)
  try:
    shape = jax.eval_shape(lambda *a: model.init_with_output(jax.random.PRNGKey(0), *a)[0],
                           *spec.example_inputs(1, **model_kwargs)).shape
  except (ValueError, TypeError, ZeroDivisionError) as e:
    shape = f"no output ({type(e).__name__})"
  want = spec.output_shape(1, **model_kwargs)
  if shape != want:
    what = (f"model_kwargs.features={tuple(model_kwargs['features'])!r}"
            if "features" in model_kwargs else f"model_kwargs={model_kwargs!r}")
    raise ConfigError(f"{what}: {name} gives {shape} for one example, not {want}; accepted: "
                      f"{accepted}")


# ---------------------------------------------------------------------------------------------
# Hyper-parameter types, inferred from the defaults

def _is_int(x) -> bool:
  return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_number(x) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _kind(default) -> tuple[str, Any]:
  """(what is accepted, value -> normalized value or None when refused) for a default."""
  if isinstance(default, bool):
    return "a bool", lambda v: v if isinstance(v, bool) else None
  if _is_int(default):
    return "an int", lambda v: int(v) if _is_int(v) else None
  if _is_number(default):
    return "a number", lambda v: float(v) if _is_number(v) else None
  if isinstance(default, str):
    return "a string", lambda v: v if isinstance(v, str) else None
  if isinstance(default, (tuple, list)):
    if not default:
      return "a tuple", lambda v: tuple(v) if isinstance(v, (tuple, list)) else None
    what, item = _kind(default[0])
    plural = {"a bool": "bools", "an int": "ints", "a number": "numbers",
              "a string": "strings"}.get(what, what)

    def sequence(v):
      if not isinstance(v, (tuple, list)):
        return None
      items = [item(x) for x in v]
      return None if any(x is None for x in items) else tuple(items)
    return f"a tuple of {plural} (or a list)", sequence
  return f"a {type(default).__name__}", lambda v: v if isinstance(v, type(default)) else None


def _dtype_name(value) -> str | None:
  if isinstance(value, str):
    return value
  if isinstance(value, (type, np.dtype)):
    try:
      return np.dtype(value).name
    except TypeError:
      return None
  return None


def _checked(spec: ModelSpec, key: str, value):
  """`value` for hyper-parameter `key`, normalized; ConfigError when of the wrong type."""
  if key == "dtype":
    dtype = _dtype_name(value)
    if dtype not in COMPUTE_DTYPES:
      raise ConfigError(f"model {spec.name!r}: model_kwargs.dtype={value!r} is not a compute "
                        f"dtype; accepted: {', '.join(COMPUTE_DTYPES)}")
    return jnp.dtype(dtype)
  default = spec.defaults[key]
  if default is None:
    return value
  what, normalize = _kind(default)
  normalized = normalize(value)
  if normalized is None:
    raise ConfigError(f"model {spec.name!r}: model_kwargs.{key}={value!r} (type "
                      f"{type(value).__name__}) has the wrong type; accepted: {what}, e.g. "
                      f"{default!r}")
  return normalized
