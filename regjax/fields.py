"""How a Config field is declared: `setting(...)` wraps dataclasses.field with the metadata
the rest of regjax reads (its --help section, help text, valid Range, how it may vary between
models trained together), and the ranges and --help sections the fields share.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

INF = math.inf


class Range(NamedTuple):
    """An interval of valid values, closed or open at each end."""

    low: float
    high: float = INF
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return bool(above and below)

    def __str__(self) -> str:
        low, high = (str(v) if isinstance(v, int) else f"{v:g}" for v in self[:2])
        if self.high == INF:
            return f"{'>' if self.low_open else '>='} {low}"
        return (f"in {'(' if self.low_open else '['}{low}, {high}"
                f"{')' if self.high_open else ']'}")


UNIT = Range(0.0, 1.0)  # a probability or a fraction: [0, 1]
RATE = Range(0.0, 1.0, high_open=True)  # a dropout rate or a momentum: [0, 1)
NONNEGATIVE = Range(0.0)
POSITIVE_INT = Range(1)
# The --help sections of the settings that have several fields.
MODEL, LOSS, INPUTS, OPTIMISATION = "model", "loss", "inputs", "optimisation"
WEIGHTS = "weights (Keras optimizer semantics)"
AUGMENT = "augmentation (Keras ImageDataGenerator semantics, on device)"
STOP = "early stopping (on val_loss, Keras semantics)"
REGIME = "data regime (drawn from each run's seed; see docs/techniques.md)"
# The order of the sections in --help and of the fields in a Config; a technique may name a
# section of its own, shown after these.
GROUPS = (MODEL, LOSS, WEIGHTS, INPUTS, AUGMENT, STOP, OPTIMISATION, REGIME)


def setting(default, group: str, help: str, *, metavar: str | None = None,
            valid: Range | None = None, choices: tuple | None = None, vary: str | None = None,
            sweep: bool = False, needs: str | None = None, core: bool = False):
    """A Config field and its metadata (and `kind`, its type: that of the default):
    group    the --help section its flag shows in (GROUPS orders them)
    help     what it does (--help appends the default and the presets that set it)
    valid    the valid range (validate() refuses values outside it), or `choices`
    vary     "program": may differ between models in one compiled program (a knob, given
             to the compiled functions as an array); "host": may differ, applied by the host
             loop per model; None: structural, shared by the models of one program
    sweep    sweep.py can vary it (--knob)
    needs    the switch without which it has no effect (a flag given without it is refused)
    core     one of the baseline's own settings (the techniques table lists its flag)"""
    return dataclasses.field(default=default, metadata=dict(
        kind=type(default), group=group, help=help, metavar=metavar, valid=valid,
        choices=choices, vary=vary, sweep=sweep, needs=needs, core=core))
