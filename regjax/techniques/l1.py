"""The L1 weight penalty (keras.regularizers.l1): loss += L1 * sum |w| over the model's
regularized kernels (the notebook's hidden Dense kernels, not biases, not the output
layer), in training and in val_loss alike."""

from __future__ import annotations

import jax.numpy as jnp

from regjax.fields import LOSS, NONNEGATIVE, setting
from regjax.techniques.base import Preset, Technique


def l1_penalty(kernels, l1):
    # sign(w) * w equals |w| but differentiates to sign(w), which is 0 at w = 0 as in
    # TensorFlow; jnp.abs has gradient 1 there.
    return l1 * sum(jnp.sum(jnp.sign(k) * k) for k in kernels)


TECHNIQUE = Technique(
    "l1",
    {"l1": setting(0.0, LOSS, "loss += L1 * sum|w| over the hidden kernels", metavar="L1",
                   valid=NONNEGATIVE, vary="program", sweep=True)},
    presets={"l1": Preset(dict(l1=1e-3), "baseline + l1(0.001) on the hidden kernels", 1, 1)},
    place="penalty", order=1,
    penalty=lambda kernels, knobs: l1_penalty(kernels, knobs.l1),
)
