"""``python -m humtemp`` is the same as the ``humtemp`` command."""

import sys

from humtemp.cli import main

sys.exit(main())
