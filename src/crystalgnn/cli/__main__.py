"""``python -m crystalgnn.cli``: the ``crystalgnn`` command."""

import sys

from crystalgnn.cli import main

sys.exit(main())
