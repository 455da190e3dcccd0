"""The notebook's set-ups as named presets of a Config, each with the one-line description
that --help and the README's techniques table show (tests/test_config.py checks the README).

Each is the baseline MLP (Dense 128-64-10, Adam, batch 64, 20 epochs, validation_split=0.2)
plus what its section of the notebook adds; Part 2 adds the regularizers a reader meets next,
each at its Keras 3 reference's default or most common setting.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import NamedTuple

from regjax.config import DEFAULTS, FIELDS, Config


class Preset(NamedTuple):
    config: Config
    summary: str  # one line, for --help and the README


CNN = dict(model="cnn", hidden=(128,), validation="test")  # Conv2D(32, 3x3), MaxPool, Dense(128)
PRESETS: dict[str, Preset] = {
    "baseline": Preset(Config(), "Dense 128-64-10, Adam, batch 64, 20 epochs, last 20% of "
                       "train validates"),
    "l1": Preset(Config(l1=1e-3), "baseline + l1(0.001) on the hidden kernels"),
    "l2": Preset(Config(l2=1e-3), "baseline + l2(0.001) on the hidden kernels"),
    "dropout": Preset(Config(dropout=0.25), "baseline + Dropout(0.25) after each hidden layer"),
    "batchnorm": Preset(Config(batchnorm=True),
                        "baseline + BatchNormalization after each hidden layer"),
    "early_stopping": Preset(
        Config(early_stopping=True, patience=3, epochs=50),
        "baseline, up to 50 epochs, stops when val_loss stalls for 3 epochs"),
    "augmentation": Preset(
        Config(**CNN, augment=True),
        "CNN trained on randomly rotated, shifted, sheared and zoomed images, validated on test"),
    "label_smoothing": Preset(Config(label_smoothing=0.1, validation="test"),
                              "baseline with targets smoothed by 0.1, validated on test"),
    "weight_decay": Preset(
        Config(weight_decay=0.004), "baseline trained with AdamW: decoupled weight decay 0.004 "
        "(Keras' default) on every weight"),
    "max_norm": Preset(
        Config(max_norm=3.0), "baseline + MaxNorm(3): each hidden unit's incoming weights "
        "rescaled to norm <= 3 after every update"),
    "gaussian_noise": Preset(
        Config(gaussian_noise=0.1), "baseline + GaussianNoise(0.1) on the inputs: N(0, 0.1) "
        "added to every pixel in training"),
    "spatial_dropout": Preset(
        Config(**CNN, spatial_dropout=0.2), "the augmentation preset's CNN, not augmented, + "
        "SpatialDropout2D(0.2): whole feature maps dropped"),
    "mixup": Preset(Config(mixup=0.2), "baseline + MixUp(alpha=0.2): each training image and "
                    "its target blended with another's of the batch"),
    "cutmix": Preset(Config(cutmix=1.0), "baseline + CutMix(factor=1): a random box of another "
                     "training image pasted into each, targets mixed by area"),
    "random_erasing": Preset(
        Config(random_erasing=1.0), "baseline + RandomErasing(factor=1): a random box of half "
        "the training images replaced by noise"),
    "weight_ema": Preset(
        Config(ema=0.99), "baseline with Keras' use_ema=True (momentum 0.99): a moving average "
        "of the weights replaces them when training ends"),
}
TECHNIQUES = tuple(PRESETS)
# Part 1, the notebook's own techniques; the others are Part 2, the ones a reader meets next.
NOTEBOOK = TECHNIQUES[:TECHNIQUES.index("label_smoothing") + 1]
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
