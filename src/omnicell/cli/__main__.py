"""``python -m omnicell.cli``: the command line."""

import sys

from omnicell.cli import main

sys.exit(main())
