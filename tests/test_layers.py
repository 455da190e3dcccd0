"""Dropout, batch norm, the CNN's convolution and pooling against independent computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from regjax import config as cfg
from regjax.models import BN_EPSILON, BN_MOMENTUM, conv3x3, make_model, max_pool_2x2
from regjax.train import Trainer


def inputs(n=32, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, 28 * 28))


def pre_activation(stack, x):
    layer = stack.hidden[0]
    return jax.nn.relu(x @ layer.kernel[...] + layer.bias[...])


def test_dropout_scales_kept_units_and_keeps_about_one_minus_rate():
    model = make_model(cfg.Config(hidden=(4000,), dropout=0.25))
    x = inputs()
    h = np.asarray(pre_activation(model.head, x))
    out = np.asarray(model.head.features(x, train=True, key=jax.random.key(1)))
    active = h > 0
    kept = out[active] != 0
    # Kept units are scaled by 1 / (1 - rate) (inverted dropout); dropped ones are 0.
    np.testing.assert_allclose(out[active][kept], h[active][kept] / 0.75, rtol=1e-6)
    n = active.sum()
    assert abs(kept.mean() - 0.75) < 4 * np.sqrt(0.75 * 0.25 / n)
    # Identity in evaluation.
    np.testing.assert_allclose(model.head.features(x, train=False), h, rtol=1e-6)


def test_dropout_mask_changes_with_the_key_and_repeats_with_it():
    model = make_model(cfg.Config(hidden=(256,), dropout=0.5))
    x = inputs()
    a = model.head.features(x, train=True, key=jax.random.key(1))
    b = model.head.features(x, train=True, key=jax.random.key(1))
    c = model.head.features(x, train=True, key=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert np.mean(np.asarray(a != c)) > 0.2


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_every_step_draws_a_fresh_dropout_mask(rate):
    """Two steps on identical batches, with a learning rate too small to change anything,
    have different losses exactly when dropout draws a new mask each step."""
    t = Trainer(cfg.Config(hidden=(256,), dropout=rate, learning_rate=1e-12))
    image = jax.random.randint(jax.random.key(0), (1, 28, 28), 0, 256, jnp.uint8)
    images, labels = jnp.tile(image, (128, 1, 1)), jnp.full(128, 3, jnp.int32)
    first = t.train_epoch(t.init_state(), images, labels, 0, num_steps=1)[1]["loss"]
    both = t.train_epoch(t.init_state(), images, labels, 0, num_steps=2)[1]["loss"]
    second = 2 * both - first  # both is the mean over the two steps' rows
    if rate:
        assert abs(second - first) > 1e-3
    else:
        assert second == pytest.approx(first, abs=1e-5)


def test_batchnorm_uses_batch_statistics_in_training_and_updates_moving_averages():
    model = make_model(cfg.Config(hidden=(16,), batchnorm=True))
    bn = model.head.norms[0]
    bn.scale[...] = jnp.linspace(0.5, 2.0, 16)
    bn.bias[...] = jnp.linspace(-1.0, 1.0, 16)
    x = inputs()
    h = np.asarray(pre_activation(model.head, x), np.float64)
    mean, var = h.mean(0), h.var(0)
    out = model.head.features(x, train=True)
    expected = (h - mean) / np.sqrt(var + BN_EPSILON) * np.asarray(bn.scale[...]) + np.asarray(bn.bias[...])
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.mean[...], BN_MOMENTUM * 0 + (1 - BN_MOMENTUM) * mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bn.var[...], BN_MOMENTUM * 1 + (1 - BN_MOMENTUM) * var, rtol=1e-5)
    # Evaluation uses the moving statistics, not the batch's.
    moving_mean, moving_var = np.asarray(bn.mean[...]), np.asarray(bn.var[...])
    out = model.head.features(x, train=False)
    expected = ((h - moving_mean) / np.sqrt(moving_var + BN_EPSILON) * np.asarray(bn.scale[...])
                + np.asarray(bn.bias[...]))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(bn.mean[...], moving_mean)  # evaluation changes nothing


def test_batchnorm_statistics_ignore_padded_rows():
    model = make_model(cfg.Config(hidden=(16,), batchnorm=True))
    x = inputs(32)
    mask = jnp.arange(32) < 20
    model.head.features(x, train=True, mask=mask)
    masked_mean = np.asarray(model.head.norms[0].mean[...])
    reference = make_model(cfg.Config(hidden=(16,), batchnorm=True))
    reference.head.features(x[:20], train=True)
    np.testing.assert_allclose(masked_mean, reference.head.norms[0].mean[...], rtol=1e-5)


def test_conv3x3_matches_lax_convolution():
    images = jax.random.normal(jax.random.key(0), (3, 28, 28, 1))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 1, 32))
    expected = jax.lax.conv_general_dilated(images, kernel, (1, 1), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(conv3x3(images, kernel), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 26, 26, 4), (1, 7, 5, 3)])
def test_max_pool_values_and_gradient_match_reduce_window(shape):
    x = jax.random.normal(jax.random.key(0), shape)

    def reference(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                     "VALID")

    np.testing.assert_array_equal(max_pool_2x2(x), reference(x))
    weights = jax.random.normal(jax.random.key(1), reference(x).shape)
    np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(max_pool_2x2(x) * weights))(x),
                               jax.grad(lambda x: jnp.sum(reference(x) * weights))(x))


def test_max_pool_gradient_goes_to_the_first_of_tied_maxima():
    x = jnp.array([[1.0, 1.0, 0.0, 2.0], [1.0, 1.0, 2.0, 2.0]]).reshape(1, 2, 4, 1)
    grad = jax.grad(lambda x: max_pool_2x2(x).sum())(x)
    np.testing.assert_array_equal(grad[0, :, :, 0], [[1, 0, 0, 1], [0, 0, 0, 0]])
