"""How a results record names what it holds: a knob's value, a sweep's group, a study's grid
point, regime and cell. The plans write the names (regjax.experiment) and the reports read
them, so both take them from here."""

from __future__ import annotations


def value_text(value: float) -> str:
    """A knob's value as short as %g writes it where that is exact (0.001), else in full
    (0.0010000001), so that no two values read the same."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def group_name(knob: str, value: float) -> str:
    """The name of a value's group in results.json: `knob=value` (value_text)."""
    return f"{knob}={value_text(value)}"


def point_name(point: dict) -> str:
    """A grid point: `dropout=0.25 l2=0.0001`."""
    return " ".join(f"{k}={value_text(v)}" for k, v in point.items())


def regime_name(train_size: int, label_noise: float) -> str:
    """A regime as the report names it: `n=2000 noise=0.2` (n=all: every training row)."""
    return f"n={train_size or 'all'} noise={value_text(label_noise)}"


def cell_name(setting: str, regime: str) -> str:
    """The name of a cell's group in results.json."""
    return f"{setting} @ {regime}"
