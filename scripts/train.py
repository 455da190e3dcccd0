#!/usr/bin/env python3
"""`python -m regjax train`, as a script; see `python scripts/train.py --help`."""

import sys

from regjax.__main__ import train

if __name__ == "__main__":
    sys.exit(train())
