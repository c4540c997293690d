"""`python -m microturn.cli`: the same as the `microturn` script."""

import sys

from . import main

sys.exit(main())
