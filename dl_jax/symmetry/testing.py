"""Your model's symmetries as pytest tests: one test per (model, symmetry, dtype, mode).

    # test_my_layers.py
    from dl_jax.symmetry.testing import symmetry_tests
    test_my_layers = symmetry_tests([my_layer, other_spec])    # @declare'd factories or specs
    test_careless = symmetry_tests([careless_layer], expect_failure=True)

`symmetry_tests` returns a test function parametrized over `SymmetrySpec.cases()`: modes
"eager" and "jit" check the model (`dl_jax.symmetry.suite.run_check`), mode "broken" checks its
automatic broken variant and passes only when that check fails (`dl_jax.symmetry.breaking`: a
check that cannot fail proves nothing). With `expect_failure=True` the model's own checks are
strict xfails (the model must lack a symmetry it declares); its broken-variant checks must still
fail. Ids read `<model>:<symmetry>:<dtype>:<mode>`; a failure's message is the full report.
"""

from typing import Iterable

import pytest

from dl_jax.symmetry import suite


def symmetry_tests(specs: Iterable, *, seed: int = 0, expect_failure: bool = False):
  """A parametrized pytest test function over every check of `specs`."""
  params = []
  for spec in map(suite.spec_of, specs):
    for symmetry, dtype, mode in spec.cases():
      marks = ()
      if expect_failure and mode != "broken":
        marks = (pytest.mark.xfail(strict=True, raises=AssertionError,
                                   reason=f"{spec.name} must lack {symmetry}"),)
      params.append(pytest.param(spec, symmetry, dtype, mode, marks=marks,
                                 id=f"{spec.name}:{symmetry}:{dtype}:{mode}"))

  @pytest.mark.parametrize("spec,symmetry,dtype,mode", params)
  def test_symmetry(spec, symmetry, dtype, mode):
    result = suite.run_check(spec, symmetry, dtype, mode, seed=seed)
    print(result.report)
    if mode == "broken":
      assert not result.passed, (f"vacuous: the check of {symmetry} ({dtype}) also passes on "
                                 f"the broken variant ({result.breaker}):\n{result.report}")
    else:
      assert result.passed, str(result.report)

  return test_symmetry
