"""`python -m sim.cli`: the same as the `dcsim` command."""
import sys

from . import main

sys.exit(main())
