"""``python -m ferropool``: the same as the ``ferropool`` command."""

from __future__ import annotations

import sys

from ferropool.cli import main

if __name__ == "__main__":
    sys.exit(main())
