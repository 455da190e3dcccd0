"""Mixing augmentations of a training batch (Keras 3's MixUp): every image blended with a
partner from the same batch, and its target with the partner's.

Keras pairs the rows of a batch by a random permutation. A partial last batch here is
padded with rows of weight 0 (regjax.step), so the permutation is drawn over the real rows
alone: a real row is never mixed with a padded one, as in Keras, where the last batch is
simply smaller.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from regjax import rng


def partners(key: jax.Array, weights: jax.Array) -> jax.Array:
    """A random permutation of the real rows (weight > 0) among themselves, as int32 row
    indices [B]; padded rows are their own partners."""
    bits = jax.lax.shift_right_logical(rng.bits(key, weights.shape), np.uint32(1))
    real = weights > 0
    shuffled = rng.stable_argsort(jnp.where(real, bits, bits | np.uint32(2**31)))
    in_place = rng.stable_argsort(jnp.where(real, np.uint32(0), np.uint32(1)))
    return jnp.zeros_like(shuffled).at[in_place].set(jnp.where(real[in_place], shuffled,
                                                               in_place))


def mixup(key: jax.Array, images: jax.Array, weights: jax.Array, alpha):
    """keras.layers.MixUp(alpha) on float images [B, H, W]: returns the mixed images and
    (partner rows, mix weights) for the targets (regjax.losses.mixed_one_hot). Each row's
    weight is drawn from Beta(alpha, alpha); alpha 0 (a model of a batched run without
    mixup) leaves the batch as it is."""
    partner = partners(jax.random.fold_in(key, 0), weights)
    safe = jnp.where(alpha > 0, alpha, 1.0)
    drawn = rng.beta(jax.random.fold_in(key, 1), safe, safe, weights.shape)
    lam = jnp.where(alpha > 0, drawn, 1.0).astype(images.dtype)
    w = lam[:, None, None]
    return w * images + (1.0 - w) * images[partner], (partner, lam)
