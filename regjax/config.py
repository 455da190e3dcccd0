"""One frozen config describes a run. Every field is written once, here, with what the rest of
regjax needs to know about it: its help text, its valid range, the flag group it shows in, and
how it may vary between models trained together. The command-line flags, the validation
messages, --help, sweep's knob list and the README's techniques table are derived from it.

A technique is data, not a code path: every knob can be combined with every other (dropout
plus l2 plus augmentation is one valid run). The notebook's set-ups are regjax.presets.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from regjax.fields import (
    AUGMENT,
    NONNEGATIVE,
    POSITIVE_INT,
    RATE,
    REGIME,
    STOP,
    UNIT,
    Range,
    setting,
)

# MNIST-style data: 28x28 grayscale images of 10 classes.
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
MAX_SEED = 2**31 - 1  # the program takes the seed as an int32
FLOAT32_MAX = float(np.finfo(np.float32).max)  # knobs reach the program as float32


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of one training run, validated by `validate()`; regjax.preset(name)
    gives the notebook's set-ups. Immutable: derive variants with dataclasses.replace."""

    # Fields of one group are listed together; --help shows the groups in this order.
    model: str = setting("mlp", "model", "mlp (Dense stack) or cnn (Conv 3x3, MaxPool, Dense "
                         "stack)", choices=("mlp", "cnn"))
    hidden: tuple[int, ...] = setting((128, 64), "model", "sizes of the hidden Dense layers",
                                      metavar="N,N", core=True)
    dropout: float = setting(0.0, "model", "Dropout rate after each hidden ReLU",
                             metavar="RATE", valid=RATE, vary="program", sweep=True)
    spatial_dropout: float = setting(
        0.0, "model", "CNN only: whole feature maps of the convolution dropped with this rate "
        "(keras.layers.SpatialDropout2D)", metavar="RATE", valid=RATE, vary="program",
        sweep=True)
    batchnorm: bool = setting(False, "model", "BatchNormalization after each hidden ReLU "
                              "(momentum 0.99, epsilon 1e-3)")
    l1: float = setting(0.0, "loss", "loss += L1 * sum|w| over the hidden kernels",
                        metavar="L1", valid=NONNEGATIVE, vary="program", sweep=True)
    l2: float = setting(0.0, "loss", "loss += L2 * sum w^2 over the hidden kernels",
                        metavar="L2", valid=NONNEGATIVE, vary="program", sweep=True)
    label_smoothing: float = setting(0.0, "loss", "targets * (1 - S) + S / 10", metavar="S",
                                     valid=UNIT, vary="program", sweep=True)
    weight_decay: float = setting(
        0.0, "weights (Keras optimizer semantics)", "AdamW's decoupled decay: every weight "
        "w -= w * WD * LR before each update (keras.optimizers.AdamW)", metavar="WD",
        valid=NONNEGATIVE, vary="program", sweep=True)
    max_norm: float = setting(
        0.0, "weights (Keras optimizer semantics)", "after each update, each hidden unit's "
        "incoming weights rescaled to norm <= C (keras.constraints.MaxNorm(C, axis=0); 0: off)",
        metavar="C", valid=NONNEGATIVE, vary="program", sweep=True)
    ema: float = setting(
        0.0, "weights (Keras optimizer semantics)", "a moving average of the weights with this "
        "momentum (Keras' use_ema=True) replaces them when training ends; validation during "
        "training sees the raw weights, as in Keras (0: off)", metavar="MOMENTUM",
        valid=RATE, vary="program", sweep=True)
    gaussian_noise: float = setting(
        0.0, "inputs", "N(0, S) noise added to every input pixel (in [0, 1]) in training, a "
        "fresh draw every step (keras.layers.GaussianNoise)", metavar="S", valid=NONNEGATIVE,
        vary="program", sweep=True)
    mixup: float = setting(
        0.0, "inputs", "MixUp: each training image and its target blended with another's of "
        "the batch, weights from Beta(ALPHA, ALPHA) (keras.layers.MixUp; 0: off)",
        metavar="ALPHA", valid=NONNEGATIVE, vary="program", sweep=True)
    cutmix: float = setting(
        0.0, "inputs", "CutMix: a random box of another training image of the batch pasted "
        "into each, targets mixed by the box's area; FACTOR bounds the Beta parameter "
        "(keras.layers.CutMix; 0: off)", metavar="FACTOR", valid=UNIT, vary="program",
        sweep=True)
    random_erasing: float = setting(
        0.0, "inputs", "RandomErasing: a random box of a training image replaced by N(0, 1) "
        "noise, each image with probability ~ U(0, FACTOR), so FACTOR / 2 on average, as Keras "
        "computes it (keras.layers.RandomErasing; 0: off)", metavar="FACTOR", valid=UNIT,
        vary="program", sweep=True)
    augment: bool = setting(False, AUGMENT, "a random affine transform of every "
                            "training image, every step")
    rotation_range: float = setting(10.0, AUGMENT, "rotation drawn from [-DEG, DEG] degrees",
                                    metavar="DEG", valid=NONNEGATIVE, vary="program",
                                    needs="augment")
    shift_range: float = setting(
        0.1, AUGMENT, "shift drawn from [-F, F]: under 1 a fraction of the height and width, 1 "
        "or more pixels, as ImageDataGenerator reads it", metavar="F", valid=NONNEGATIVE,
        vary="program", needs="augment")
    shear_range: float = setting(0.2, AUGMENT, "shear drawn from [-DEG, DEG] degrees",
                                 metavar="DEG", valid=NONNEGATIVE, vary="program",
                                 needs="augment")
    zoom_range: float = setting(0.2, AUGMENT, "zoom per axis drawn from [1-Z, 1+Z]",
                                metavar="Z", valid=RATE, vary="program", needs="augment")
    early_stopping: bool = setting(False, STOP, "stop when val_loss has not improved for "
                                   "PATIENCE epochs", vary="host")
    patience: int = setting(3, STOP, "epochs without improvement before stopping",
                            metavar="N", valid=Range(0), vary="host", needs="early_stopping")
    min_delta: float = setting(0.0, STOP, "smallest decrease of val_loss that counts as an "
                               "improvement", metavar="D", valid=NONNEGATIVE, vary="host",
                               needs="early_stopping")
    restore_best_weights: bool = setting(False, STOP, "at the end, restore the weights of the "
                                         "epoch with the lowest val_loss", vary="host",
                                         needs="early_stopping")
    epochs: int = setting(20, "optimisation", "maximum epochs", metavar="N",
                          valid=POSITIVE_INT, vary="host", core=True)
    batch_size: int = setting(64, "optimisation", "rows per training step", metavar="N",
                              valid=POSITIVE_INT, core=True)
    learning_rate: float = setting(1e-3, "optimisation", "Adam's learning rate (b1 0.9, b2 "
                                   "0.999, epsilon 1e-7, Keras' form)", metavar="LR",
                                   valid=Range(0.0, low_open=True), vary="program",
                                   sweep=True, core=True)
    validation: str = setting(
        "split", "optimisation", "split: the last 20% of the training rows validate (Keras' "
        "validation_split=0.2); test: train on all rows, validate on the test split",
        choices=("split", "test"))
    seed: int = setting(0, "optimisation", "seeds initialisation, shuffling, dropout and "
                        "augmentation", metavar="N", valid=Range(0, MAX_SEED), vary="program",
                        core=True)
    # The data regime: drawn from the seed; regjax.data.model_data applies it. A model's
    # training rows are its own, but their number is shared by the models of one program.
    train_size: int = setting(
        0, REGIME, "train on a random N of the training rows, drawn before the validation "
        "split (which then takes the last 20% of the N); 0: all", metavar="N", valid=Range(0),
        sweep=True)
    label_noise: float = setting(
        0.0, REGIME, "replace each training label, with probability P, by a random other "
        "class (validation and test labels stay clean)", metavar="P", valid=UNIT,
        vary="host", sweep=True)

    def __post_init__(self):
        # A list of hidden sizes is a tuple here: a Config is hashable (a static argument
        # of the compiled program) and compares equal to one built from a tuple.
        if isinstance(self.hidden, (list, np.ndarray)):
            object.__setattr__(self, "hidden", tuple(self.hidden))

    def validate(self) -> "Config":
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

    def structure(self) -> "Config":
        """The config of the compiled program that trains this one among others: every knob
        (KNOBS) that is on set to 1 and every host-side setting to its default, so that models
        which differ only in knob values, seeds or epochs share one program (and one trace)
        while the knobs' values come in as arrays."""
        return dataclasses.replace(
            self, **{name: type(getattr(self, name))(bool(getattr(self, name)))
                     for name in KNOBS if name != "seed"},
            seed=0, **{name: getattr(DEFAULTS, name) for name in HOST_SIDE})

    @classmethod
    def from_dict(cls, fields: dict) -> "Config":
        """The inverse of to_dict, also for its JSON form (where `hidden` is a list); raises
        ValueError naming fields it does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(fields, dict) or set(fields) - names:
            unknown = sorted(set(fields) - names) if isinstance(fields, dict) else fields
            raise ValueError(f"not a regjax config: unknown fields {unknown}")
        return cls(**fields)


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
    meta, kind = field.metadata, field.type
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        return f"{name} must be a whole number, got {value!r}"
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"{name} must be a number, got {value!r}"
        if name != "min_delta" and not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
            return (f"{name} must be a finite number (float32: |x| <= 3.4e38), got "
                    f"{value!r}")
    if kind == "bool" and not isinstance(value, (bool, np.bool_)):
        return f"{name} must be True or False, got {value!r}"
    if kind == "str" and not isinstance(value, str):
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
    """Settings that are each valid but make no sense together."""
    problems = []
    if config.spatial_dropout and config.model != "cnn":
        problems.append("spatial dropout drops whole feature maps of the convolution: it "
                        "needs model cnn")
    if config.cutmix and config.mixup:
        problems.append("mixup and cutmix each mix a batch's rows: use one of them")
    return problems


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
# The settings that may differ between models trained together in one compiled program (one
# value per model there): the compiled functions take them as arguments (regjax.train.step.Knobs).
KNOBS = tuple(name for name, f in FIELDS.items() if f.metadata["vary"] == "program")
# Settings the host applies per model; they may differ between models too.
HOST_SIDE = tuple(name for name, f in FIELDS.items() if f.metadata["vary"] == "host")
DEFAULTS = Config()
