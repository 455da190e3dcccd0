#!/usr/bin/env python3
"""`python -m regjax sweep`, as a script; see `python scripts/sweep.py --help`."""

import sys

from regjax.__main__ import sweep

if __name__ == "__main__":
    sys.exit(sweep())
