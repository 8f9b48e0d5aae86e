"""``python -m crystalgnn``: the ``crystalgnn`` command."""

import sys

from crystalgnn.cli import main

sys.exit(main())
