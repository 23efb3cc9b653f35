"""``python -m lpdsl``: the same as the ``lpdsl`` console script."""

import sys

from lpdsl.cli import main

sys.exit(main())
