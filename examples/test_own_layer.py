"""The symmetry tests of examples/own_layer.py, as a user's project would write them.

    pytest examples/test_own_layer.py -v

Not collected by the project's own `pytest` (testpaths = tests); tests/test_symmetry_tool.py
runs it in a subprocess.
"""

import own_layer

from dl_jax.symmetry.testing import symmetry_tests

test_deepsets = symmetry_tests([own_layer.deepsets])
test_broken_deepsets = symmetry_tests([own_layer.broken], expect_failure=True)
