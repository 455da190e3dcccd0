"""The L2 weight penalty (keras.regularizers.l2): loss += L2 * sum w^2 over the model's
regularized kernels, with no 0.5 factor (the gradient is 2 * L2 * w); AdamW's decoupled
decay (regjax.techniques.weight_decay) is not this."""

from __future__ import annotations

import jax.numpy as jnp

from regjax.fields import LOSS, NONNEGATIVE, setting
from regjax.techniques.base import Preset, Technique


def l2_penalty(kernels, l2):
    return l2 * sum(jnp.sum(jnp.square(k)) for k in kernels)


TECHNIQUE = Technique(
    "l2",
    {"l2": setting(0.0, LOSS, "loss += L2 * sum w^2 over the hidden kernels", metavar="L2",
                   valid=NONNEGATIVE, vary="program", sweep=True)},
    presets={"l2": Preset(dict(l2=1e-3), "baseline + l2(0.001) on the hidden kernels", 1, 2)},
    place="penalty", order=2,
    penalty=lambda kernels, knobs: l2_penalty(kernels, knobs.l2),
)
