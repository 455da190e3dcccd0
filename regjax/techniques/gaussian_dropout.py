"""Gaussian dropout after each hidden ReLU (keras.layers.GaussianDropout(RATE)): in training
each unit is multiplied by N(1, RATE / (1 - RATE)) noise (standard deviation
sqrt(RATE / (1 - RATE))), a fresh draw every step; in evaluation it is the identity."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from regjax import rng
from regjax.fields import MODEL, RATE, setting
from regjax.nn import layers
from regjax.techniques.base import Preset, Technique

# Its layers' positions: the hidden layer's index plus this, apart from dropout's keys.
STREAM = 2**17


def gaussian_dropout(x: jax.Array, rate, key: jax.Array) -> jax.Array:
    """x * N(1, rate / (1 - rate)) per unit, as Keras' GaussianDropout draws it (rate 0: x
    as it is). `rate` may be a traced value."""
    stddev = jnp.sqrt(rate / (1.0 - rate))
    return x * (1.0 + stddev * rng.normal(key, x.shape))


class GaussianDropout(layers.TrainingNoise):
    """keras.layers.GaussianDropout(rate), its rate a knob (default field
    "gaussian_dropout"), its noise from the key of its position (regjax.nn.layers)."""

    FIELD = "gaussian_dropout"
    draw = staticmethod(gaussian_dropout)


TECHNIQUE = Technique(
    "gaussian_dropout",
    {"gaussian_dropout": setting(
        0.0, MODEL, "Gaussian dropout after each hidden ReLU: units multiplied by N(1, RATE / "
        "(1 - RATE)) noise in training (keras.layers.GaussianDropout)", metavar="RATE",
        valid=RATE, vary="program", sweep=True)},
    presets={"gaussian_dropout": Preset(dict(gaussian_dropout=0.25), "baseline + "
                                        "GaussianDropout(0.25) after each hidden layer: "
                                        "multiplicative N(1, 1/3) noise in training", 3, 3)},
    place="layers", order=2.5,  # where a dropout layer would be: after batch norm
    layers={"hidden": lambda config, features, position, rngs: GaussianDropout(
        config.gaussian_dropout, position=STREAM + position)},
)
