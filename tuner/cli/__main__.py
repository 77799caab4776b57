"""``python -m tuner.cli``: the ``egotune`` command."""

import sys

from tuner.cli import main

sys.exit(main())
