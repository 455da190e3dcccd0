"""An experiment as data: which models to train (configs, grouped into settings and into
compiled programs) and how to run them (where the outputs go, resume, share, processes).
`compare_plan` and `sweep_plan` build the plans of compare.py and sweep.py (and of
regjax.compare and regjax.sweep); regjax.experiment.runner.run carries a plan out.

Nothing here starts JAX: the command line builds its plan, and refuses a bad one, at once.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from regjax.config import FIELDS, Config
from regjax.presets import AUGMENT_STRENGTH, PRESETS, SWEEP_KNOBS, TECHNIQUES, own_knob, preset
from regjax.reports.names import group_name, value_text

AUGMENT_RANGES = ("rotation_range", "shift_range", "shear_range", "zoom_range")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """How this process joins the others of a run (jax.distributed): all None lets JAX
    detect SLURM, Open MPI or Kubernetes."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    timeout: float = 120.0


class Batch(NamedTuple):
    """Models trained together as one compiled program: (setting name, config) each."""

    label: str
    members: tuple[tuple[str, Config], ...]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to train and how.

    batches      the compiled programs, in order; the settings (groups) of the report are the
                 members' names, in order of their first model
    kind         "compare" or "sweep": which report the results get
    about        what the results record besides the runs (seeds; a sweep's technique, knob,
                 values and number of programs)
    command      the command line (or Python call) that gives these results
    output_dir   where results.json, report.md, the plots and checkpoints/ go; None: nowhere
                 (the Python API; Results.save writes them later)
    shard        (I, N): train only share I of N of the models (regjax.experiment.shards)
    cluster      join other processes through jax.distributed, each training its share
    data, maker  a dataset and a model given in Python (regjax.compare(..., data=, model=))
    progress     show progress: None on a terminal only"""

    batches: tuple[Batch, ...]
    kind: str
    about: dict
    command: str
    dataset: str = "fashion_mnist"
    data_dir: Path | None = None
    download: bool = True
    data: object = None  # a Dataset given in Python (its name is `dataset`)
    maker: object = None  # a user's model (a function rngs -> nnx.Module), "custom" configs
    output_dir: Path | None = None
    resume: bool = False
    overwrite: bool = False
    shard: tuple[int, int] | None = None
    cluster: Cluster | None = None
    ensemble: bool = False
    progress: bool | None = None

    def configs(self) -> list[Config]:
        return [config for batch in self.batches for _, config in batch.members]

    def __post_init__(self):
        for name in ("output_dir", "data_dir"):  # a str or any os.PathLike, as a Path
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_path(name, value))
        if self.ensemble and (self.shard is not None or self.cluster is not None):
            raise ValueError("ensemble averages all of a technique's seeds, which shares and "
                             "processes split: run it in one process")
        if (self.shard is not None or self.cluster is not None) and self.output_dir is None:
            raise ValueError("a share writes its results.json: give an output directory")
        if self.resume and self.output_dir is None:
            raise ValueError("resume continues from the checkpoints in an output directory: "
                             "give one")


def as_path(name: str, value) -> Path:
    try:
        return Path(value)
    except TypeError:
        raise TypeError(f"{name} must be a path (a str or pathlib.Path), got "
                        f"{type(value).__name__} {value!r}") from None


def as_list(name: str, values) -> list:
    """`values` as a list of numbers: a list, tuple, range or array as it is, a single number
    as a list of one (as scikit-learn's parameter grids take one). A string, a mapping or
    anything else that is not numbers is refused with a TypeError naming `name`."""
    if isinstance(values, (numbers.Number, np.generic)) or (
            isinstance(values, np.ndarray) and values.ndim == 0):
        values = [values]
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a number or a list of numbers, got "
                        f"{type(values).__name__} {values!r}")
    values = list(np.asarray(values).tolist()) if isinstance(values, np.ndarray) else \
        list(values)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (numbers.Real, np.generic)) or \
                isinstance(v, (np.str_, np.bytes_)):
            raise TypeError(f"{name} must hold numbers, got {type(v).__name__} {v!r}")
    return values


def technique_names(techniques, groups=("all",)) -> list[str]:
    """A technique name, a group of them (`groups`: "all", and a study's "mlp" and "cnn")
    or a list of names, as a list of names; anything else is a TypeError."""
    if isinstance(techniques, str):
        return [techniques] if techniques not in groups else techniques
    if isinstance(techniques, Iterable) and not isinstance(techniques, Mapping):
        names = list(techniques)
        if all(isinstance(name, str) for name in names):
            return names
    raise TypeError(f"techniques must be a technique name, a list of them or one of "
                    f"{', '.join(map(repr, groups))}, got {type(techniques).__name__} "
                    f"{techniques!r}")


def given_twice(values: list) -> list:
    """The values that occur more than once in `values`, sorted: a setting listed twice
    would count its seeds twice in one group of a report."""
    return sorted({v for v in values if values.count(v) > 1})


def seed_range(seeds: int) -> range:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a whole number >= 1, got {seeds!r}")
    return range(seeds)


def compare_plan(techniques, seeds: int = 5, *, command: str, **settings) -> Plan:
    """Every technique over seeds 0..seeds-1, each technique's seeds one program. `settings`:
    Config fields set in every run (epochs, train_size, ...) and Plan fields."""
    names = technique_names(techniques)
    names = list(TECHNIQUES) if names == "all" else names
    if given_twice(names):
        raise ValueError(f"techniques: {', '.join(given_twice(names))} given more than once")
    overrides, how = split_settings(settings)
    batches = tuple(Batch(name, tuple((name, preset(name, seed=seed, **overrides))
                                      for seed in seed_range(seeds))) for name in names)
    return Plan(batches, "compare", {"seeds": seeds}, command, **how)


def sweep_values(knob: str, values) -> list:
    values = [float(v) for v in as_list("values", values)]
    if not values:
        raise ValueError("values: give at least one")
    if given_twice(values):
        raise ValueError(f"values: {', '.join(map(repr, given_twice(values)))} given more "
                         "than once")
    if knob == "train_size":
        if any(v != int(v) for v in values):
            raise ValueError(f"values: train_size takes whole numbers of rows, got {values}")
        return [int(v) for v in values]
    return values


def with_value(base: Config, knob: str, value: float) -> Config:
    """`base` with the knob at `value` (augment_strength scales the augmentation ranges)."""
    if knob == AUGMENT_STRENGTH:
        return dataclasses.replace(base, **{r: getattr(base, r) * value for r in AUGMENT_RANGES})
    return dataclasses.replace(base, **{knob: value})


def sweep_plan(technique: str, values, knob: str | None = None, seeds: int = 3, *,
               command: str, **settings) -> Plan:
    """One technique with `knob` (default: its own, presets.own_knob) at each of `values`,
    over seeds 0..seeds-1: one program, or one per value for train_size (models trained
    together share their number of rows)."""
    if technique not in PRESETS:
        preset(technique)  # raises, naming the closest technique
    knob = knob or own_knob(technique)
    if knob is None:
        raise ValueError(f"technique {technique!r} has no knob of its own; choose one of "
                         f"{', '.join(SWEEP_KNOBS)}")
    if knob not in SWEEP_KNOBS:
        raise ValueError(f"cannot sweep {knob!r}; choose one of {', '.join(SWEEP_KNOBS)}")
    values = sweep_values(knob, values)
    overrides, how = split_settings(settings)
    base = preset(technique, **overrides)
    if knob == AUGMENT_STRENGTH and not base.augment:
        raise ValueError(f"augment_strength needs augmentation; {technique!r} has none (use "
                         "technique augmentation)")
    members = tuple((group_name(knob, v), dataclasses.replace(with_value(base, knob, v),
                                                              seed=seed).validate())
                    for v in values for seed in seed_range(seeds))
    label = f"{technique}: {knob} in {','.join(map(value_text, values))}"
    batches = (Batch(label, members),)
    if knob == "train_size":
        batches = tuple(Batch(f"{technique}: {name}", tuple(m for m in members if m[0] == name))
                        for name in dict.fromkeys(name for name, _ in members))
    about = {"technique": technique, "knob": knob, "values": values, "seeds": seeds,
             "programs": len(batches)}
    return Plan(batches, "sweep", about, command, **how)


PLAN_FIELDS = {f.name for f in dataclasses.fields(Plan)} - {"batches", "kind", "about",
                                                            "command"}


def split_settings(settings: dict) -> tuple[dict, dict]:
    """(Config overrides, Plan fields) of keyword arguments; None values are left out."""
    given = {k: v for k, v in settings.items() if v is not None}
    unknown = sorted(set(given) - PLAN_FIELDS - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown settings {unknown}: give Config fields (regjax.Config) or "
                         f"{', '.join(sorted(PLAN_FIELDS))}")
    return ({k: v for k, v in given.items() if k not in PLAN_FIELDS},
            {k: v for k, v in given.items() if k in PLAN_FIELDS})
