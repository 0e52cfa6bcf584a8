"""The symmetry suite as a tool for anyone's model (`dl_jax.symmetry.suite`, `.breaking`,
`.testing`, `python -m dl_jax.symmetry`), and proof that every check can fail:

- the CLI on examples/own_layer.py: exit 0 and a table for the DeepSets layer, exit 1 for its
  position-embedding variant, exit 2 and one `error:` line for bad input, a parseable JSON report;
- examples/test_own_layer.py (not collected here: testpaths = tests) passes under pytest;
- vacuity over dl_jax itself: for every declared symmetry of every registered model and layer on
  arrays (`suite.registry_specs`, the same (entry, symmetry) pairs as `tests/test_symmetry.py`'s
  CASES, on the same inputs, whose declared checks pass there), the automatic broken variant
  fails by more than 10x its tolerance (float32, jitted once); `python -m dl_jax.symmetry
  audit` (declared and broken) on a few of them;
- the breakers fail on their group while the identity (or a sum over all entries) passes.
"""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from dl_jax.errors import ConfigError
from dl_jax.symmetry import breaking, cli, euclidean, groups, suite
from dl_jax.symmetry import vocabulary as sym
from dl_jax.symmetry.check import check_equivariant, check_invariant

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = "examples/own_layer.py"
KEY = jax.random.PRNGKey(0)
TOL = dict(atol=1e-5, rtol=1e-5)


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout)


# ---------------------------------------------------------------------------------------------
# The command line and the worked example.

def test_cli_passes_the_example_layer_and_writes_json(tmp_path):
  out = tmp_path / "report.json"
  result = run("-m", "dl_jax.symmetry", "check", f"{EXAMPLE}:deepsets", "--json", str(out))
  assert result.returncode == 0, result.stdout + result.stderr
  lines = result.stdout.splitlines()
  assert lines[0].split() == ["symmetry", "dtype", "mode", "group", "element", "max", "err",
                              "mean", "err", "tol", "result"]
  rows = [line for line in lines if line.startswith("permutation_equivariant")]
  assert len(rows) == 2 * 2 * 3 and all(row.endswith("pass") for row in rows)  # dtype, mode, g
  assert lines[-2].startswith("vacuity: ok, 2/2") and lines[-1].startswith("PASSED")
  report = json.loads(out.read_text())
  assert report["ok"] and report["input_shape"] == [2, 7, 5] and not report["vacuous"]
  assert {(c["dtype"], c["mode"]) for c in report["checks"]} == {
      (d, m) for d in ("float32", "float64") for m in ("eager", "jit")}
  for c in report["checks"]:
    tol = 1e-5 if c["dtype"] == "float32" else 1e-10
    # atol in units of the output's magnitude (here a few units), rtol as declared
    assert c["passed"] and c["rtol"] == tol and c["max_abs_error"] <= tol
    assert c["atol"] == pytest.approx(tol * max(1.0, c["output_scale"]))
    assert len(c["samples"]) == 3 and c["output_scale"] > 0.1
  for b in report["broken"]:  # its broken variants fail by far
    assert not b["passed"] and b["ok"] and b["max_abs_error"] > 1e3 * b["atol"]


def test_cli_fails_the_broken_example_layer():
  result = run("-m", "dl_jax.symmetry", "check", f"{EXAMPLE}:broken", "--dtype", "float32",
               "--samples", "2", "--mode", "jit")
  assert result.returncode == 1, result.stdout + result.stderr
  rows = [line for line in result.stdout.splitlines() if line.startswith("permutation")]
  assert len(rows) == 2 and all(row.endswith("FAIL") for row in rows)
  assert "FAILED: broken: 0/1 checks pass" in result.stdout and not result.stderr.strip()


BAD_INPUTS = {
    "unknown symmetry": ([f"{EXAMPLE}:deepsets", "--symmetry", "permutation_equivarient"],
                         "did you mean 'permutation_equivariant'"),
    "bad shape": ([f"{EXAMPLE}:deepsets", "--input-shape", "2,x,5"], "'2,x,5'"),
    "zero in shape": ([f"{EXAMPLE}:deepsets", "--input-shape", "2,0,5"], "positive ints"),
    "module not found": (["no_such_module:f", "--input-shape", "2,3", "--symmetry",
                          "permutation_invariant"], "cannot import module 'no_such_module'"),
    "file not found": (["examples/nope.py:f"], "'examples/nope.py' not found"),
    "not a python file": (["./README.md:f"], "'./README.md' is not a Python file"),
    "factory not found": ([f"{EXAMPLE}:deepset"], "no 'deepset' (did you mean deepsets"),
    "not callable": ([f"{EXAMPLE}:jnp"], "not callable"),
    "no colon": ([EXAMPLE], "is not MODULE:FACTORY"),
    "not declared": ([f"{EXAMPLE}:DeepSets"], "give --input-shape and --symmetry"),
    "bad dtype": ([f"{EXAMPLE}:deepsets", "--dtype", "int8"], "'int8' is not a float dtype"),
    "bad param": ([f"{EXAMPLE}:deepsets", "--param", "strides=2"], "bad symmetry params"),
    "wrong symmetry for the input": ([f"{EXAMPLE}:deepsets", "--symmetry",
                                      "rotation_p4_equivariant"], "failed: ScopeParamShapeError"),
}


@pytest.mark.parametrize("argv,message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_cli_bad_input_is_one_error_line(argv, message, capsys):
  assert cli.main(["check", *argv]) == 2
  out, err = capsys.readouterr()
  assert not out and len(err.splitlines()) == 1 and err.startswith("error: "), err
  assert message in err, err


def test_cli_bad_input_exits_2_without_traceback():
  result = run("-m", "dl_jax.symmetry", "check", f"{EXAMPLE}:deepsets", "--symmetry", "scale")
  assert result.returncode == 2 and not result.stdout
  assert result.stderr.splitlines() == [result.stderr.strip()]  # one line
  assert result.stderr.startswith("error: unknown symmetry 'scale'; accepted: ")
  assert "Traceback" not in result.stderr


def test_cli_lists_the_vocabulary(capsys):
  assert cli.main(["list"]) == 0
  out = capsys.readouterr().out
  for name, s in sym.SYMMETRIES.items():
    assert any(line.split()[:2] == [name, s.kind] for line in out.splitlines())


def test_example_tests_pass_under_pytest():
  result = run("-m", "pytest", "examples/test_own_layer.py", "-q", "-p", "no:cacheprovider")
  assert result.returncode == 0, result.stdout[-3000:]
  # deepsets: 2 dtypes x (eager, jit, broken); broken: 4 strict xfails, 2 broken variants.
  assert "8 passed, 4 xfailed" in result.stdout, result.stdout[-3000:]


# ---------------------------------------------------------------------------------------------
# The library: specs, results, vacuity.

def test_spec_validation():
  with pytest.raises(ConfigError, match="did you mean 'rotation_p4_invariant'.*accepted: "):
    suite.SymmetrySpec(lambda: None, ("rotation_p4_invarient",), input_shape=(1, 4, 4, 1))
  with pytest.raises(ConfigError, match="exactly one of input_shape"):
    suite.SymmetrySpec(lambda: None, ("permutation_invariant",))
  with pytest.raises(ConfigError, match=r"input_shape=\(2, -1\)"):
    suite.SymmetrySpec(lambda: None, ("permutation_invariant",), input_shape=(2, -1))
  with pytest.raises(ConfigError, match="no tolerance for dtype 'bfloat16'"):
    suite.SymmetrySpec(lambda: None, ("permutation_invariant",), input_shape=(2, 3),
                       dtypes=("bfloat16",))
  with pytest.raises(ConfigError, match="kind='covariant'; accepted: equivariant, invariant"):
    suite.ActionSymmetry(groups.Permutation(3), "covariant")
  with pytest.raises(ConfigError, match="neither a SymmetrySpec nor"):
    suite.spec_of(lambda: None)
  spec = suite.SymmetrySpec(lambda: None, "permutation_invariant", input_shape=(2, 3),
                            dtypes="float32", atol={"float32": 1e-3})
  assert spec.symmetries == ("permutation_invariant",) and spec.tolerance("float32") == (1e-3,
                                                                                         1e-5)


def test_own_action_dict_inputs_and_a_vacuous_model():
  """An `ActionSymmetry` of the user's, a point-cloud dict input (roles by key), and an
  all-zero model: its checks pass, but so do its broken variants' (vacuous)."""
  def plain_jax():  # (apply_fn, variables): sum_i tanh(x_i W + b)
    w, b = jax.random.normal(KEY, (3, 4)), jax.random.normal(jax.random.PRNGKey(1), (4,))
    return (lambda v, x: jnp.sum(jnp.tanh(x @ v["w"] + v["b"]), axis=1)), {"w": w, "b": b}

  own = suite.ActionSymmetry(groups.Permutation(6), "invariant", name="relabel_six")
  report = suite.run_checks(suite.SymmetrySpec(plain_jax, (own,), input_shape=(2, 6, 3)),
                            modes=("jit",))
  assert report.ok and [c.symmetry for c in report.checks] == ["relabel_six"] * 2
  assert report.checks[1].report.dtype == "float64"

  def cloud(key):
    k1, k2 = jax.random.split(key)
    return {"positions": jax.random.normal(k1, (2, 5, 3)),
            "velocities": jax.random.normal(k2, (2, 5, 3))}

  step = suite.SymmetrySpec(lambda: lambda c: c["positions"] + 0.1 * c["velocities"],
                            ("e3_equivariant",), make_input=cloud, dtypes=("float64",),
                            name="euler_step")
  report = suite.run_checks(step, modes=("jit",))
  assert report.ok and len(report.checks) == len(report.broken) == 1, report.table()
  assert "coordinate mixing" in report.broken[0].breaker

  zero = suite.SymmetrySpec(lambda: lambda x: 0.0 * x, ("permutation_equivariant",),
                            input_shape=(2, 6, 3), dtypes=("float32",), name="zero")
  report = suite.run_checks(zero, modes=("jit",))
  assert report.passed and not report.ok and len(report.vacuous) == 1
  assert report.vacuity_line().startswith("vacuity: VACUOUS: 1/1")


def test_declared_results_repeat_across_modes_and_seeds():
  spec = suite.SymmetrySpec(lambda: jnp.tanh, ("translation_circular_equivariant",),
                            input_shape=(1, 6, 6, 2), dtypes=("float32",))
  eager, jit = (suite.run_check(spec, "translation_circular_equivariant", "float32", m)
                for m in ("eager", "jit"))
  assert [s.element for s in eager.report.samples] == [s.element for s in jit.report.samples]
  other = suite.run_check(spec, "translation_circular_equivariant", "float32", "eager", seed=1)
  assert [s.element for s in other.report.samples] != [s.element for s in eager.report.samples]
  with pytest.raises(ConfigError, match="does not declare 'permutation_invariant'"):
    suite.run_check(spec, "permutation_invariant", "float32", "jit")


def test_factory_taking_dtype_is_built_in_the_checks_dtype():
  seen = []

  def make(dtype):  # a model whose compute dtype is a hyper-parameter
    seen.append(dtype)
    return lambda x: jnp.tanh(x.astype(dtype))

  spec = suite.SymmetrySpec(make, "permutation_equivariant", input_shape=(2, 5, 3))
  report = suite.run_checks(spec, modes=("jit",))
  assert report.ok and seen == ["float32", "float64"]
  assert report.checks[1].max_abs_error <= 1e-10


REGISTRY = [(spec, suite.symmetry_name(s)) for spec in suite.registry_specs()
            for s in spec.symmetries]
REGISTRY_IDS = [f"{spec.name}:{symmetry}" for spec, symmetry in REGISTRY]


def _registry_spec(name: str) -> suite.SymmetrySpec:
  return next(spec for spec in suite.registry_specs() if spec.name == name)


def test_registry_specs_cover_exactly_the_cases_of_test_symmetry():
  from test_symmetry import CASES  # pylint: disable=import-outside-toplevel
  pairs = [(spec.name, symmetry) for spec, symmetry in REGISTRY]
  assert len(set(pairs)) == len(pairs)
  assert sorted(pairs) == sorted((f"{source}:{name}", s) for source, name, s in CASES)
  assert suite.registry_specs() == suite.registry_specs()  # the same specs: cached variables


@pytest.mark.parametrize("entry", ["model:p4cnn", "model:egnn", "layer:p4_max_pool",
                                   "layer:gnn_ggnn_edge_types"])
def test_registry_specs_take_the_inputs_and_params_of_test_symmetry(entry):
  from test_symmetry import setup_case  # pylint: disable=import-outside-toplevel
  source, _, name = entry.partition(":")
  _, x, params = setup_case(source, name, jnp.float32)
  s = suite.setup(_registry_spec(entry), "float32")
  assert jax.tree.structure(s.x) == jax.tree.structure(x)
  for a, b in zip(jax.tree.leaves(s.x), jax.tree.leaves(x)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  assert s.params == suite.SymmetryParams(**dict(params))


def test_registry_models_compute_in_the_checks_dtype():
  result = suite.run_check(_registry_spec("model:blueprint_set"), "permutation_invariant",
                           "float64", "jit", n_samples=1)
  assert result.passed and result.report.dtype == "float64", result.report  # float32 could not
  assert result.max_abs_error <= 1e-10 * max(1.0, result.report.output_scale)


@pytest.mark.parametrize("spec,symmetry", REGISTRY, ids=REGISTRY_IDS)
def test_every_broken_variant_of_dl_jax_fails(spec, symmetry):
  """Vacuity over dl_jax: each declared check (passing in tests/test_symmetry.py, and in the
  audit) fails on f o b by > 10x its tolerance (float32, jitted, 2 group elements)."""
  broken = suite.run_broken(spec, symmetry, "float32", n_samples=2)
  print(f"{spec.name}:{symmetry}: broken ({broken.breaker}): {broken.report}")
  assert not broken.passed and broken.max_abs_error > 10 * broken.report.atol, broken.report


# ---------------------------------------------------------------------------------------------
# `python -m dl_jax.symmetry audit`.

def test_audit_of_a_few_entries_passes_with_markdown_and_json(tmp_path):
  out = tmp_path / "audit.json"
  result = run("-m", "dl_jax.symmetry", "audit", "--only", "deepsets", "--markdown", "--json",
               str(out), timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr
  entries = ["layer:deepsets_linear", "layer:gnn_deepsets_equivariant",
             "layer:gnn_deepsets_invariant"]
  progress = result.stderr.splitlines()
  assert [line.split()[:2] for line in progress] == [[f"[{i}/3]", e] for i, e in
                                                     enumerate(entries, 1)], result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == ("| entry | symmetry | declared max err | broken max err | "
                      "tol (atol/rtol) | breaker |") and lines[1] == "|---|---|---|---|---|---|"
  rows = [line.strip("| ").split(" | ") for line in lines[2:5]]
  assert [row[0] for row in rows] == entries and lines[5] == ""
  for row in rows:
    assert row[2].endswith(" pass") and row[3].endswith(" FAIL") and "per-node" in row[5]
    assert float(row[3].split()[0]) > 10 * float(row[4].split("/")[0]) > float(row[2].split()[0])
  assert lines[6].startswith("PASSED: 3 entries, 3 symmetries (float32, jit, 2 group elements")
  assert "3/3 declared checks pass, 3/3 broken variants fail" in lines[6] and len(lines) == 7
  report = json.loads(out.read_text())
  assert report["ok"] and report["dtype"] == "float32" and not report["offending"]
  assert [e["entry"] for e in report["entries"]] == entries
  for e in report["entries"]:
    assert e["declared"]["passed"] and e["declared"]["mode"] == "jit"
    assert not e["broken"]["passed"] and len(e["broken"]["samples"]) == 2


def test_audit_fails_and_names_a_failing_and_a_vacuous_entry(monkeypatch, capsys):
  ramp = suite.SymmetrySpec(lambda: lambda x: x + jnp.arange(6.0)[:, None],
                            "permutation_equivariant", input_shape=(2, 6, 3), name="ramp")
  zero = suite.SymmetrySpec(lambda: lambda x: 0.0 * x, "permutation_equivariant",
                            input_shape=(2, 6, 3), name="zero")
  monkeypatch.setattr(suite, "registry_specs", lambda: [ramp, zero])
  assert cli.main(["audit", "--samples", "1"]) == 1
  out, err = capsys.readouterr()
  lines = out.splitlines()
  assert lines[0].split()[:2] == ["entry", "symmetry"] and len(err.splitlines()) == 2
  ramp_row, zero_row = lines[1].split(), lines[2].split()
  assert ramp_row[:2] == ["ramp", "permutation_equivariant"] and ramp_row[3] == "FAIL"
  assert zero_row[0] == "zero" and zero_row[3] == zero_row[5] == "pass"  # vacuous
  assert lines[-2].startswith("FAILED: 2 entries") and "1/2 declared checks pass" in lines[-2]
  assert lines[-1] == ("offending: ramp:permutation_equivariant (declared check fails); "
                       "zero:permutation_equivariant (vacuous: its broken variant passes)")


AUDIT_BAD_FLAGS = {
    "dtype": (["--dtype", "float16"], "--dtype='float16'; accepted: float32, float64"),
    "samples": (["--samples", "0"], "--samples=0 must be a positive int"),
    "not an int": (["--samples", "two"], "invalid int value: 'two'"),
    "only": (["--only", "no_such_entry"], "'no_such_entry' matches no entry"),
    "unknown flag": (["--dtypes", "float32"], "unrecognized arguments: --dtypes"),
}


@pytest.mark.parametrize("argv,message", AUDIT_BAD_FLAGS.values(), ids=AUDIT_BAD_FLAGS.keys())
def test_audit_bad_flag_is_one_error_line(argv, message, capsys):
  assert cli.main(["audit", *argv]) == 2
  out, err = capsys.readouterr()
  assert not out and len(err.splitlines()) == 1 and err.startswith("error: "), err
  assert message in err, err


def test_audit_bad_flag_exits_2_without_traceback():
  result = run("-m", "dl_jax.symmetry", "audit", "--samples", "-1", timeout=60)
  assert result.returncode == 2 and not result.stdout
  assert result.stderr == "error: --samples=-1 must be a positive int\n"


# ---------------------------------------------------------------------------------------------
# The breakers themselves: identity-like maps pass, their broken variants fail.

def _sum_all(x):
  return jnp.sum(x, axis=tuple(range(1, x.ndim)))


GRID_ACTIONS = {
    "circular": groups.CircularShift(),
    "circular_stride2": groups.CircularShift(stride=2, max_shift=4),
    "zero_filled": groups.Shift(max_shift=2),
    "p4": groups.Rotation90(),
    "p4_feature_map": groups.Rotation90(group_axis=3, out_group_axis=3),
    "p4m": groups.Rotation90Flip(),
    "set": groups.Permutation(8),
}


@pytest.mark.parametrize("action", GRID_ACTIONS.values(), ids=GRID_ACTIONS.keys())
def test_breaker_breaks_grids_and_sets(action):
  shape = {3: (2, 8, 8, 4, 3)}.get(getattr(action, "group_axis", None), (2, 8, 8, 3))
  x = jax.random.normal(KEY, shape[:3] if isinstance(action, groups.Permutation) else shape)
  breaker = breaking.breaker_for(action, x)
  assert np.abs(breaker.perturb(x) - x).max() < 0.2  # small: eps = 1e-2 times N(0, 1) terms
  np.testing.assert_array_equal(breaker.perturb(x), breaking.breaker_for(action, x).perturb(x))
  stride = getattr(action, "stride", 1)  # subsampling commutes with shifts by the stride
  identity = lambda x: x[:, ::stride, ::stride]
  assert check_equivariant(identity, x, action, KEY, **TOL).passed
  assert not check_equivariant(breaker.broken(identity), x, action, KEY,
                               raise_on_failure=False, **TOL).passed
  if not isinstance(action, groups.Shift):  # zero-filled shifts lose content: no invariant
    assert check_invariant(_sum_all, x, action, KEY, **TOL).passed  # the additive term alone
    assert not check_invariant(breaker.broken(_sum_all), x, action, KEY,  # would pass this
                               raise_on_failure=False, **TOL).passed


def test_breaker_breaks_graph_dicts_and_graphs_tuples():
  graph = {"nodes": jax.random.normal(KEY, (2, 6, 3)),
           "senders": jnp.array([[0, 1, 2, 3], [4, 5, 0, 1]]),
           "receivers": jnp.array([[1, 2, 3, 4], [5, 0, 1, 2]])}
  action = groups.Permutation(6)
  breaker = breaking.breaker_for(action, graph)
  moved = breaker.perturb(graph)
  np.testing.assert_array_equal(moved["senders"], graph["senders"])  # edges untouched
  identity = lambda g: g["nodes"]
  assert check_equivariant(identity, graph, action, KEY, **TOL).passed
  assert not check_equivariant(breaker.broken(identity), graph, action, KEY,
                               raise_on_failure=False, **TOL).passed

  batch = jraph.GraphsTuple(nodes=jax.random.normal(KEY, (7, 3)), edges=None,
                            senders=jnp.array([0, 1, 4, 5]), receivers=jnp.array([1, 2, 5, 6]),
                            n_node=jnp.array([3, 4]), n_edge=jnp.array([2, 2]), globals=None)
  action = groups.Permutation(7, axis=0, segments=(3, 4))
  breaker = breaking.breaker_for(action, batch)
  nodes = lambda g: g.nodes
  assert check_equivariant(nodes, batch, action, KEY, **TOL).passed
  assert not check_equivariant(breaker.broken(nodes), batch, action, KEY,
                               raise_on_failure=False, **TOL).passed


EUCLIDEAN = {
    "rotations": dict(rotations=True, translations=False),
    "reflections": dict(rotations=False, reflection_probability=1.0, translations=False),
    "translations": dict(rotations=False, translations=True),
    "permutations": dict(rotations=False, translations=False, permutations=True),
}


@pytest.mark.parametrize("components", EUCLIDEAN.values(), ids=EUCLIDEAN.keys())
def test_breaker_breaks_each_euclidean_component(components):
  cloud = {"positions": jax.random.normal(KEY, (2, 5, 3)),
           "velocities": jax.random.normal(jax.random.PRNGKey(1), (2, 5, 3)),
           "charges": jnp.ones((2, 5, 1))}
  action = euclidean.EuclideanAction(5, **components)
  breaker = breaking.breaker_for(action, cloud)
  for output, f in (("point", lambda c: c["positions"]),
                    ("vector", lambda c: c["velocities"] * c["charges"]),
                    ("point", lambda c: c["positions"] + c["velocities"])):
    if output == "vector" and not (components.get("rotations")
                                   or components.get("reflection_probability")
                                   or components.get("permutations")):
      continue  # a translation does not move vectors: nothing to break
    act = euclidean.EuclideanAction(5, output=output, **components)
    assert check_equivariant(f, cloud, act, KEY, **TOL).passed
    assert not check_equivariant(breaker.broken(f), cloud, act, KEY, raise_on_failure=False,
                                 **TOL).passed, (output, components)
