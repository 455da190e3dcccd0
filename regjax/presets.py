"""The notebook's set-ups as named presets of a Config, each with the one-line description
that --help and the README's techniques table show (tests/test_config.py checks the README).

Each is the baseline MLP (Dense 128-64-10, Adam, batch 64, 20 epochs, validation_split=0.2)
plus what its section of the notebook adds; Part 2 adds the regularizers a reader meets next,
each at its Keras 3 reference's default or most common setting. Every technique declares its
own presets in its module (regjax.techniques); here they are gathered, the baseline first,
then by part and rank (the notebook's order).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import NamedTuple

from regjax.config import DEFAULTS, FIELDS, Config
from regjax.techniques import TECHNIQUES as ALL_TECHNIQUES


class Preset(NamedTuple):
    config: Config
    summary: str  # one line, for --help and the README
    part: int  # 1: the notebook's own techniques; 2 and 3: the ones a reader meets next


def _gather() -> dict[str, Preset]:
    declared = sorted(((p.part, p.rank, name, p) for t in ALL_TECHNIQUES
                       for name, p in t.presets.items()), key=lambda d: d[:2])
    presets = {"baseline": Preset(Config(), "Dense 128-64-10, Adam, batch 64, 20 epochs, "
                                  "last 20% of train validates", 1)}
    for part, _, name, p in declared:
        if name in presets:
            raise ValueError(f"preset {name} is declared twice")
        presets[name] = Preset(Config(**p.settings), p.summary, part)
    return presets


PRESETS: dict[str, Preset] = _gather()
TECHNIQUES = tuple(PRESETS)
# Part 1, the notebook's own techniques; the others are Part 2, the ones a reader meets next.
NOTEBOOK = tuple(name for name, p in PRESETS.items() if p.part == 1)
# sweep.py's pseudo-knob for the augmentation preset: its four ranges scaled together.
AUGMENT_STRENGTH = "augment_strength"
SWEEP_KNOBS = (*(name for name, f in FIELDS.items() if f.metadata["sweep"]), AUGMENT_STRENGTH)


def preset(technique: str, **overrides) -> Config:
    """The preset named `technique` with `overrides` applied, validated."""
    if technique not in PRESETS:
        close = difflib.get_close_matches(technique, TECHNIQUES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown technique {technique!r}{hint}; choose one of {', '.join(TECHNIQUES)}")
    return dataclasses.replace(PRESETS[technique].config, **overrides).validate()


def changes(technique: str) -> list[str]:
    """The fields a preset sets to other than their defaults, in field order."""
    config = PRESETS[technique].config
    return [name for name in FIELDS if getattr(config, name) != getattr(DEFAULTS, name)]


def set_by(name: str) -> dict[str, object]:
    """{preset: value} for the presets that change the field `name` (--help shows them)."""
    return {t: getattr(p.config, name) for t, p in PRESETS.items() if name in changes(t)}


def own_knob(technique: str) -> str | None:
    """What sweep.py varies for `technique` by default: the one sweepable field it sets (the
    augmentation preset's strength for the augmentation preset), or None."""
    if PRESETS[technique].config.augment:
        return AUGMENT_STRENGTH
    own = [name for name in changes(technique) if FIELDS[name].metadata["sweep"]]
    return own[0] if len(own) == 1 else None


def flag(name: str) -> str:
    """The command-line flag of a Config field."""
    return "--" + name.replace("_", "-")


def preset_flags(technique: str) -> list[str]:
    """The flags of what a preset sets, with the settings that act only through them (the
    baseline: its own core settings)."""
    names = changes(technique) or [n for n, f in FIELDS.items() if f.metadata["core"]]
    names += [n for n, f in FIELDS.items() if f.metadata["needs"] in names]
    return [flag(n) for n in names]


def techniques_table() -> str:
    """The techniques as a markdown table (the README shows it)."""
    rows = [f"| `{name}` | {p.summary} | " + ", ".join(f"`{f}`" for f in preset_flags(name))
            + " |" for name, p in PRESETS.items()]
    return "\n".join(["| technique | what it trains | flags |", "|---|---|---|", *rows])
