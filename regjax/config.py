"""One frozen config describes a run; the notebook's set-ups are named presets of it.

A technique is data, not a code path: every knob below can be combined with every other
(dropout plus l2 plus augmentation is one valid run).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers

import numpy as np

# MNIST-style data: 28x28 grayscale images of 10 classes.
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of one training run, validated by `validate()`; `preset(name)` gives
    the notebook's set-ups. Immutable: derive variants with dataclasses.replace."""

    # model
    model: str = "mlp"  # "mlp" (Dense stack) or "cnn" (Conv 3x3 -> MaxPool -> Dense stack)
    hidden: tuple[int, ...] = (128, 64)  # sizes of the hidden Dense layers
    dropout: float = 0.0  # rate of the Dropout after each hidden ReLU
    spatial_dropout: float = 0.0  # CNN: rate of SpatialDropout2D on the convolution's maps
    batchnorm: bool = False  # BatchNormalization after each hidden ReLU
    # loss
    l1: float = 0.0  # loss += l1 * sum(|kernel|) over hidden kernels
    l2: float = 0.0  # loss += l2 * sum(kernel**2) over hidden kernels
    label_smoothing: float = 0.0  # targets * (1 - s) + s / 10
    # weights (Keras optimizer semantics)
    weight_decay: float = 0.0  # AdamW: w -= w * wd * lr before each update, every weight
    max_norm: float = 0.0  # > 0: MaxNorm(c, axis=0) on the hidden Dense kernels after each update
    ema: float = 0.0  # > 0: Keras' use_ema momentum; the average replaces the weights at the end
    # inputs
    gaussian_noise: float = 0.0  # stddev of N(0, s) noise added to the inputs in training
    mixup: float = 0.0  # > 0: MixUp's alpha (images and targets blended with Beta weights)
    cutmix: float = 0.0  # > 0: CutMix's factor (a box of another image pasted, in (0, 1])
    random_erasing: float = 0.0  # > 0: RandomErasing's factor (a box filled with noise)
    # on-device augmentation (Keras ImageDataGenerator semantics)
    augment: bool = False
    rotation_range: float = 10.0  # degrees
    shift_range: float = 0.1  # fraction of height and of width
    shear_range: float = 0.2  # degrees, as ImageDataGenerator reads it
    zoom_range: float = 0.2  # zoom factors drawn from [1 - z, 1 + z] per axis
    # early stopping on val_loss (Keras EarlyStopping semantics)
    early_stopping: bool = False
    patience: int = 3
    min_delta: float = 0.0
    restore_best_weights: bool = False
    # optimisation
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3  # Adam, b1 0.9, b2 0.999, epsilon 1e-7 (Keras' form)
    validation: str = "split"  # "split": last 20% of train; "test": train on all, validate on test
    seed: int = 0
    # data regime (drawn from the seed; regjax.data.model_data applies it)
    train_size: int = 0  # > 0: a random subset of this many training rows, before the split
    label_noise: float = 0.0  # training labels replaced by a random other class with this p

    def __post_init__(self):
        # A list of hidden sizes is a tuple here: a Config is hashable (a static argument
        # of the compiled program) and compares equal to one built from a tuple.
        if isinstance(self.hidden, (list, np.ndarray)):
            object.__setattr__(self, "hidden", tuple(self.hidden))

    def validate(self) -> "Config":
        """Returns self, or raises ValueError naming the bad knob and the valid range."""
        problems = type_problems(self)
        if problems:  # the ranges below assume numbers of the right kind
            raise ValueError("; ".join(problems))
        if self.model not in ("mlp", "cnn"):
            problems.append(f"model must be 'mlp' or 'cnn', got {self.model!r}")
        if not self.hidden or any(h < 1 for h in self.hidden):  # whole: type_problems
            problems.append(f"hidden sizes must be positive integers, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout rate must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.spatial_dropout < 1.0:
            problems.append(f"spatial dropout rate must be in [0, 1), got {self.spatial_dropout}")
        elif self.spatial_dropout and self.model != "cnn":
            problems.append("spatial dropout drops whole feature maps of the convolution: it "
                            "needs --model cnn")
        if not 0.0 <= self.cutmix <= 1.0:
            problems.append(f"cutmix factor must be in [0, 1], got {self.cutmix}")
        if not 0.0 <= self.ema < 1.0:
            problems.append(f"ema momentum must be in [0, 1), got {self.ema}")
        if not 0.0 <= self.random_erasing <= 1.0:
            problems.append(f"random erasing factor must be in [0, 1], got {self.random_erasing}")
        if self.cutmix and self.mixup:
            problems.append("mixup and cutmix each mix a batch's rows: use one of them")
        for name in ("l1", "l2", "weight_decay", "max_norm", "gaussian_noise", "mixup",
                     "min_delta", "rotation_range", "shift_range", "shear_range"):
            if not getattr(self, name) >= 0.0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.label_smoothing <= 1.0:
            problems.append(f"label smoothing must be in [0, 1], got {self.label_smoothing}")
        if not 0.0 <= self.zoom_range < 1.0:
            problems.append(f"zoom range must be in [0, 1), got {self.zoom_range}")
        if self.patience < 0:
            problems.append(f"patience must be >= 0, got {self.patience}")
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1, got {self.batch_size}")
        if not self.learning_rate > 0.0:
            problems.append(f"learning rate must be > 0, got {self.learning_rate}")
        if self.validation not in ("split", "test"):
            problems.append(f"validation must be 'split' or 'test', got {self.validation!r}")
        if not 0 <= self.seed <= MAX_SEED:
            problems.append(f"seed must be in 0..{MAX_SEED} (2**31 - 1), got {self.seed}")
        if self.train_size < 0:
            problems.append(f"train size must be a whole number of rows >= 0 (0: all), got "
                            f"{self.train_size}")
        if not 0.0 <= self.label_noise <= 1.0:
            problems.append(f"label noise must be in [0, 1], got {self.label_noise}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def structure(self) -> "Config":
        """The config of the compiled program that trains this one among others: every knob
        (config.KNOBS) that is on set to 1 and every host-side setting to its default, so
        that models which differ only in knob values, seeds or epochs share one program
        (and one trace) while the knobs' values come in as arrays."""
        return dataclasses.replace(
            self, **{name: type(getattr(self, name))(bool(getattr(self, name)))
                     for name in KNOBS if name != "seed"},
            seed=0, **{name: getattr(DEFAULTS, name) for name in HOST_SIDE})

    @classmethod
    def from_dict(cls, fields: dict) -> "Config":
        """The inverse of to_dict, also for its JSON form (where `hidden` is a list); raises
        ValueError naming fields it does not know or lacks."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(fields, dict) or set(fields) - names:
            unknown = sorted(set(fields) - names) if isinstance(fields, dict) else fields
            raise ValueError(f"not a regjax config: unknown fields {unknown}")
        return cls(**fields)


MAX_SEED = 2**31 - 1  # the program takes the seed as an int32
FLOAT32_MAX = float(np.finfo(np.float32).max)  # knobs reach the program as float32


def type_problems(config: Config) -> list[str]:
    """Fields of the wrong kind: a whole number where one is needed (epochs=1.5), a finite
    float32 for every number (inf, nan and 1e300 are refused here, naming the field; but
    min_delta, which stays on the host, may be inf as in Keras), a bool for a switch, a
    tuple of whole numbers for the hidden sizes."""
    problems = []
    for field in dataclasses.fields(Config):
        name, value = field.name, getattr(config, field.name)
        if field.type == "int":
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                problems.append(f"{name} must be a whole number, got {value!r}")
        elif field.type == "float":
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                problems.append(f"{name} must be a number, got {value!r}")
            elif name != "min_delta" and not (math.isfinite(value)
                                              and abs(value) <= FLOAT32_MAX):
                problems.append(f"{name} must be a finite number (float32: |x| <= 3.4e38), "
                                f"got {value!r}")
        elif field.type == "bool" and not isinstance(value, (bool, np.bool_)):
            problems.append(f"{name} must be True or False, got {value!r}")
        elif field.type == "str" and not isinstance(value, str):
            problems.append(f"{name} must be a string, got {value!r}")
    if not isinstance(config.hidden, tuple) or not all(
            isinstance(h, numbers.Integral) and not isinstance(h, bool) for h in config.hidden):
        problems.append(f"hidden sizes must be positive integers, got {config.hidden!r}")
    return problems


# The settings that may differ between models trained together in one compiled program (one
# value per model there): the compiled functions take them as arguments (regjax.train.step.Knobs).
KNOBS = ("seed", "l1", "l2", "dropout", "label_smoothing", "learning_rate", "rotation_range",
         "shift_range", "shear_range", "zoom_range", "weight_decay", "max_norm", "gaussian_noise",
         "spatial_dropout", "mixup", "cutmix", "random_erasing", "ema")
# Settings the host applies per model; they may differ between models too. (A model's
# training rows are its own under a data regime, but their number, train_size, is shared.)
HOST_SIDE = ("epochs", "early_stopping", "patience", "min_delta", "restore_best_weights",
             "label_noise")
DEFAULTS = Config()


@dataclasses.dataclass(frozen=True)
class Preset:
    config: Config
    summary: str  # one line, for --help
    flags: str  # the flags that set what it adds


# The notebook's set-ups. Each is the baseline MLP (Dense 128-64-10, Adam, batch 64,
# 20 epochs, validation_split=0.2) plus what its section of the notebook adds. The summaries
# are the one place these descriptions are written: --help shows them and the README's
# techniques table is checked against them (tests/test_config.py).
PRESETS: dict[str, Preset] = {
    "baseline": Preset(
        Config(), "Dense 128-64-10, Adam, batch 64, 20 epochs, last 20% of train validates",
        "--hidden, --epochs, --batch-size, --learning-rate, --seed"),
    "l1": Preset(Config(l1=1e-3), "baseline + l1(0.001) on the hidden kernels", "--l1"),
    "l2": Preset(Config(l2=1e-3), "baseline + l2(0.001) on the hidden kernels", "--l2"),
    "dropout": Preset(Config(dropout=0.25), "baseline + Dropout(0.25) after each hidden layer",
                      "--dropout"),
    "batchnorm": Preset(Config(batchnorm=True),
                        "baseline + BatchNormalization after each hidden layer", "--batchnorm"),
    "early_stopping": Preset(
        Config(early_stopping=True, patience=3, epochs=50),
        "baseline, up to 50 epochs, stops when val_loss stalls for 3 epochs",
        "--early-stopping, --patience, --min-delta, --restore-best-weights"),
    # Conv2D(32, 3x3) -> MaxPool 2x2 -> Dense(128) -> Dense(10), all 60,000 training rows,
    # validated on the test split.
    "augmentation": Preset(
        Config(model="cnn", hidden=(128,), augment=True, validation="test"),
        "CNN trained on randomly rotated, shifted, sheared and zoomed images, validated on test",
        "--augment, --rotation-range, --shift-range, --shear-range, --zoom-range, --model cnn"),
    "label_smoothing": Preset(
        Config(label_smoothing=0.1, validation="test"),
        "baseline with targets smoothed by 0.1, validated on test", "--label-smoothing"),
    # Part 2: the regularizers a reader meets next, each with its Keras 3 reference.
    "weight_decay": Preset(
        Config(weight_decay=0.004),
        "baseline trained with AdamW: decoupled weight decay 0.004 (Keras' default) on every "
        "weight", "--weight-decay"),
    "max_norm": Preset(
        Config(max_norm=3.0),
        "baseline + MaxNorm(3): each hidden unit's incoming weights rescaled to norm <= 3 "
        "after every update", "--max-norm"),
    "gaussian_noise": Preset(
        Config(gaussian_noise=0.1),
        "baseline + GaussianNoise(0.1) on the inputs: N(0, 0.1) added to every pixel in "
        "training", "--gaussian-noise"),
    "spatial_dropout": Preset(
        Config(model="cnn", hidden=(128,), spatial_dropout=0.2, validation="test"),
        "the augmentation preset's CNN, not augmented, + SpatialDropout2D(0.2): whole feature "
        "maps dropped", "--spatial-dropout, --model cnn"),
    "mixup": Preset(
        Config(mixup=0.2),
        "baseline + MixUp(alpha=0.2): each training image and its target blended with "
        "another's of the batch", "--mixup"),
    "cutmix": Preset(
        Config(cutmix=1.0),
        "baseline + CutMix(factor=1): a random box of another training image pasted into "
        "each, targets mixed by area", "--cutmix"),
    "random_erasing": Preset(
        Config(random_erasing=1.0),
        "baseline + RandomErasing(factor=1): a random box of half the training images "
        "replaced by noise", "--random-erasing"),
    "weight_ema": Preset(
        Config(ema=0.99),
        "baseline with Keras' use_ema=True (momentum 0.99): a moving average of the weights "
        "replaces them when training ends", "--ema"),
}
TECHNIQUES = tuple(PRESETS)
# Part 1, the notebook's own techniques; the others are Part 2, the ones a reader meets next.
NOTEBOOK = TECHNIQUES[:TECHNIQUES.index("label_smoothing") + 1]


def preset(technique: str, **overrides) -> Config:
    """The preset named `technique` with `overrides` applied, validated."""
    if technique not in PRESETS:
        close = difflib.get_close_matches(technique, TECHNIQUES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown technique {technique!r}{hint}; choose one of {', '.join(TECHNIQUES)}")
    return dataclasses.replace(PRESETS[technique].config, **overrides).validate()


def techniques_table() -> str:
    """The techniques as a markdown table (the README shows it)."""
    rows = [f"| `{name}` | {p.summary} | "
            + ", ".join(f"`{flag}`" for flag in p.flags.split(", ")) + " |"
            for name, p in PRESETS.items()]
    return "\n".join(["| technique | what it trains | flags |", "|---|---|---|", *rows])
