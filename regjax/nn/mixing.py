"""Mixing augmentations of a training batch (Keras 3's MixUp and CutMix): every image
blended with a partner from the same batch (MixUp) or given a box of the partner's pixels
(CutMix), and its target mixed with the partner's in the same proportion.

Keras pairs the rows of a batch by a random permutation. A partial last batch here is
padded with rows of weight 0 (regjax.train.step), so the permutation is drawn over the real rows
alone: a real row is never mixed with a padded one, as in Keras, where the last batch is
simply smaller.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from regjax import rng
from regjax.nn.augment import box_bounds, box_mask


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
    """keras.layers.MixUp(alpha) on float images [B, H, W, C]: returns the mixed images and
    (partner rows, mix weights) for the targets (regjax.nn.losses.mixed_one_hot). Each row's
    weight is drawn from Beta(alpha, alpha); alpha 0 (a model of a batched run without
    mixup) leaves the batch as it is."""
    partner = partners(jax.random.fold_in(key, 0), weights)
    safe = jnp.where(alpha > 0, alpha, 1.0)
    drawn = rng.beta(jax.random.fold_in(key, 1), safe, safe, weights.shape)
    lam = jnp.where(alpha > 0, drawn, 1.0).astype(images.dtype)
    w = lam[:, None, None, None]
    return w * images + (1.0 - w) * images[partner], (partner, lam)


def cutmix_draws(key: jax.Array, weights: jax.Array, height: int, width: int, factor):
    """CutMix's random choices for a batch, as Keras 3.15 makes them: alpha ~ U(0, factor)
    + 1e-6 for the batch; per image lam ~ Beta(alpha, alpha) and a box of sides
    sqrt(1 - lam) * (width, height) at a uniformly random place wholly inside the image.
    Returns (partner rows, box bounds x0, x1, y0, y1)."""
    batch = weights.shape[0]
    partner = partners(jax.random.fold_in(key, 0), weights)
    u = rng.uniform(jax.random.fold_in(key, 1), (2, batch))
    alpha = rng.uniform(jax.random.fold_in(key, 2), (), 0.0, jnp.maximum(factor, 1e-6)) + 1e-6
    ratio = jnp.sqrt(1.0 - rng.beta(jax.random.fold_in(key, 3), alpha, alpha, (batch,)))
    return partner, box_bounds(u[0], ratio, width) + box_bounds(u[1], ratio, height)


def cutmix(key: jax.Array, images: jax.Array, weights: jax.Array, factor):
    """keras.layers.CutMix(factor) on float images [B, H, W, C]: the pixels of each image's box
    (cutmix_draws; those whose coordinates fall in [start, end)) come from its partner's
    image, and the targets mix with 1 - (box area) / (image area), the box's real-valued
    area as in Keras. Returns the images and (partners, mix weights) for the targets.
    factor 0 (a model of a batched run without CutMix) leaves the batch as it is."""
    _, height, width, _ = images.shape
    partner, (x0, x1, y0, y1) = cutmix_draws(key, weights, height, width, factor)
    on = factor > 0
    mixed = jnp.where(box_mask((x0, x1, y0, y1), height, width) & on, images[partner], images)
    lam = 1.0 - (x1 - x0) * (y1 - y0) / (width * height)
    return mixed, (partner, jnp.where(on, lam, 1.0).astype(images.dtype))
