"""CutMix (keras.layers.CutMix(factor), in the input pipeline after augmenting): a random box
of another training image of the batch pasted into each, the targets mixed by the box's
area."""

from __future__ import annotations

from regjax.fields import INPUTS, UNIT, setting
from regjax.nn import mixing
from regjax.techniques.base import Preset, Technique

TECHNIQUE = Technique(
    "cutmix",
    {"cutmix": setting(
        0.0, INPUTS, "CutMix: a random box of another training image of the batch pasted "
        "into each, targets mixed by the box's area; FACTOR bounds the Beta parameter "
        "(keras.layers.CutMix; 0: off)", metavar="FACTOR", valid=UNIT, vary="program",
        sweep=True)},
    presets={"cutmix": Preset(dict(cutmix=1.0), "baseline + CutMix(factor=1): a random box of "
                              "another training image pasted into each, targets mixed by "
                              "area", 2, 6)},
    place="inputs", order=4, branch=3,  # MixUp's branch: the two exclude each other
    excludes={"mixup": "mixup and cutmix each mix a batch's rows: use one of them"},
    inputs=lambda key, x, weights, knobs, mix: mixing.cutmix(key, x, weights, knobs.cutmix),
)
