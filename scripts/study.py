#!/usr/bin/env python3
"""`python -m regjax study`, as a script; see `python scripts/study.py --help`."""

import sys

from regjax.__main__ import study

if __name__ == "__main__":
    sys.exit(study())
