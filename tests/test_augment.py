"""On-device augmentation against Keras' own ImageDataGenerator code: the warp against
apply_affine_transform on real images, the parameter draws against get_random_transform."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from keras.src.legacy.preprocessing.image import ImageDataGenerator, apply_affine_transform
from scipy import stats

from regjax.nn import augment

RANGES = dict(rotation_range=10, shift_range=0.1, shear_range=0.2, zoom_range=0.2)  # notebook's


def warp(images, params):
    p = augment.AffineParams(*[jnp.full(len(images), v, images.dtype) for v in params])
    return np.asarray(augment.warp_bilinear(jnp.asarray(images),
                                            augment.affine_matrix(p, *images.shape[1:3])))


def keras_warp(image, params):
    """The notebook's transform of one [H, W, C] image: ImageDataGenerator.apply_transform
    calls this with its drawn theta, tx, ty, shear, zx, zy, fill_mode 'nearest' and order 1
    (every channel alike)."""
    return apply_affine_transform(image, *params, row_axis=0, col_axis=1, channel_axis=2,
                                  fill_mode="nearest", order=1)


def test_identity_parameters_give_the_identity(fashion):
    images = fashion.test.images[:4].astype(np.float32) / 255
    np.testing.assert_allclose(warp(images, (0, 0, 0, 0, 1, 1)), images, atol=1e-6)


@pytest.mark.parametrize("params", [
    (10.0, 0.0, 0.0, 0.0, 1.0, 1.0),  # rotation only
    (0.0, 2.8, -1.3, 0.0, 1.0, 1.0),  # shift only (tx moves rows, ty columns)
    (0.0, 0.0, 0.0, 0.2, 1.0, 1.0),  # shear only (degrees)
    (0.0, 0.0, 0.0, 0.0, 1.2, 0.8),  # zoom only (zx > 1 zooms out)
    (-7.5, -2.2, 2.9, -0.17, 0.83, 1.16),  # all at once
    (45.0, 6.0, -6.0, 20.0, 1.5, 0.6),  # far outside: 'nearest' fill matters
])
def test_warp_matches_keras_apply_affine_transform(fashion, params):
    """In float64 the two agree to rounding: the same matrix, the same bilinear weights."""
    images = fashion.test.images[:3].astype(np.float64) / 255
    with jax.enable_x64(True):
        ours = warp(images, params)
    for image, out in zip(images, ours):
        np.testing.assert_allclose(out, keras_warp(image, params), atol=1e-12)


def test_float32_warp_matches_keras_on_random_draws(fashion):
    """The training path's float32 warp, with parameters drawn as training draws them, against
    Keras in float64: float32 coordinates carry ~2e-6 error on a 28-pixel grid, so pixel
    values in [0, 1] agree to ~1e-5."""
    images = fashion.test.images[:16].astype(np.float32) / 255
    p = augment.sample_affine_params(jax.random.key(0), 16, 28, 28, **RANGES)
    ours = np.asarray(augment.warp_bilinear(jnp.asarray(images), augment.affine_matrix(p, 28, 28)))
    for i, (image, out) in enumerate(zip(images, ours)):
        params = [float(np.asarray(v)[i]) for v in p]
        np.testing.assert_allclose(out, keras_warp(image.astype(np.float64), params), atol=2e-5)


@pytest.mark.parametrize("shift", [0.1, 5.0], ids=["fraction", "pixels"])
def test_parameter_draws_match_keras_get_random_transform(shift):
    """Each parameter's distribution equals Keras' (two-sample Kolmogorov-Smirnov test on
    4,000 draws each, seeds fixed, so the test is deterministic): rotation and shear in
    degrees, shifts in pixels of the height (tx) and width (ty), zoom per axis independently.
    A shift range under 1 is a fraction of the image's size, one of 1 or more pixels."""
    generator = ImageDataGenerator(rotation_range=10, width_shift_range=shift,
                                   height_shift_range=shift, shear_range=0.2, zoom_range=0.2)
    np.random.seed(0)
    draws = [generator.get_random_transform((28, 28, 1)) for _ in range(4000)]
    p = augment.sample_affine_params(jax.random.key(0), 4000, 28, 28,
                                     **{**RANGES, "shift_range": shift})
    for name in augment.AffineParams._fields:
        theirs = np.array([d[name] for d in draws])
        ours = np.asarray(getattr(p, name))
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3, name
        assert ours.min() >= theirs.min() - 0.01 * np.ptp(theirs), name
        assert ours.max() <= theirs.max() + 0.01 * np.ptp(theirs), name
    assert abs(np.corrcoef(p.zx, p.zy)[0, 1]) < 0.05  # as Keras: zoom axes independent


def test_random_affine_draws_per_image_transforms(fashion):
    image = jnp.asarray(fashion.test.images[0] / 255, jnp.float32)  # [28, 28, 1]
    out = augment.random_affine(jax.random.key(0), jnp.stack([image, image]), **RANGES)
    assert not np.allclose(out[0], out[1])
    assert out.min() >= 0 and out.max() <= 1  # bilinear with edge fill never overshoots
