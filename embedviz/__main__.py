"""Entry point of ``python -m embedviz``."""

import sys

from embedviz.cli import main

sys.exit(main())
