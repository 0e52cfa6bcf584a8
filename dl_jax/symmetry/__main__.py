"""`python -m dl_jax.symmetry check MODULE:FACTORY ...`, `... audit` and `... list`: see `cli`."""

import sys

from dl_jax.symmetry.cli import main

if __name__ == "__main__":
  sys.exit(main())
