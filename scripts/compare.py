#!/usr/bin/env python3
"""`python -m regjax compare`, as a script; see `python scripts/compare.py --help`."""

import sys

from regjax.__main__ import compare

if __name__ == "__main__":
    sys.exit(compare())
