"""``python -m omnicell``: the command line (also ``torchrun -m omnicell pretrain RECIPE``)."""

import sys

from omnicell.cli import main

sys.exit(main())
