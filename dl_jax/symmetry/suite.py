"""Declare the symmetries of your own model once; check them all, and prove each check can fail.

    from dl_jax import symmetry

    @symmetry.declare("permutation_equivariant", input_shape=(2, 7, 5))
    def my_layer():  # a flax module, (apply_fn, variables), or a parameter-free function
      return MyDeepSetsLayer(features=5)

    suite = symmetry.run_checks(my_layer)  # a `SuiteReport`
    print(suite.table()); assert suite.ok

A declaration (`SymmetrySpec`) names symmetries of `dl_jax.symmetry.vocabulary` (or carries a
`GroupAction` of your own, `ActionSymmetry`). `run_checks` tests each one, f(g.x) = g.f(x) or
f(g.x) = f(x) (section 4.2, figures 4.9-4.10), through `dl_jax.symmetry.check`: per dtype
(float32 at 1e-5, float64 at 1e-10 under `jax.enable_x64`), eagerly and jitted, on `n_samples`
group elements drawn from explicit keys, with random variables whose biases are N(0, 1) (a
bias that breaks a symmetry cannot hide behind a zero initialization). It then runs the same
check on an automatically broken variant f o b of the model (`dl_jax.symmetry.breaking`): a
check that still passes there is "vacuous" and fails the suite.

The pytest test factory (`dl_jax.symmetry.testing`) and the command line (`python -m
dl_jax.symmetry check`) run the same `run_check` / `run_broken` per case. `registry_specs` holds
the declarations of dl_jax's own registered models and layers (`python -m dl_jax.symmetry
audit` checks them all).
"""

import dataclasses
import difflib
import functools
import inspect
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.errors import ConfigError
from dl_jax.symmetry import breaking, check, groups, vocabulary
from dl_jax.symmetry.vocabulary import SymmetryParams

PyTree = Any
TOLERANCE: Mapping[str, float] = {"float32": 1e-5, "float64": 1e-10}
KINDS = ("equivariant", "invariant")
MODES = ("eager", "jit")


@dataclasses.dataclass(frozen=True)
class ActionSymmetry:
  """A symmetry outside the vocabulary: your own `GroupAction`, checked as `kind`.

  Attributes:
    action: the group action (its `act_output` is g on the output, for equivariance).
    kind: "equivariant" or "invariant".
    name: how reports call it (default: the action's class name and kind).
    crop: output pixels cut from each border (plus the action's own `boundary`).
  """
  action: groups.GroupAction
  kind: str
  name: str = ""
  crop: int = 0

  def __post_init__(self):
    if not isinstance(self.action, groups.GroupAction):
      raise ConfigError(f"ActionSymmetry action={self.action!r} is not a "
                        f"dl_jax.symmetry.groups.GroupAction")
    if self.kind not in KINDS:
      raise ConfigError(f"ActionSymmetry kind={self.kind!r}; accepted: {', '.join(KINDS)}")
    if not self.name:
      object.__setattr__(self, "name", f"{type(self.action).__name__}_{self.kind}")


def _check_symmetry(s) -> str | ActionSymmetry:
  if isinstance(s, ActionSymmetry):
    return s
  if isinstance(s, str):
    if s not in vocabulary.SYMMETRIES:
      close = difflib.get_close_matches(s, vocabulary.SYMMETRIES, n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      raise ConfigError(f"unknown symmetry {s!r}{hint}; accepted: "
                        f"{', '.join(vocabulary.SYMMETRIES)}")
    return s
  raise ConfigError(f"symmetry {s!r} is neither a name nor an ActionSymmetry; accepted names: "
                    f"{', '.join(vocabulary.SYMMETRIES)}")


def symmetry_name(s: str | ActionSymmetry) -> str:
  return s if isinstance(s, str) else s.name


@dataclasses.dataclass(frozen=True, eq=False)
class SymmetrySpec:
  """A model and the symmetries it declares (compared by identity).

  Attributes:
    factory: () -> a flax `nn.Module`, an `(apply_fn, variables)` pair (plain JAX:
      apply_fn(variables, x)), or a parameter-free function x -> y. A factory function (not a
      class) with a parameter `dtype` is called with the check's dtype name ("float64"), for
      models whose compute dtype is a hyper-parameter.
    symmetries: vocabulary names or `ActionSymmetry`s.
    input_shape: the batched input's shape (N(0, 1) entries); or give `make_input`.
    make_input: key -> a batched input pytree (e.g. a graph or point-cloud dict).
    params: `SymmetryParams` (or a dict of its fields); None: the module's `symmetry_params`
      property if it has one, else the defaults.
    dtypes: the dtypes to check in ("float32", "float64": float64 under `jax.enable_x64`).
    atol, rtol: per-dtype tolerances (default `TOLERANCE`, atol = rtol); atol, yours too, is
      in units of each output leaf's magnitude where that exceeds 1 (`check`'s `scale_atol`:
      float32 keeps 7 digits of an output of 1e3 as of one of 1).
    crop: output pixels cut from each border; None: the vocabulary's (`params.radius` for
      interior translations).
    n_samples: group elements per check.
    apply_kwargs: extra keyword arguments of `module.apply` (e.g. {"train": False}).
    name: how reports call the model (default: the factory's name).
    vacuity: also check the automatic broken variants (`dl_jax.symmetry.breaking`).
  """
  factory: Callable[[], Any]
  symmetries: tuple[str | ActionSymmetry, ...]
  input_shape: tuple[int, ...] | None = None
  make_input: Callable[[jax.Array], PyTree] | None = None
  params: SymmetryParams | Mapping[str, Any] | None = None
  dtypes: tuple[str, ...] = ("float32", "float64")
  atol: Mapping[str, float] | None = None
  rtol: Mapping[str, float] | None = None
  crop: int | None = None
  n_samples: int = 3
  apply_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  name: str = ""
  vacuity: bool = True

  def __post_init__(self):
    if not callable(self.factory):
      raise ConfigError(f"factory {self.factory!r} is not callable; accepted: a function "
                        f"returning a flax module, (apply_fn, variables) or a function")
    if isinstance(self.symmetries, (str, ActionSymmetry)):
      object.__setattr__(self, "symmetries", (self.symmetries,))
    symmetries = tuple(_check_symmetry(s) for s in self.symmetries)
    if not symmetries:
      raise ConfigError("a SymmetrySpec needs at least one symmetry; accepted names: "
                        f"{', '.join(vocabulary.SYMMETRIES)}")
    object.__setattr__(self, "symmetries", symmetries)
    if (self.input_shape is None) == (self.make_input is None):
      raise ConfigError("give exactly one of input_shape (e.g. (2, 7, 5)) and make_input "
                        "(key -> input)")
    if self.input_shape is not None:
      shape = tuple(self.input_shape)
      if not shape or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                              and d > 0 for d in shape):
        raise ConfigError(f"input_shape={self.input_shape!r} must be a non-empty tuple of "
                          f"positive ints, e.g. (2, 7, 5)")
      object.__setattr__(self, "input_shape", tuple(int(d) for d in shape))
    dtypes = (self.dtypes,) if isinstance(self.dtypes, str) else tuple(self.dtypes)
    object.__setattr__(self, "dtypes", tuple(_dtype_name(d) for d in dtypes))
    for d in self.dtypes:
      self.tolerance(d)  # a tolerance for every dtype
    if not isinstance(self.n_samples, int) or self.n_samples < 1:
      raise ConfigError(f"n_samples={self.n_samples!r} must be a positive int")
    if self.crop is not None and (not isinstance(self.crop, int) or self.crop < 0):
      raise ConfigError(f"crop={self.crop!r} must be None or an int >= 0")
    if self.params is not None and not isinstance(self.params, SymmetryParams):
      object.__setattr__(self, "params", _params(self.params))
    if not self.name:
      object.__setattr__(self, "name", getattr(self.factory, "__name__", "model"))

  def tolerance(self, dtype: str) -> tuple[float, float]:
    """(atol, rtol) in `dtype`."""
    atol = {**TOLERANCE, **(self.atol or {})}.get(dtype)
    rtol = {**TOLERANCE, **(self.rtol or {})}.get(dtype)
    if atol is None or rtol is None:
      raise ConfigError(f"no tolerance for dtype {dtype!r}: give atol and rtol for it; "
                        f"defaults exist for {', '.join(TOLERANCE)}")
    return float(atol), float(rtol)

  def cases(self) -> list[tuple[str, str, str]]:
    """(symmetry name, dtype, mode) of every check, mode in "eager", "jit", "broken"."""
    out = []
    for s in self.symmetries:
      for dtype in self.dtypes:
        out += [(symmetry_name(s), dtype, mode) for mode in MODES]
        if self.vacuity:
          out.append((symmetry_name(s), dtype, "broken"))
    return out


def _dtype_name(d) -> str:
  try:
    name = jnp.dtype(d).name
  except TypeError:
    name = None
  if name is None or not jnp.issubdtype(jnp.dtype(name), jnp.floating):
    raise ConfigError(f"dtype {d!r} is not a float dtype; accepted: float32, float64 (others "
                      f"with explicit atol and rtol)")
  return name


def _params(params) -> SymmetryParams:
  try:
    return SymmetryParams(**dict(params))
  except TypeError as e:
    raise ConfigError(f"bad symmetry params {params!r}: {e}; accepted: "
                      f"{', '.join(f.name for f in dataclasses.fields(SymmetryParams))}") from e


def declare(*symmetries: str | ActionSymmetry, **options) -> Callable:
  """Decorator: `@declare("permutation_equivariant", input_shape=(2, 7, 5))` on a factory.

  The options are `SymmetrySpec`'s fields. The factory is returned unchanged, with its spec as
  the attribute `symmetry_spec` (what `spec_of`, the pytest test factory and the CLI read).
  """
  def wrap(factory):
    factory.symmetry_spec = SymmetrySpec(factory, symmetries, **options)
    return factory
  return wrap


def spec_of(obj) -> SymmetrySpec:
  """The `SymmetrySpec` of a spec or of a `declare`d factory."""
  if isinstance(obj, SymmetrySpec):
    return obj
  spec = getattr(obj, "symmetry_spec", None)
  if isinstance(spec, SymmetrySpec):
    return spec
  raise ConfigError(f"{obj!r} is neither a SymmetrySpec nor a factory decorated with "
                    f"@dl_jax.symmetry.declare(...)")


# ---------------------------------------------------------------------------------------------
# Variables and the map under test.

def random_variables(module: nn.Module, x: PyTree, seed: int, **kwargs) -> PyTree:
  """Random variables for `module` on input `x`, drawn with numpy (no compilation): kernels
  N(0, 1/fan_in), every bias N(0, 1) (so that a bias breaking a symmetry cannot hide behind a
  zero initialization), batch-norm variances U(0.5, 1.5)."""
  shapes = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x, **kwargs), x)
  rng = np.random.default_rng(seed)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  values = []
  for path, leaf in leaves:
    name = jax.tree_util.keystr(path)
    if name.endswith("['var']"):
      value = rng.uniform(0.5, 1.5, leaf.shape)
    else:
      value = rng.standard_normal(leaf.shape)
      if not name.endswith("['bias']") and not name.endswith("['mean']"):
        value /= np.sqrt(max(1, int(np.prod(leaf.shape[:-1]))))
    values.append(jnp.asarray(value, leaf.dtype))
  return jax.tree_util.tree_unflatten(treedef, values)


def as_dtype(tree: PyTree, dtype) -> PyTree:
  """Float leaves cast to `dtype`; integer leaves (ids, edge lists) kept."""
  return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                      tree)


@dataclasses.dataclass(frozen=True)
class Setup:
  """The map under test in one dtype: f, its input x and the symmetry params."""
  f: Callable[[PyTree], PyTree]
  x: PyTree
  params: SymmetryParams


_SETUPS: dict = {}  # (id(spec), dtype, seed) -> (spec, Setup): eager and jit share variables


def _input(spec: SymmetrySpec, key: jax.Array, dtype: str) -> PyTree:
  if spec.make_input is not None:
    return as_dtype(spec.make_input(key), dtype)
  return jax.random.normal(key, spec.input_shape, dtype)


def _takes_dtype(factory: Callable) -> bool:
  if isinstance(factory, type):  # a module class: its `dtype` field is not a dtype name
    return False
  try:
    return "dtype" in inspect.signature(factory).parameters
  except (TypeError, ValueError):  # no signature (a builtin)
    return False


def _build(factory: Callable, dtype: str):
  return factory(dtype=dtype) if _takes_dtype(factory) else factory()


def setup(spec: SymmetrySpec, dtype: str, seed: int = 0) -> Setup:
  """Builds the model, draws its input (key fold_in(seed, 1)) and variables (numpy `seed`),
  all in `dtype`. Call it under `jax.enable_x64(True)` for float64 (`run_check` does)."""
  cached = _SETUPS.get((id(spec), dtype, seed))
  if cached is not None and cached[0] is spec:
    return cached[1]
  x = _input(spec, jax.random.fold_in(jax.random.PRNGKey(seed), 1), dtype)
  made = _build(spec.factory, dtype)
  params = spec.params
  if isinstance(made, nn.Module):
    kwargs = dict(spec.apply_kwargs)
    variables = as_dtype(random_variables(made, x, seed, **kwargs), dtype)
    f = lambda x, m=made, v=variables: m.apply(v, x, **kwargs)
    if params is None:
      params = _params(getattr(made, "symmetry_params", {}))
  elif isinstance(made, tuple) and len(made) == 2 and callable(made[0]):
    apply_fn, variables = made[0], as_dtype(made[1], dtype)
    f = lambda x: apply_fn(variables, x)
  elif callable(made):
    f = made
  else:
    raise ConfigError(f"factory {spec.name!r} returned {type(made).__name__}; accepted: a flax "
                      f"module, an (apply_fn, variables) pair or a function")
  result = Setup(f, x, params or SymmetryParams())
  _SETUPS[(id(spec), dtype, seed)] = (spec, result)
  return result


# ---------------------------------------------------------------------------------------------
# Running the checks.

@dataclasses.dataclass(frozen=True)
class CheckResult:
  """One check: `symmetry` of model `spec` in `dtype`, mode "eager", "jit" or "broken" (the
  automatic broken variant, jitted; `breaker` says how it is broken)."""
  spec: str
  symmetry: str
  kind: str
  dtype: str
  mode: str
  report: check.SymmetryReport
  breaker: str = ""

  @property
  def passed(self) -> bool:
    return self.report.passed

  @property
  def ok(self) -> bool:
    """A declared check passes; a broken variant's check fails."""
    return self.passed != (self.mode == "broken")

  @property
  def max_abs_error(self) -> float:
    return self.report.max_abs_error

  @property
  def mean_abs_error(self) -> float:
    return self.report.mean_abs_error

  def to_json(self) -> dict:
    r = self.report
    return {"spec": self.spec, "symmetry": self.symmetry, "kind": self.kind,
            "dtype": self.dtype, "mode": self.mode, "breaker": self.breaker or None,
            "atol": r.atol, "rtol": r.rtol, "crop": r.crop, "output_scale": r.output_scale,
            "passed": self.passed, "ok": self.ok, "max_abs_error": r.max_abs_error,
            "mean_abs_error": r.mean_abs_error,
            "samples": [dataclasses.asdict(s) for s in r.samples]}


def _resolve(spec: SymmetrySpec, name: str, x: PyTree, params: SymmetryParams
             ) -> tuple[str, groups.GroupAction, int]:
  """(kind, action, crop) of the declared symmetry `name` on input x."""
  for s in spec.symmetries:
    if isinstance(s, ActionSymmetry) and s.name == name:
      return s.kind, s.action, s.crop if spec.crop is None else spec.crop
  if name not in spec.symmetries:
    raise ConfigError(f"{spec.name!r} does not declare {name!r}; it declares "
                      f"{', '.join(symmetry_name(s) for s in spec.symmetries)}")
  declared, action, crop = vocabulary.action_for(name, x, params)
  return declared.kind, action, crop if spec.crop is None else spec.crop


def _element_key(spec: SymmetrySpec, name: str, seed: int) -> jax.Array:
  index = [symmetry_name(s) for s in spec.symmetries].index(name)
  return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 2), index)


def run_check(spec, symmetry: str, dtype: str, mode: str, *, seed: int = 0,
              n_samples: int | None = None) -> CheckResult:
  """One check of `spec` (a SymmetrySpec or declared factory): `mode` "eager" or "jit" checks
  the model, "broken" its automatic broken variant (jitted). Group elements are drawn from
  fold_in(fold_in(PRNGKey(seed), 2), index of the symmetry): eager and jit see the same."""
  spec = spec_of(spec)
  if mode not in (*MODES, "broken"):
    raise ConfigError(f"mode={mode!r}; accepted: eager, jit, broken")
  dtype = _dtype_name(dtype)
  atol, rtol = spec.tolerance(dtype)
  with jax.enable_x64(dtype == "float64"):
    s = setup(spec, dtype, seed)
    kind, action, crop = _resolve(spec, symmetry, s.x, s.params)
    f, breaker = s.f, ""
    if mode == "broken":
      b = breaking.breaker_for(action, s.x, seed=seed + 3)
      f, breaker = b.broken(s.f), b.description
    common = dict(atol=atol, rtol=rtol, n_samples=n_samples or spec.n_samples,
                  jit=mode != "eager", raise_on_failure=False, scale_atol=True)
    key = _element_key(spec, symmetry, seed)
    if kind == "equivariant":
      report = check.check_equivariant(f, s.x, action, key, crop=crop, **common)
    else:
      report = check.check_invariant(f, s.x, action, key, **common)
  return CheckResult(spec.name, symmetry, kind, dtype, mode, report, breaker)


def run_broken(spec, symmetry: str, dtype: str, **kwargs) -> CheckResult:
  """The check of `symmetry` on the automatic broken variant; `.ok` when it fails."""
  return run_check(spec, symmetry, dtype, "broken", **kwargs)


@dataclasses.dataclass(frozen=True)
class SuiteReport:
  """All checks of one spec: `checks` (declared, must pass) and `broken` (must fail)."""
  spec: str
  checks: tuple[CheckResult, ...]
  broken: tuple[CheckResult, ...]

  @property
  def passed(self) -> bool:
    return all(c.passed for c in self.checks)

  @property
  def vacuous(self) -> tuple[CheckResult, ...]:
    """The broken variants that passed: their checks could not have failed."""
    return tuple(b for b in self.broken if b.passed)

  @property
  def ok(self) -> bool:
    return self.passed and not self.vacuous

  def table(self) -> str:
    """One row per group element: symmetry, dtype, mode, element, errors, tolerance, result."""
    header = ("symmetry", "dtype", "mode", "group element", "max err", "mean err", "tol",
              "result")
    rows = []
    for c in self.checks:
      r = c.report
      tol = f"{r.atol:.0e}" if r.atol == r.rtol else f"{r.atol:.0e}+{r.rtol:.0e}|y|"
      for s in r.samples:
        element = s.element if len(s.element) <= 48 else s.element[:45] + "..."
        rows.append((c.symmetry, c.dtype, c.mode, element, f"{s.max_abs_error:.2e}",
                     f"{s.mean_abs_error:.2e}", tol, "pass" if s.within_tolerance else "FAIL"))
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()
             for row in (header, *rows)]
    return "\n".join(lines)

  def vacuity_line(self) -> str:
    if not self.broken:
      return "vacuity: not checked"
    if self.vacuous:
      names = ", ".join(f"{b.symmetry} ({b.dtype}, max err {b.max_abs_error:.2e})"
                        for b in self.vacuous)
      return (f"vacuity: VACUOUS: {len(self.vacuous)}/{len(self.broken)} checks also pass on "
              f"the broken variant: {names}")
    smallest = min(self.broken, key=lambda b: b.max_abs_error / max(b.report.atol, 1e-300))
    n = len(self.broken)
    return (f"vacuity: ok, {n}/{n} broken variants fail (smallest margin: "
            f"{smallest.symmetry} {smallest.dtype}, max err {smallest.max_abs_error:.2e} vs "
            f"tol {smallest.report.atol:.0e}; {smallest.breaker})")

  def summary(self) -> str:
    failed = sum(not c.passed for c in self.checks)
    verdict = "PASSED" if self.ok else "FAILED"
    return (f"{verdict}: {self.spec}: {len(self.checks) - failed}/{len(self.checks)} checks "
            f"pass, {len(self.vacuous)} vacuous")

  def to_json(self) -> dict:
    return {"spec": self.spec, "passed": self.passed, "ok": self.ok,
            "vacuous": [b.symmetry + ":" + b.dtype for b in self.vacuous],
            "checks": [c.to_json() for c in self.checks],
            "broken": [b.to_json() for b in self.broken]}


def run_checks(spec, *, seed: int = 0, n_samples: int | None = None,
               dtypes: Sequence[str] | None = None, modes: Sequence[str] = MODES,
               vacuity: bool | None = None) -> SuiteReport:
  """Every declared symmetry of `spec` per dtype and mode, and (unless `vacuity` is False, or
  None with `spec.vacuity` False) each one's broken variant per dtype."""
  spec = spec_of(spec)
  checks, broken = [], []
  for s in spec.symmetries:
    for dtype in dtypes or spec.dtypes:
      for mode in modes:
        checks.append(run_check(spec, symmetry_name(s), dtype, mode, seed=seed,
                                n_samples=n_samples))
      if spec.vacuity if vacuity is None else vacuity:
        broken.append(run_broken(spec, symmetry_name(s), dtype, seed=seed, n_samples=n_samples))
  return SuiteReport(spec.name, tuple(checks), tuple(broken))


# ---------------------------------------------------------------------------------------------
# dl_jax's own declarations.

ARRAY_FAMILIES = ("image", "set", "point_cloud")  # the families the vocabulary's actions move


def _registry_model(name: str, dtype: str) -> nn.Module:
  from dl_jax.models import registry  # pylint: disable=import-outside-toplevel (imports us)
  return registry.build(name, dtype=dtype)  # computes in the check's dtype


def _registry_model_input(name: str, key: jax.Array) -> PyTree:
  """The registry's example input for a point cloud (a dict), else N(0, 1) of its shape."""
  del key  # fixed: tests/test_symmetry.py's inputs, whatever the seed
  from dl_jax.models import registry  # pylint: disable=import-outside-toplevel
  example = registry.get(name).example_inputs(2)[0]
  if isinstance(example, dict):
    return jax.tree.map(jnp.asarray, example)
  return jax.random.normal(jax.random.PRNGKey(1), example.shape)


def _layer_input(make_input: Callable[[jax.Array], PyTree], key: jax.Array) -> PyTree:
  del key  # fixed, as above
  return make_input(jax.random.PRNGKey(1))


@functools.lru_cache(maxsize=1)  # one set of specs: their variables are cached by identity
def _registry_specs() -> tuple[SymmetrySpec, ...]:
  from dl_jax.models import registry  # pylint: disable=import-outside-toplevel
  from dl_jax.symmetry import layers  # pylint: disable=import-outside-toplevel
  specs = []
  for family in ARRAY_FAMILIES:
    for name in registry.names(family):
      symmetries = registry.get(name).symmetries
      if symmetries:
        specs.append(SymmetrySpec(
            functools.partial(_registry_model, name), symmetries,
            make_input=functools.partial(_registry_model_input, name),
            apply_kwargs={"train": False}, name=f"model:{name}"))
  for name in layers.names():
    layer = layers.get(name)
    specs.append(SymmetrySpec(lambda build=layer.build: build(), layer.symmetries,
                              make_input=functools.partial(_layer_input, layer.make_input),
                              params=layer.params, name=f"layer:{name}"))
  return tuple(specs)


def registry_specs() -> list[SymmetrySpec]:
  """A `SymmetrySpec` per registered model of the array families (`dl_jax.models.registry`,
  those declaring symmetries; "model:<name>", applied with train=False, params from its
  `symmetry_params`) and per layer of `dl_jax.symmetry.layers` ("layer:<name>", its params):
  the entries of tests/test_symmetry.py, on its inputs (N(0, 1) from PRNGKey(1), a point
  cloud's example dict) with the suite's random variables. Section 4.4's models and layers;
  graph-family models are checked on GraphsTuples in tests/test_graph_symmetry.py."""
  return list(_registry_specs())
