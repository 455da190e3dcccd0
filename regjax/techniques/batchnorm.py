"""Batch normalization after each hidden ReLU (keras.layers.BatchNormalization): batch
statistics in training (the padding rows of a partial batch left out), the moving averages
(momentum 0.99) in evaluation, epsilon 1e-3, a learned scale and offset."""

from __future__ import annotations

import jax
from flax import nnx

from regjax.fields import MODEL, setting
from regjax.nn import layers
from regjax.techniques.base import Preset, Technique

# Keras' defaults (flax's epsilon is 1e-5).
MOMENTUM = 0.99
EPSILON = 1e-3


class BatchNorm(nnx.Module):
    """keras.layers.BatchNormalization() on `features` units (the last axis of [B, ...]):
    nnx.BatchNorm with Keras' momentum and epsilon, whose batch statistics count only the
    batch's real rows (the RowMask a step sets)."""

    def __init__(self, features: int, *, rngs: nnx.Rngs):
        self.norm = nnx.BatchNorm(features, momentum=MOMENTUM, epsilon=EPSILON, rngs=rngs)
        self.rows = layers.row_mask()

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.norm.use_running_average:
            return self.norm(x)
        return self.norm(x, mask=self.rows[...].reshape(-1, *(1,) * (x.ndim - 1)))


TECHNIQUE = Technique(
    "batchnorm",
    {"batchnorm": setting(False, MODEL, "BatchNormalization after each hidden ReLU "
                          "(momentum 0.99, epsilon 1e-3)")},
    presets={"batchnorm": Preset(dict(batchnorm=True), "baseline + BatchNormalization after "
                                 "each hidden layer", 1, 4)},
    place="layers", order=1,
    layers={"hidden": lambda config, features, position, rngs: BatchNorm(features,
                                                                          rngs=rngs)},
)
