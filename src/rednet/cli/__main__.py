"""``python -m rednet.cli`` runs the command line, as ``python -m rednet`` does."""

import sys

from rednet.cli import main

sys.exit(main())
