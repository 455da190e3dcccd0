"""On-device augmentation against scipy.ndimage with the matrix Keras' ImageDataGenerator
builds (re-derived here in numpy from its documented algorithm)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from regjax import augment


def keras_affine(theta, tx, ty, shear, zx, zy, h, w):
    """Keras' apply_affine_transform matrix, in numpy, for row_axis 0 and col_axis 1."""
    t, s = np.deg2rad(theta), np.deg2rad(shear)
    rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    shear_m = np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
    zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    m = rotation @ shift @ shear_m @ zoom
    ox, oy = h / 2 - 0.5, w / 2 - 0.5
    m = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]]) @ m @ np.array(
        [[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
    m[:, [0, 1]] = m[:, [1, 0]]
    m[[0, 1]] = m[[1, 0]]
    return m


def warp(image, params):
    p = augment.AffineParams(*[jnp.array([v], jnp.float64) for v in params])
    return np.asarray(augment.warp_bilinear(jnp.asarray(image[None]),
                                            augment.affine_matrix(p, *image.shape))[0])


def test_identity_parameters_give_the_identity(fashion):
    image = fashion.test.images[0].astype(np.float32) / 255
    p = augment.AffineParams(*[jnp.array([v], jnp.float32) for v in (0, 0, 0, 0, 1, 1)])
    out = augment.warp_bilinear(jnp.asarray(image[None]), augment.affine_matrix(p, 28, 28))
    np.testing.assert_allclose(out[0], image, atol=1e-6)


@pytest.mark.parametrize("params", [
    (10.0, 0.0, 0.0, 0.0, 1.0, 1.0),  # rotation only
    (0.0, 2.8, -1.3, 0.0, 1.0, 1.0),  # shift only
    (0.0, 0.0, 0.0, 0.2, 1.0, 1.0),  # shear only
    (0.0, 0.0, 0.0, 0.0, 1.2, 0.8),  # zoom only (zx > 1 zooms out)
    (-7.5, -2.2, 2.9, -0.17, 0.83, 1.16),  # all at once
    (45.0, 6.0, -6.0, 20.0, 1.5, 0.6),  # far outside: 'nearest' fill matters
])
def test_transform_matches_scipy_affine_transform_with_keras_matrix(fashion, params):
    with jax.enable_x64(True):
        for image in fashion.test.images[:3].astype(np.float64) / 255:
            m = keras_affine(*params, *image.shape)
            expected = ndimage.affine_transform(image, m[:2, :2], m[:2, 2], order=1,
                                                mode="nearest")
            np.testing.assert_allclose(warp(image, params), expected, atol=1e-12)


def test_sampled_parameters_stay_inside_the_seed_ranges():
    p = augment.sample_affine_params(jax.random.key(0), 20000, 28, 28, rotation_range=10,
                                     shift_range=0.1, shear_range=0.2, zoom_range=0.2)
    for values, low, high in [(p.theta, -10, 10), (p.tx, -2.8, 2.8), (p.ty, -2.8, 2.8),
                              (p.shear, -0.2, 0.2), (p.zx, 0.8, 1.2), (p.zy, 0.8, 1.2)]:
        values = np.asarray(values)
        assert values.min() >= low and values.max() <= high
        # Uniform over the whole range: both ends are reached.
        assert values.min() < low + 0.01 * (high - low) and values.max() > high - 0.01 * (high - low)
    assert abs(np.corrcoef(p.zx, p.zy)[0, 1]) < 0.05  # zoom axes drawn independently


def test_random_affine_draws_per_image_transforms(fashion):
    image = jnp.asarray(fashion.test.images[0] / 255, jnp.float32)
    out = augment.random_affine(jax.random.key(0), jnp.stack([image, image]), rotation_range=10,
                                shift_range=0.1, shear_range=0.2, zoom_range=0.2)
    assert not np.allclose(out[0], out[1])
    assert out.min() >= 0 and out.max() <= 1  # bilinear with edge fill never overshoots
