"""``python -m rednet`` (and ``torchrun -m rednet``) runs the command-line interface."""

import sys

from rednet.cli import main

sys.exit(main())
