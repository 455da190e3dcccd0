"""An L2 activity penalty on each hidden layer's output (Dense(..., activation="relu",
activity_regularizer=keras.regularizers.L2(A))): loss += A * the sum of the squared
activations of each example, averaged over the batch as Keras divides by the batch size;
in training and in evaluation (Keras adds it to val_loss too)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from regjax.fields import LOSS, NONNEGATIVE, setting
from regjax.nn import layers
from regjax.techniques.base import Preset, Technique


class ActivityL2(nnx.Module):
    """keras.layers.ActivityRegularization(l2=A) at this place: the identity, which adds
    A * sum(x^2) per example to the loss (an ExampleLoss; the step averages it over the
    batch's real rows, as Keras divides by the batch's size)."""

    def __init__(self, factor: float, *, field: str = "activity_l2"):
        self.factor = layers.knob(factor, field)
        self.loss = layers.example_loss()

    def __call__(self, x: jax.Array) -> jax.Array:
        squares = jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=-1)
        self.loss.set_value(self.factor[...] * squares)
        return x


TECHNIQUE = Technique(
    "activity_l2",
    {"activity_l2": setting(
        0.0, LOSS, "loss += A * the sum of each example's squared hidden activations "
        "(activity_regularizer=keras.regularizers.L2(A) on the hidden Dense layers)",
        metavar="A", valid=NONNEGATIVE, vary="program", sweep=True)},
    presets={"activity_l2": Preset(dict(activity_l2=1e-4), "baseline + an L2(1e-4) activity "
                                   "penalty on each hidden layer's output", 3, 4)},
    place="layers", order=0,  # on the Dense layer's own output, before any other layer
    layers={"hidden": lambda config, features, position, rngs: ActivityL2(config.activity_l2)},
)
