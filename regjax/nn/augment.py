"""On-device random affine augmentation with the semantics of Keras' ImageDataGenerator
(rotation_range, width/height_shift_range, shear_range, zoom_range, fill_mode='nearest',
bilinear interpolation), for a batch of images [B, H, W, C] at once: one transform per
image, the same for each of its channels, as ImageDataGenerator applies it to an RGB image.
And the boxes of CutMix and RandomErasing."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from regjax import rng


class AffineParams(NamedTuple):
    """Per-image parameters, named as ImageDataGenerator names them (each of shape [B])."""

    theta: jax.Array  # rotation, degrees
    tx: jax.Array  # shift along rows, pixels
    ty: jax.Array  # shift along columns, pixels
    shear: jax.Array  # degrees
    zx: jax.Array  # zoom factor (> 1 zooms out)
    zy: jax.Array


def sample_affine_params(key: jax.Array, n: int, height: int, width: int, *,
                         rotation_range: float, shift_range: float, shear_range: float,
                         zoom_range: float) -> AffineParams:
    """Draws n parameter sets as ImageDataGenerator.get_random_transform does. As there, a
    shift_range under 1 is a fraction of the height and width, one of 1 or more a number of
    pixels (it may be traced: one range per model)."""
    k = jax.random.split(key, 6)

    def uniform(key, low, high):
        return rng.uniform(key, (n,), low, high)

    def pixels(size):
        return jnp.where(shift_range < 1, size, 1)

    return AffineParams(
        theta=uniform(k[0], -rotation_range, rotation_range),
        tx=uniform(k[1], -shift_range, shift_range) * pixels(height),
        ty=uniform(k[2], -shift_range, shift_range) * pixels(width),
        shear=uniform(k[3], -shear_range, shear_range),
        zx=uniform(k[4], 1 - zoom_range, 1 + zoom_range),
        zy=uniform(k[5], 1 - zoom_range, 1 + zoom_range),
    )


def affine_matrix(p: AffineParams, height: int, width: int) -> jax.Array:
    """[B, 3, 3] matrices mapping output (row, col) to input (row, col) coordinates, built as
    Keras' apply_affine_transform builds them: rotation @ shift @ shear @ zoom about the
    image centre, then its axes swapped for numpy's (row, col) indexing."""
    theta, shear = jnp.deg2rad(p.theta), jnp.deg2rad(p.shear)
    zero, one = jnp.zeros_like(theta), jnp.ones_like(theta)

    def mat(rows):
        return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)

    rotation = mat([[jnp.cos(theta), -jnp.sin(theta), zero],
                    [jnp.sin(theta), jnp.cos(theta), zero], [zero, zero, one]])
    shift = mat([[one, zero, p.tx], [zero, one, p.ty], [zero, zero, one]])
    shear_m = mat([[one, -jnp.sin(shear), zero], [zero, jnp.cos(shear), zero], [zero, zero, one]])
    zoom = mat([[p.zx, zero, zero], [zero, p.zy, zero], [zero, zero, one]])
    m = rotation @ shift @ shear_m @ zoom
    o_x, o_y = height / 2 - 0.5, width / 2 - 0.5
    offset = jnp.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]], m.dtype)
    reset = jnp.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]], m.dtype)
    m = offset @ m @ reset
    swap = jnp.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], m.dtype)
    return swap @ m @ swap


def warp_bilinear(images: jax.Array, matrices: jax.Array) -> jax.Array:
    """Resamples [B, H, W, C] images at matrix @ (row, col, 1) with bilinear interpolation
    and edge replication outside the image: scipy.ndimage.affine_transform(order=1,
    mode='nearest') for each image and channel."""
    b, h, w, c = images.shape
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=images.dtype),
                              jnp.arange(w, dtype=images.dtype), indexing="ij")
    grid = jnp.stack([rows.ravel(), cols.ravel(), jnp.ones(h * w, images.dtype)])  # [3, HW]
    src = matrices[:, :2, :] @ grid  # [B, 2, HW]
    # Clamping the sample point to the image is exactly 'nearest' edge replication.
    r = jnp.clip(src[:, 0], 0, h - 1)
    cols = jnp.clip(src[:, 1], 0, w - 1)
    r0 = jnp.minimum(jnp.floor(r), h - 2)
    c0 = jnp.minimum(jnp.floor(cols), w - 2)
    fr, fc = r - r0, cols - c0
    base = r0.astype(jnp.int32) * w + c0.astype(jnp.int32)
    idx = jnp.concatenate([base, base + 1, base + w, base + w + 1], axis=1)  # [B, 4HW]
    weights = jnp.stack([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc], axis=-1)
    # Each channel a plane of its own, warped as the image's others: a 2-D gather of [planes,
    # H*W] (with a channel axis beside it, XLA's gather ran several times slower).
    if c == 1:
        planes = images.reshape(b, h * w)
    else:
        planes = jnp.moveaxis(images, -1, 1).reshape(b * c, h * w)
        idx, weights = jnp.repeat(idx, c, axis=0), jnp.repeat(weights, c, axis=0)
    v00, v01, v10, v11 = jnp.split(jnp.take_along_axis(planes, idx, axis=1), 4, axis=1)
    # The four neighbours' weighted sum, written as a reduction: XLA then computes the warped
    # images once, where an elementwise form got fused into, and recomputed by, each reader
    # (the CNN's patch gather reads each pixel nine times).
    out = jnp.sum(jnp.stack([v00, v01, v10, v11], axis=-1) * weights, axis=-1)
    return out.reshape(b, h, w, 1) if c == 1 else jnp.moveaxis(out.reshape(b, c, h, w), 1, -1)


def random_affine(key: jax.Array, images: jax.Array, *, rotation_range: float,
                  shift_range: float, shear_range: float, zoom_range: float) -> jax.Array:
    """A fresh random affine transform of each image in a [B, H, W, C] float batch."""
    b, h, w, _ = images.shape
    params = sample_affine_params(key, b, h, w, rotation_range=rotation_range,
                                  shift_range=shift_range, shear_range=shear_range,
                                  zoom_range=zoom_range)
    return warp_bilinear(images, affine_matrix(params, h, w))


# ------------------------------------------------------------- boxes (CutMix, RandomErasing)

ERASE_SCALE = (0.02, 0.33)  # RandomErasing's default range of each side's squared fraction

def box_bounds(u: jax.Array, ratio: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """Keras CutMix's crop bounds along one axis: a length of ratio * length, its start
    uniform over the positions that keep it inside."""
    crop = ratio * length
    start = u * (length - crop)
    return start, start + crop


def box_mask(bounds, height: int, width: int) -> jax.Array:
    """[B, H, W, 1]: the pixels whose (column, row) lie in [x0, x1) x [y0, y1), for every
    channel."""
    x0, x1, y0, y1 = (b[:, None, None, None] for b in bounds)
    rows = jnp.arange(height, dtype=jnp.float32)[None, :, None, None]
    columns = jnp.arange(width, dtype=jnp.float32)[None, None, :, None]
    return (columns >= x0) & (columns < x1) & (rows >= y0) & (rows < y1)


def random_erasing(key: jax.Array, images: jax.Array, factor) -> jax.Array:
    """keras.layers.RandomErasing(factor) with its defaults (scale (0.02, 0.33), fill with
    normal noise scaled by the value range's top, here 1 for pixels in [0, 1]) on float
    images [B, H, W, C], as Keras 3.15 computes it: a box of sides sqrt(s_w) * W and
    sqrt(s_h) * H (s_w and s_h each ~ U(0.02, 0.33)) placed wholly inside the image, its
    pixels (every channel) replaced by N(0, 1) noise, in each image whose threshold ~ U(0, 1)
    falls below its erase probability ~ U(0, factor) (so factor 1 erases half the images on
    average, not all of them as Keras' documentation says). factor 0 erases nothing."""
    return erase(images, *erasing_draws(key, images.shape, factor))


def erasing_draws(key: jax.Array, shape: tuple[int, int, int, int], factor):
    """RandomErasing's random choices: (box bounds x0, x1, y0, y1, which images, fill)."""
    batch, height, width, _ = shape
    u = rng.uniform(jax.random.fold_in(key, 0), (6, batch))
    sides = jnp.sqrt(ERASE_SCALE[0] + u[:2] * (ERASE_SCALE[1] - ERASE_SCALE[0]))
    bounds = box_bounds(u[2], sides[0], width) + box_bounds(u[3], sides[1], height)
    applied = u[5] < u[4] * factor
    fill = rng.normal(jax.random.fold_in(key, 1), shape)
    return bounds, applied, fill


def erase(images, bounds, applied, fill):
    box = box_mask(bounds, images.shape[1], images.shape[2]) & applied[:, None, None, None]
    return jnp.where(box, fill, images)
