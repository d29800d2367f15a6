"""``python -m graphmm <command>``: see :mod:`graphmm.cli`."""

import sys

from graphmm.cli import main

if __name__ == "__main__":
    sys.exit(main())
