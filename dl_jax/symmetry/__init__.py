"""Symmetries as tested properties (chapter 4): group actions, one checker, the blueprint, and
the suite that checks anyone's model (`suite`: declare once, check, prove each check can fail)."""

from dl_jax.symmetry.suite import (ActionSymmetry, SymmetrySpec, declare,  # noqa: F401
                                     random_variables, registry_specs, run_check, run_checks,
                                     spec_of)
