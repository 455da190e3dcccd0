"""Stochastic depth (Huang et al. 2016; timm's drop_path): in training, each residual block's
branch is dropped whole for an image with probability p_i, the kept branches scaled by
1 / (1 - p_i), p_i growing linearly with the block's depth from 0 at the first block to P at
the last (timm's linspace(0, P, depth)); in evaluation the branch is kept whole. For models
with residual blocks (the resnet model)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from regjax import rng
from regjax.fields import MODEL, RATE, setting
from regjax.nn import layers
from regjax.techniques.base import Preset, Technique


def drop_path(x: jax.Array, rate, key: jax.Array) -> jax.Array:
    """timm's drop_path: each example's x kept with probability 1 - rate and then divided
    by it, else zero (rate 0: x as it is)."""
    keep = 1.0 - rate
    kept = rng.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(kept, x / keep, jnp.zeros_like(x))


class DropPath(layers.TrainingNoise):
    """Stochastic depth on a residual branch at relative `depth` (0 to 1): its rate the
    knob (default field "stochastic_depth", the last block's) times the depth."""

    FIELD = "stochastic_depth"

    def __init__(self, rate: float, depth: float, *, position: int = 0,
                 field: str | None = None):
        super().__init__(rate, position=position, field=field)
        self.depth = depth

    def draw(self, x, rate, key):
        return drop_path(x, rate * self.depth, key)


TECHNIQUE = Technique(
    "stochastic_depth",
    {"stochastic_depth": setting(
        0.0, MODEL, "resnet only: each residual block's branch dropped whole per image in "
        "training, with a probability growing linearly with depth from 0 to P at the last "
        "block (timm's drop_path)", metavar="P", valid=RATE, vary="program", sweep=True)},
    presets={"stochastic_depth": Preset(
        dict(model="resnet", validation="test", stochastic_depth=0.2), "a small residual CNN "
        "(3 stages of 2 blocks, 16/32/64 filters) with stochastic depth: blocks skipped in "
        "training with a probability growing to 0.2", 3, 8)},
    place="layers", order=4, models=("resnet",),
    acts_on="stochastic depth skips residual blocks",
    layers={"residual": lambda config, depth, position, rngs: DropPath(
        config.stochastic_depth, depth, position=position)},
)
