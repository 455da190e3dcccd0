"""One frozen config describes a run. Its fields are the core ones written here (the model,
the optimisation, the validation, the seed, the data regime) and every technique's own,
declared in the technique's module (regjax.techniques): each with what the rest of regjax
needs to know about it, its help text, its valid range, the flag group it shows in, and how
it may vary between models trained together. The command-line flags, the validation
messages, --help, sweep's knob list and the README's techniques table are derived from it.

A technique is data, not a code path: every knob can be combined with every other (dropout
plus l2 plus augmentation is one valid run). The notebook's set-ups are regjax.presets.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import numbers

import numpy as np

from regjax.fields import (
    GROUPS,
    MODEL,
    OPTIMISATION,
    POSITIVE_INT,
    REGIME,
    UNIT,
    Range,
    setting,
)
from regjax.techniques import TECHNIQUES

MAX_SEED = 2**31 - 1  # the program takes the seed as an int32
FLOAT32_MAX = float(np.finfo(np.float32).max)  # knobs reach the program as float32
# The registered models (regjax.models), each with the slots where it places the layers of
# the techniques (regjax.techniques.base); CUSTOM is a model given as a function (`model=` in
# Python), which the command line cannot take.
MODELS = {"mlp": ("hidden",), "cnn": ("hidden", "maps"), "resnet": ("residual",)}
CUSTOM = "custom"

CORE = {
    "model": setting("mlp", MODEL, "mlp (Dense stack), cnn (Conv 3x3, MaxPool, Dense stack) or "
                     "resnet (a small residual CNN: 3 stages of 2 blocks, 16/32/64 filters)",
                     choices=(*MODELS, CUSTOM)),
    "hidden": setting((128, 64), MODEL, "sizes of the hidden Dense layers", metavar="N,N",
                      core=True),
    "epochs": setting(20, OPTIMISATION, "maximum epochs", metavar="N", valid=POSITIVE_INT,
                      vary="host", core=True),
    "batch_size": setting(64, OPTIMISATION, "rows per training step", metavar="N",
                          valid=POSITIVE_INT, core=True),
    "learning_rate": setting(1e-3, OPTIMISATION, "Adam's learning rate (b1 0.9, b2 0.999, "
                             "epsilon 1e-7, Keras' form)", metavar="LR",
                             valid=Range(0.0, low_open=True), vary="program", sweep=True,
                             core=True),
    "validation": setting(
        "split", OPTIMISATION, "split: the last 20% of the training rows validate (Keras' "
        "validation_split=0.2); test: train on all rows, validate on the test split",
        choices=("split", "test")),
    "seed": setting(0, OPTIMISATION, "seeds initialisation, shuffling, dropout and "
                    "augmentation", metavar="N", valid=Range(0, MAX_SEED), vary="program",
                    core=True),
    # The data regime: drawn from the seed; regjax.data.model_data applies it. A model's
    # training rows are its own, but their number is shared by the models of one program.
    "train_size": setting(
        0, REGIME, "train on a random N of the training rows, drawn before the validation "
        "split (which then takes the last 20% of the N); 0: all", metavar="N",
        valid=Range(0), sweep=True),
    "label_noise": setting(
        0.0, REGIME, "replace each training label, with probability P, by a random other "
        "class (validation and test labels stay clean)", metavar="P", valid=UNIT,
        vary="host", sweep=True),
}


def declared_fields() -> list[tuple[str, dataclasses.Field]]:
    """Every field, core and techniques', in the order of their --help sections (GROUPS,
    then sections of the techniques' own), techniques in their order within a section."""
    fields = list(CORE.items())
    for technique in TECHNIQUES:
        for name, field in technique.fields.items():
            if name in CORE or name in dict(fields):
                raise ValueError(f"technique {technique.name}: field {name} is declared twice")
            fields.append((name, field))
    groups = list(dict.fromkeys([*GROUPS, *(f.metadata["group"] for _, f in fields)]))
    return sorted(fields, key=lambda item: groups.index(item[1].metadata["group"]))


class ConfigMethods:
    """What a Config does; its fields are declared_fields()."""

    def __post_init__(self):
        # A list of hidden sizes is a tuple here: a Config is hashable (a static argument
        # of the compiled program) and compares equal to one built from a tuple.
        if isinstance(self.hidden, (list, np.ndarray)):
            object.__setattr__(self, "hidden", tuple(self.hidden))

    def validate(self):
        """Returns self, or raises ValueError naming each bad field and its valid range, and
        each pair of settings that exclude each other."""
        problems = field_problems(self)
        if not problems:  # the rules between fields assume each field is of its kind
            problems = combination_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def structure(self):
        """The config of the compiled program that trains this one among others: every knob
        (KNOBS) that is on set to 1 and every host-side setting to its default, so that models
        which differ only in knob values, seeds or epochs share one program (and one trace)
        while the knobs' values come in as arrays (Knobs)."""
        return dataclasses.replace(
            self, **{name: type(getattr(self, name))(bool(getattr(self, name)))
                     for name in KNOBS if name != "seed"},
            seed=0, **{name: getattr(DEFAULTS, name) for name in HOST_SIDE})

    @classmethod
    def from_dict(cls, fields: dict):
        """The inverse of to_dict, also for its JSON form (where `hidden` is a list); raises
        ValueError naming fields it does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(fields, dict) or set(fields) - names:
            unknown = sorted(set(fields) - names) if isinstance(fields, dict) else fields
            raise ValueError(f"not a regjax config: unknown fields {unknown}")
        return cls(**fields)


Config = dataclasses.make_dataclass(
    "Config", [(name, field.metadata["kind"], field) for name, field in declared_fields()],
    bases=(ConfigMethods,), frozen=True)
Config.__module__ = __name__
Config.__doc__ = """Every setting of one training run, validated by `validate()`;
regjax.preset(name) gives the notebook's set-ups. Immutable: derive variants with
dataclasses.replace. Fields: the core ones (regjax.config.CORE) and each technique's
(regjax.techniques)."""


def as_config(value, name: str = "config") -> Config:
    """`value` if it is a Config; else a TypeError naming the argument and how to make one."""
    if isinstance(value, Config):
        return value
    hint = (f"; make one with regjax.preset('baseline', **{value!r})" if isinstance(value, dict)
            else "; make one with regjax.preset(technique, **overrides)")
    raise TypeError(f"{name} must be a regjax.Config, got {type(value).__name__}{hint}")


def value_problem(name: str, value) -> str | None:
    """What is wrong with `value` for the field `name`, as "NAME must be ..., got VALUE", or
    None. Its kind first: a whole number where one is needed (epochs=1.5), a finite float32
    for every number (inf, nan and 1e300 are refused, naming the field; but min_delta, which
    stays on the host, may be inf as in Keras), a bool for a switch, positive whole numbers
    for the hidden sizes; then its valid range or choices. Config.validate and a study's
    grid (regjax.experiment.study) check values with it."""
    field = FIELDS[name]
    meta, kind = field.metadata, field.metadata["kind"]
    if kind is int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        return f"{name} must be a whole number, got {value!r}"
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"{name} must be a number, got {value!r}"
        if name != "min_delta" and not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
            return (f"{name} must be a finite number (float32: |x| <= 3.4e38), got "
                    f"{value!r}")
    if kind is bool and not isinstance(value, (bool, np.bool_)):
        return f"{name} must be True or False, got {value!r}"
    if kind is str and not isinstance(value, str):
        return f"{name} must be a string, got {value!r}"
    if name == "hidden" and not (isinstance(value, tuple) and value and all(
            isinstance(h, numbers.Integral) and not isinstance(h, bool) and h >= 1
            for h in value)):
        return f"hidden sizes must be positive integers, got {value!r}"
    if meta["valid"] is not None and value not in meta["valid"]:
        return f"{name} must be {meta['valid']}, got {value!r}"
    if meta["choices"] is not None and value not in meta["choices"]:
        return f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}"
    return None


def field_problems(config: Config) -> list[str]:
    """Each field's value_problem."""
    return [problem for name in FIELDS
            if (problem := value_problem(name, getattr(config, name))) is not None]


def combination_problems(config: Config) -> list[str]:
    """Settings that are each valid but make no sense together: a technique on a model it
    cannot act in, or two techniques that exclude each other."""
    problems = []
    active = [t for t in TECHNIQUES if t.on(config)]
    for technique in active:
        # A user's model is checked for the technique's layers when it is built instead.
        if technique.models is not None and config.model not in (*technique.models, CUSTOM):
            problems.append(f"{technique.acts_on}: it needs model "
                            f"{' or '.join(technique.models)}")
        elif technique.layers and config.model != CUSTOM and \
                not set(technique.layers) & set(MODELS[config.model]):
            fits = [m for m, slots in MODELS.items() if set(technique.layers) & set(slots)]
            problems.append(f"{technique.name} places its layers where model {config.model} "
                            f"has no place for them: it needs model {' or '.join(fits)}")
        problems += [technique.excludes[other.name] for other in active
                     if other.name in technique.excludes]
    return list(dict.fromkeys(problems))  # a pair that excludes itself both ways: once


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
# The settings that may differ between models trained together in one compiled program (one
# value per model there): the compiled functions take them as arguments (Knobs).
KNOBS = tuple(name for name, f in FIELDS.items() if f.metadata["vary"] == "program")
# Settings the host applies per model; they may differ between models too.
HOST_SIDE = tuple(name for name, f in FIELDS.items() if f.metadata["vary"] == "host")
DEFAULTS = Config()


class Knobs(collections.namedtuple("Knobs", KNOBS)):
    """The settings that may differ between models trained together (KNOBS), as arrays:
    scalars for one model, one value per model along a leading axis for many. Every
    technique's hooks read their values here (knobs.dropout, knobs.l2, ...)."""

    __slots__ = ()

    @classmethod
    def of(cls, configs) -> "Knobs":
        """One config's knobs as scalars, or a list's stacked along a leading model axis."""
        many = isinstance(configs, list)
        values = configs if many else [configs]
        stacked = cls(*(np.asarray([getattr(c, name) for c in values],
                                   np.int32 if name == "seed" else np.float32)
                        for name in cls._fields))
        return stacked if many else cls(*(a[0] for a in stacked))
