#!/usr/bin/env python3
"""Sweep one knob over a range of values and seeds; see `python scripts/sweep.py --help`."""

import sys

from regjax.devices import one_cpu_device_per_core

if __name__ == "__main__":
    one_cpu_device_per_core()  # before JAX starts: batched models are split between the cores
    from regjax.compare import sweep_main

    sys.exit(sweep_main())
