"""Spatial dropout on the convolution's feature maps (keras.layers.SpatialDropout2D): in
training each image's feature map (one channel) is zeroed whole with probability RATE and
the kept ones scaled by 1 / (1 - RATE)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from regjax import rng
from regjax.fields import MODEL, RATE, setting
from regjax.nn import layers
from regjax.techniques.base import NOTEBOOK_CNN, Preset, Technique


def spatial_dropout_maps(x: jax.Array, rate, key: jax.Array) -> jax.Array:
    """Keras' SpatialDropout2D on [B, H, W, C] maps: each (image, channel) map zeroed whole
    with probability `rate`, the kept ones scaled by 1 / (1 - rate). The CNN applies it
    after the pooling, which is the same as before it: a map's mask is one non-negative
    factor, which ReLU and max-pooling commute with."""
    keep = 1.0 - rate
    maps = rng.bernoulli(key, keep, (x.shape[0], x.shape[3]))
    # Through a product with the identity (exact for 0s and 1s): XLA computes a product
    # once, where it fused the mask's draw into the select below and drew each map's
    # number again for every one of its pixels (a third of a CNN step).
    maps = maps.astype(x.dtype) @ jnp.eye(x.shape[3], dtype=x.dtype) > 0.5
    return jax.lax.select(jnp.broadcast_to(maps[:, None, None, :], x.shape), x / keep,
                          jnp.zeros_like(x))


class SpatialDropout(layers.TrainingNoise):
    """keras.layers.SpatialDropout2D(rate), its rate a knob (default field
    "spatial_dropout"), its draws from its position's key (regjax.nn.layers)."""

    FIELD = "spatial_dropout"
    draw = staticmethod(spatial_dropout_maps)


TECHNIQUE = Technique(
    "spatial_dropout",
    {"spatial_dropout": setting(
        0.0, MODEL, "CNN only: whole feature maps of the convolution dropped with this rate "
        "(keras.layers.SpatialDropout2D)", metavar="RATE", valid=RATE, vary="program",
        sweep=True)},
    presets={"spatial_dropout": Preset(
        dict(**NOTEBOOK_CNN, spatial_dropout=0.2), "the augmentation preset's CNN, not "
        "augmented, + SpatialDropout2D(0.2): whole feature maps dropped", 2, 4)},
    place="layers", order=3, models=("cnn",),
    acts_on="spatial dropout drops whole feature maps of the convolution",
    layers={"maps": lambda config, features, position, rngs: SpatialDropout(
        config.spatial_dropout, position=position)},
)
