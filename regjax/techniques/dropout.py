"""Dropout after each hidden ReLU (keras.layers.Dropout, nnx.Dropout): in training each unit
is zeroed with probability RATE and the kept ones scaled by 1 / (1 - RATE), a fresh mask
every step; in evaluation it is the identity."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from regjax import rng
from regjax.fields import MODEL, RATE, setting
from regjax.nn import layers
from regjax.techniques.base import Preset, Technique


def inverted_dropout(x: jax.Array, rate, key: jax.Array) -> jax.Array:
    """Keras' (and nnx.Dropout's) dropout: zero each unit with probability `rate`, scale the
    kept ones by 1 / (1 - rate). `rate` may be a traced value (0: x as it is)."""
    keep = 1.0 - rate
    return jax.lax.select(rng.bernoulli(key, keep, x.shape), x / keep, jnp.zeros_like(x))


class Dropout(layers.TrainingNoise):
    """keras.layers.Dropout(rate), its rate a knob (`field`, default "dropout"), its mask
    drawn from the key of its `position` in each step (regjax.nn.layers)."""

    FIELD = "dropout"
    draw = staticmethod(inverted_dropout)


TECHNIQUE = Technique(
    "dropout",
    {"dropout": setting(0.0, MODEL, "Dropout rate after each hidden ReLU", metavar="RATE",
                        valid=RATE, vary="program", sweep=True)},
    presets={"dropout": Preset(dict(dropout=0.25), "baseline + Dropout(0.25) after each "
                               "hidden layer", 1, 3)},
    place="layers", order=2,
    layers={"hidden": lambda config, features, position, rngs: Dropout(
        config.dropout, position=position)},
)
