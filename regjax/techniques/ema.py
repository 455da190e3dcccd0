"""A moving average of the weights (Keras' use_ema=True, ema_momentum M) that replaces them
when training ends (Keras' finalize): after each update, average = M * average + (1 - M) *
weights, the first step taking the weights themselves. Validation during training sees the
raw weights, as in Keras; the constraints (MaxNorm) act after the average is taken."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from regjax.fields import RATE, WEIGHTS, setting
from regjax.techniques.base import Preset, Technique


class AverageState(NamedTuple):
    count: jax.Array  # updates averaged so far
    average: optax.Params


def moving_average(momentum) -> optax.GradientTransformation:
    """The average of the weights after each update, as an optax transformation that leaves
    the updates as they are (momentum 0: the average is the weights)."""

    def init(params):
        return AverageState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.copy, params))

    def update(updates, state, params):
        weights = optax.apply_updates(params, updates)
        m = jnp.where(state.count == 0, 0.0, momentum)
        average = jax.tree.map(lambda a, w: m * a + (1.0 - m) * w, state.average, weights)
        return updates, AverageState(state.count + 1, average)

    return optax.GradientTransformation(init, update)


TECHNIQUE = Technique(
    "ema",
    {"ema": setting(
        0.0, WEIGHTS, "a moving average of the weights with this momentum (Keras' "
        "use_ema=True) replaces them when training ends; validation during training sees "
        "the raw weights, as in Keras (0: off)", metavar="MOMENTUM", valid=RATE,
        vary="program", sweep=True)},
    presets={"weight_ema": Preset(dict(ema=0.99), "baseline with Keras' use_ema=True "
                                  "(momentum 0.99): a moving average of the weights replaces "
                                  "them when training ends", 2, 8)},
    place="update", order=2,
    update=lambda knobs: moving_average(knobs.ema),
    final=lambda state: state.average,
)
