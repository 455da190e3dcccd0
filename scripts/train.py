#!/usr/bin/env python3
"""Train one regularization technique; see `python scripts/train.py --help`."""

import sys

from regjax.cli import main

if __name__ == "__main__":
    sys.exit(main())
