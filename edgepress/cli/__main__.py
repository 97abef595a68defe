"""`python -m edgepress.cli` (the README's torchrun line runs it so)."""

import sys

from edgepress.cli import main

sys.exit(main())
