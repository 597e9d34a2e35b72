"""`python -m edged` is `edged`."""

import sys

from edged.cli import main

sys.exit(main())
