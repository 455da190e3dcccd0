#!/usr/bin/env python3
"""Compare techniques over many seeds; see `python scripts/compare.py --help`."""

import sys

from regjax.devices import one_cpu_device_per_core

if __name__ == "__main__":
    one_cpu_device_per_core()  # before JAX starts: batched models are split between the cores
    from regjax.compare import compare_main

    sys.exit(compare_main())
