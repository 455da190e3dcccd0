"""MixUp (keras.layers.MixUp(alpha), in the input pipeline after augmenting): each training
image and its target blended with another's of the batch, the weight from
Beta(ALPHA, ALPHA). Accuracy then counts the mixed target's largest class, as Keras'
accuracy does."""

from __future__ import annotations

from regjax.fields import INPUTS, NONNEGATIVE, setting
from regjax.nn import mixing
from regjax.techniques.base import Preset, Technique

TECHNIQUE = Technique(
    "mixup",
    {"mixup": setting(
        0.0, INPUTS, "MixUp: each training image and its target blended with another's of "
        "the batch, weights from Beta(ALPHA, ALPHA) (keras.layers.MixUp; 0: off)",
        metavar="ALPHA", valid=NONNEGATIVE, vary="program", sweep=True)},
    presets={"mixup": Preset(dict(mixup=0.2), "baseline + MixUp(alpha=0.2): each training "
                             "image and its target blended with another's of the batch",
                             2, 5)},
    place="inputs", order=3, branch=3,
    excludes={"cutmix": "mixup and cutmix each mix a batch's rows: use one of them"},
    inputs=lambda key, x, weights, knobs, mix: mixing.mixup(key, x, weights, knobs.mixup),
)
