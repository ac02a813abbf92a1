"""``python -m sansa`` runs the command line."""

import sys

from sansa.cli import main

sys.exit(main())
