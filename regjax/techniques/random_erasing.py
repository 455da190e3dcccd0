"""Random erasing (keras.layers.RandomErasing(factor), after the affine warp): a random box
of a training image replaced by N(0, 1) noise, each image with probability ~ U(0, FACTOR),
so FACTOR / 2 on average, as Keras 3.15 computes it (regjax.nn.augment.random_erasing)."""

from __future__ import annotations

from regjax.fields import INPUTS, UNIT, setting
from regjax.nn import augment
from regjax.techniques.base import Preset, Technique

TECHNIQUE = Technique(
    "random_erasing",
    {"random_erasing": setting(
        0.0, INPUTS, "RandomErasing: a random box of a training image replaced by N(0, 1) "
        "noise, each image with probability ~ U(0, FACTOR), so FACTOR / 2 on average, as "
        "Keras computes it (keras.layers.RandomErasing; 0: off)", metavar="FACTOR",
        valid=UNIT, vary="program", sweep=True)},
    presets={"random_erasing": Preset(dict(random_erasing=1.0), "baseline + "
                                      "RandomErasing(factor=1): a random box of half the "
                                      "training images replaced by noise", 2, 7)},
    place="inputs", order=2, branch=4,
    inputs=lambda key, x, weights, knobs, mix: (
        augment.random_erasing(key, x, knobs.random_erasing), mix),
)
