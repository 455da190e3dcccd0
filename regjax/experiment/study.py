"""A study as one plan: techniques x a grid of knob values x data regimes (training rows x
label noise) x seeds. Every model whose program is the same (Config.structure: the same
layers and loss terms, the same number of rows) is trained in one compiled program, whatever
its technique's knob values, label noise or seed; so the map costs a few programs, and each
model trains exactly as compare.py trains it in that regime (the same program for it, its own
rows and labels, its own key tree).

The plain network (the baseline preset, no grid point) is trained in every regime: each
cell of the report is a setting's difference from it in the same regime.

Nothing here starts JAX: a bad study is refused before anything trains.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Mapping

from regjax.config import FIELDS, Config, combination_problems, field_problems, value_problem
from regjax.experiment.plan import (
    Batch,
    Plan,
    as_list,
    given_twice,
    seed_range,
    split_settings,
    technique_names,
    with_value,
)
from regjax.presets import AUGMENT_STRENGTH, PRESETS, TECHNIQUES, preset
from regjax.reports.names import cell_name, point_name, regime_name

REFERENCE = "baseline"
REGIME_FIELDS = ("train_size", "label_noise")  # given as the study's regimes, not in the grid
# Technique groups a study may name instead of listing techniques.
FAMILIES = {"all": TECHNIQUES,
            "mlp": tuple(t for t in TECHNIQUES if PRESETS[t].config.model == "mlp"),
            "cnn": tuple(t for t in TECHNIQUES if PRESETS[t].config.model == "cnn")}


def grid_knobs() -> tuple[str, ...]:
    """The knobs a grid may vary: every number that may differ between the models of one
    program (config.KNOBS, and the host-side epochs and early-stopping numbers), and the
    augmentation preset's strength; not the seed or the regime, which have flags of their own."""
    numeric = [name for name, f in FIELDS.items()
               if f.metadata["vary"] is not None and f.metadata["kind"] in (int, float)
               and name not in ("seed", *REGIME_FIELDS)]
    return (*numeric, AUGMENT_STRENGTH)


def check_grid(grid) -> dict[str, list]:
    """The grid's knobs and values as numbers, after refusing an unknown knob, one that is
    structural or a regime, an empty or repeated value list, and a value outside the knob's
    valid range (the user's mistake, refused as train.py refuses the same value; a value
    that makes no sense for one technique is left out instead: settings_of). A single
    number is a list of one."""
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a dict {{knob: values}}, got {type(grid).__name__} "
                        f"{grid!r}")
    knobs = grid_knobs()
    checked = {}
    for knob, values in grid.items():
        if knob in REGIME_FIELDS:
            raise ValueError(f"grid: {knob} is a data regime; give it as "
                             f"--{knob.replace('_', '-')} (train_sizes/label_noises in Python)")
        if knob == "seed":
            raise ValueError("grid: seed is not a knob; give the number of seeds (--seeds)")
        if knob in FIELDS and knob not in knobs:
            raise ValueError(f"grid: {knob} is structural (it changes the compiled program, "
                             "so it cannot vary between the models of one); run a study per "
                             "value, or choose one of " + ", ".join(knobs))
        if knob not in knobs:
            close = difflib.get_close_matches(str(knob), knobs, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ValueError(f"grid: unknown knob {knob!r}; {hint}choose from "
                             + ", ".join(knobs))
        values = as_list(f"grid[{knob!r}]", values)
        if not values:
            raise ValueError(f"grid: {knob} has no values")
        if given_twice(values):
            raise ValueError(f"grid: {knob} value(s) {', '.join(map(repr, given_twice(values)))} "
                             "given more than once")
        if knob in FIELDS and FIELDS[knob].metadata["kind"] is int:
            if any(not math.isfinite(v) or float(v) != int(v) for v in values):
                raise ValueError(f"grid: {knob} takes whole numbers, got {values}")
            values = [int(v) for v in values]
        else:
            values = [float(v) for v in values]
        for value in values:
            problem = value_problem(knob, value) if knob in FIELDS else \
                None if math.isfinite(value) and value >= 0 else \
                f"{knob} must be a finite number >= 0, got {value!r}"
            if problem is not None:
                raise ValueError(f"grid: {problem}")
        checked[knob] = values
    return checked


def regime_values(name: str, values, whole: bool) -> list:
    values = as_list(name, values)
    if not values:
        raise ValueError(f"{name}: give at least one value")
    if whole and any(float(v) != int(v) for v in values):
        raise ValueError(f"{name}: whole numbers of rows (0: all of them), got "
                         f"{', '.join(map(str, values))}")
    values = [int(v) if whole else float(v) for v in values]
    if given_twice(values):
        raise ValueError(f"{name}: {', '.join(map(str, given_twice(values)))} given more than "
                         "once")
    return values


def left_out_reason(technique: str, point: dict, config: Config) -> str | None:
    """Why a grid point makes no sense for a technique (None when it does): a knob whose
    switch the technique lacks, or values that exclude each other."""
    for knob in point:
        needs = "augment" if knob == AUGMENT_STRENGTH else FIELDS[knob].metadata["needs"]
        if needs is not None and not getattr(config, needs):
            return f"{knob} needs {needs}, which {technique} does not use"
    return "; ".join(combination_problems(config)) or None


def settings_of(techniques: list[str], grid: dict[str, list], overrides: dict):
    """[(setting name, technique, point, config at seed 0 on all rows)] in order, the plain
    network first, and [(technique, point, why)] of the combinations left out. A setting
    that trains the same models as an earlier one (a grid point equal to the technique's
    own value of the plain network, say) is left out as a repeat."""
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    settings = [(REFERENCE, REFERENCE, {}, preset(REFERENCE, **overrides))]
    left_out = []
    for technique in techniques:
        base = preset(technique, **overrides)
        for point in points or [{}]:
            config = base
            for knob, value in point.items():
                config = with_value(config, knob, value)
            wrong = field_problems(config)  # e.g. augment_strength scaling a range past its
            if wrong:  # bound: a value the user must change, not a combination to skip
                raise ValueError(f"grid: {point_name(point)} makes {technique}'s "
                                 + "; ".join(wrong))
            why = left_out_reason(technique, point, config)
            same = next((name for name, _, _, c in settings if c == config), None)
            if why is None and same is not None:
                why = f"the same models as {same}"
            if why is not None:
                left_out.append((technique, point, why))
                continue
            name = f"{technique} {point_name(point)}" if point else technique
            settings.append((name, technique, point, config))
    return settings, left_out


def study_plan(techniques="all", grid: dict | None = None, train_sizes=(0,),
               label_noises=(0.0,), seeds: int = 5, *, command: str, **settings) -> Plan:
    """Every technique (a list, or "all", "mlp", "cnn") at every point of `grid` ({knob:
    values}, a full product), in every regime (train_sizes x label_noises; train size 0: all
    rows), over seeds 0..seeds-1, as one plan: one compiled program per structure and
    number of rows. `settings`: Config fields set in every run and Plan fields."""
    names = technique_names(techniques, tuple(FAMILIES))
    names = list(FAMILIES[names]) if isinstance(names, str) else names
    if not names:
        raise ValueError("techniques: give at least one")
    if given_twice(names):
        raise ValueError(f"techniques: {', '.join(given_twice(names))} given more than once")
    for name in names:
        preset(name)  # an unknown name is refused, naming the closest
    grid = check_grid(grid or {})
    sizes = regime_values("train_sizes", train_sizes, whole=True)
    noises = regime_values("label_noises", label_noises, whole=False)
    overrides, how = split_settings(settings)
    given_regime = sorted(set(overrides) & set(REGIME_FIELDS))
    if given_regime:
        raise ValueError(f"{', '.join(given_regime)}: a study's regimes are train_sizes and "
                         "label_noises")
    chosen, left_out = settings_of([n for n in names if n != REFERENCE], grid, overrides)
    if len(chosen) == 1:  # the plain network alone: no cell of the map to fill
        if left_out:
            raise ValueError(f"grid: no point of the grid applies to {', '.join(names)} "
                             f"({left_out[0][2]}); give knobs these techniques use")
        raise ValueError(f"techniques: each cell of a study is a technique's difference from "
                         f"the plain network ({REFERENCE}); give a technique besides it")
    regimes = list(itertools.product(sizes, noises))
    cells: dict[str, list] = {}
    programs: dict[Config, list] = {}  # structure -> members, in order of first appearance
    for (setting, technique, point, config), (size, noise) in itertools.product(chosen, regimes):
        cell = cell_name(setting, regime_name(size, noise))
        cells[cell] = [setting, size, noise]
        for seed in seed_range(seeds):
            model = dataclasses.replace(config, train_size=size, label_noise=noise,
                                        seed=seed).validate()
            programs.setdefault(model.structure(), []).append((cell, model))
    batches = tuple(Batch(program_label(members), tuple(members))
                    for members in programs.values())
    about = {"seeds": seeds, "study": {
        "techniques": names, "grid": grid, "train_sizes": sizes, "label_noises": noises,
        "reference": REFERENCE, "settings": {name: {"technique": t, "point": p}
                                             for name, t, p, _ in chosen},
        "cells": cells, "programs": len(batches),
        "left_out": [{"technique": t, "point": p, "why": why} for t, p, why in left_out]}}
    return Plan(batches, "study", about, command, **how)


def program_label(members: list) -> str:
    """A program's name on the progress bar: its settings (the first two) and rows."""
    settings = list(dict.fromkeys(cell.split(" @ ")[0] for cell, _ in members))
    more = f" +{len(settings) - 2}" if len(settings) > 2 else ""
    return f"{', '.join(settings[:2])}{more} (n={members[0][1].train_size or 'all'})"
