"""``python -m recede``: the same command line as the ``recede`` script."""

import sys

from recede.cli import main

sys.exit(main())
