"""AdamW's decoupled weight decay (keras.optimizers.AdamW): every weight w -= w * WD * LR at
each step, beside Adam's update of the gradient taken at the undecayed weights. Chained
after Keras' Adam as optax.add_decayed_weights(-WD * LR): equal in exact arithmetic to
Keras' decay-then-update, not bit for bit (the Keras-oracle test holds it to rounding)."""

from __future__ import annotations

import optax

from regjax.fields import NONNEGATIVE, WEIGHTS, setting
from regjax.techniques.base import Preset, Technique

TECHNIQUE = Technique(
    "weight_decay",
    {"weight_decay": setting(
        0.0, WEIGHTS, "AdamW's decoupled decay: every weight w -= w * WD * LR before each "
        "update (keras.optimizers.AdamW)", metavar="WD", valid=NONNEGATIVE, vary="program",
        sweep=True)},
    presets={"weight_decay": Preset(dict(weight_decay=0.004), "baseline trained with AdamW: "
                                    "decoupled weight decay 0.004 (Keras' default) on every "
                                    "weight", 2, 1)},
    place="update", order=1,
    update=lambda knobs: optax.add_decayed_weights(-knobs.weight_decay * knobs.learning_rate),
)
