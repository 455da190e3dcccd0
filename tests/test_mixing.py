"""MixUp, CutMix and RandomErasing against their Keras 3 layers: the same draws give the
same images and targets, the draws have Keras' distribution, and the training step trains
on the transformed batch."""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from scipy import stats

from regjax import presets, rng
from regjax.nn import augment, mixing
from regjax.nn.losses import mixed_one_hot
from regjax.techniques import BY_NAME
from tests import keras_oracle as oracle
from tests.helpers import first_step


def test_mixup_transforms_images_and_targets_as_keras_mixup(fashion):
    """Given regjax's partners and weights for a padded batch (40 real rows of 64 slots),
    Keras' MixUp transform produces the same images and targets; the partners are a
    permutation of the real rows, and padded rows are left as they are."""
    images = fashion.train.images[:64].astype(np.float32) / 255
    labels = fashion.train.labels[:64].astype(np.int32)
    weights = (np.arange(64) < 40).astype(np.float32)
    mixed, (partner, lam) = mixing.mixup(jax.random.key(0), jnp.asarray(images), weights,
                                         jnp.float32(0.2))
    partner, lam = np.asarray(partner), np.asarray(lam)
    assert sorted(partner[:40]) == list(range(40)) and list(partner[40:]) == list(range(40, 64))
    assert np.mean(partner[:40] == np.arange(40)) < 0.2  # really shuffled
    layer = keras.layers.MixUp(alpha=0.2)
    transformation = {"mix_weight": lam, "permutation_order": partner}
    theirs = np.asarray(layer.transform_images(images, transformation))
    np.testing.assert_allclose(np.asarray(mixed), theirs, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        np.asarray(mixed_one_hot(labels, 10, (partner, lam))),
        np.asarray(layer.transform_labels(oracle.one_hot(labels), transformation)),
        rtol=1e-6, atol=1e-7)
    same, (_, ones) = mixing.mixup(jax.random.key(0), jnp.asarray(images), weights,
                                   jnp.float32(0.0))  # alpha 0: no mixing at all
    np.testing.assert_array_equal(np.asarray(same), images)
    assert np.all(np.asarray(ones) == 1.0)


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype int64")  # Keras' arange
def test_mixup_draws_as_keras_mixup_draws():
    """The mix weights come from other random streams than Keras', so their distributions
    are compared: 200 batches of Keras' get_random_transformation against 2,000 of
    regjax's (two-sample Kolmogorov-Smirnov; float32 draws pile up at exactly 0 and 1 for
    alpha 0.2 on both sides, which a test against the continuous Beta CDF would reject), and
    regjax's quantiles against scipy's Beta(0.2, 0.2). Each real row is its own partner
    about 1 time in n, as in a uniform permutation."""
    layer = keras.layers.MixUp(alpha=0.2, seed=1)
    theirs = np.concatenate([np.asarray(layer.get_random_transformation(
        np.zeros((64, 28, 28, 1), np.float32))["mix_weight"]) for _ in range(200)])
    draw = jax.jit(jax.vmap(lambda k: mixing.mixup(k, jnp.zeros((64, 28, 28, 1)), jnp.ones(64),
                                                   jnp.float32(0.2))[1]))
    partner, lam = draw(jax.random.split(jax.random.key(2), 2000))
    ours = np.asarray(lam).ravel()
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    np.testing.assert_allclose(np.quantile(ours, levels), stats.beta(0.2, 0.2).ppf(levels),
                               atol=0.01)
    fixed = np.mean(np.asarray(partner) == np.arange(64))
    assert fixed == pytest.approx(1 / 64, abs=5 * np.sqrt(1 / 64 / 128000))


@pytest.mark.parametrize("technique,mix", [("mixup", mixing.mixup), ("cutmix", mixing.cutmix)])
def test_a_training_step_trains_on_the_mixed_batch(fashion, technique, mix):
    """The preset's step reports the loss of the batch mixed with the draws of the step's
    mix key, against the mixed targets, and counts a row correct when the prediction is
    the mixed target's largest class (as Keras' accuracy does)."""
    config = presets.preset(technique)
    reported, images, key, loss_of = first_step(config, fashion)
    x = jnp.asarray(images.astype(np.float32) / 255)
    mixed, mix = mix(rng.technique_key(key, BY_NAME[technique].branch), x, jnp.ones(64),
                     getattr(config, technique))
    loss, correct = loss_of(mixed, mix)
    assert reported["loss"] == pytest.approx(loss, rel=1e-5)
    assert reported["accuracy"] * 64 == correct
    assert reported["loss"] != pytest.approx(loss_of(x)[0], rel=1e-3)


def test_cutmix_boxes_images_and_targets_as_keras_cutmix(fashion):
    """Given regjax's partners and box bounds for a padded batch, Keras' CutMix makes the
    same pixel mask and mix weights (its _generate_batch_mask), and its transform the same
    images and targets as regjax's cutmix; every box lies inside its image."""
    images = fashion.train.images[:64].astype(np.float32) / 255
    labels = fashion.train.labels[:64].astype(np.int32)
    weights = (np.arange(64) < 40).astype(np.float32)
    key = jax.random.key(0)
    partner, bounds = mixing.cutmix_draws(key, weights, 28, 28, 1.0)
    mixed, (partner_again, lam) = mixing.cutmix(key, jnp.asarray(images), weights, 1.0)
    partner, bounds = np.asarray(partner), [np.asarray(b) for b in bounds]
    np.testing.assert_array_equal(np.asarray(partner_again), partner)
    x0, x1, y0, y1 = bounds
    assert np.all((x0 >= 0) & (x1 <= 28) & (y0 >= 0) & (y1 <= 28))
    layer = keras.layers.CutMix(factor=1.0)
    masks, weight = layer._generate_batch_mask((64, 28, 28, 1), (x0, x1, y0, y1))
    masks = np.asarray(masks)
    np.testing.assert_array_equal(np.asarray(augment.box_mask(bounds, 28, 28)), masks)
    np.testing.assert_allclose(np.asarray(lam), np.asarray(weight).ravel(), atol=1e-6)  # f32
    transformation = {"permutation_order": partner, "batch_masks": masks,
                      "mix_weight": np.asarray(weight).ravel()}
    np.testing.assert_array_equal(
        np.asarray(mixed),
        np.asarray(layer.transform_images(images, transformation)))
    np.testing.assert_allclose(
        np.asarray(mixed_one_hot(labels, 10, (partner, lam))),
        np.asarray(layer.transform_labels(oracle.one_hot(labels), transformation)),
        rtol=1e-6, atol=1e-7)
    assert 0 < np.mean(masks) < 1  # boxes of several sizes were pasted
    same, (_, ones) = mixing.cutmix(key, jnp.asarray(images), weights, 0.0)
    np.testing.assert_array_equal(np.asarray(same), images)
    assert np.all(np.asarray(ones) == 1.0)


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype int64")  # Keras' arange
def test_cutmix_mix_weights_are_distributed_as_keras_cutmix_weights():
    """The mix weights (1 - box area) of 200 batches of Keras' CutMix(1.0) against 2,000
    of regjax's (two-sample Kolmogorov-Smirnov): the per-batch alpha, the Beta draws and
    the box geometry all shape this distribution, with point masses at 0 (a box of the
    whole image) and 1 (an empty box). Both are rounded to 1e-6 first: compiled, XLA
    divides by the image area as a multiplication by its rounded reciprocal, which leaves
    2e-8 where Keras' eager division leaves exactly 0."""
    layer = keras.layers.CutMix(factor=1.0, seed=1)
    theirs = np.concatenate([np.asarray(layer.get_random_transformation(
        np.zeros((64, 28, 28, 1), np.float32))["mix_weight"]).ravel() for _ in range(200)])
    draw = jax.jit(jax.vmap(lambda k: mixing.cutmix(k, jnp.zeros((64, 28, 28, 1)), jnp.ones(64),
                                                    1.0)[1][1]))
    ours = np.asarray(draw(jax.random.split(jax.random.key(2), 2000))).ravel()
    ours, theirs = np.round(ours, 6), np.round(theirs, 6)
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    assert stats.ks_2samp(ours, np.sqrt(theirs)).pvalue < 1e-6  # the test tells shapes apart


def test_random_erasing_erases_as_keras_random_erasing(fashion):
    """Given regjax's draws (box bounds, which images, the noise), Keras' RandomErasing
    (value_range (0, 1), the range of regjax's normalised pixels) makes the same mask and
    the same images; the boxes lie inside their images, and factor 0 erases nothing."""
    images = fashion.train.images[:64].astype(np.float32) / 255
    key = jax.random.key(0)
    bounds, applied, fill = augment.erasing_draws(key, (64, 28, 28, 1), 1.0)
    erased = np.asarray(augment.random_erasing(key, jnp.asarray(images), 1.0))
    x0, x1, y0, y1 = (np.asarray(b) for b in bounds)
    assert np.all((x0 >= 0) & (x1 <= 28) & (y0 >= 0) & (y1 <= 28))
    layer = keras.layers.RandomErasing(factor=1.0, value_range=(0, 1))
    masks = np.asarray(layer._generate_batch_mask((64, 28, 28, 1), (x0, x1, y0, y1)))
    np.testing.assert_array_equal(np.asarray(augment.box_mask(bounds, 28, 28)), masks)
    theirs = np.asarray(layer.transform_images(images, {
        "batch_masks": masks, "apply_erasing": np.asarray(applied),
        "fill_value": np.asarray(fill)}))
    np.testing.assert_array_equal(erased, theirs)
    assert 0 < np.mean(np.asarray(applied)) < 1 and np.any(erased != images)
    np.testing.assert_array_equal(
        np.asarray(augment.random_erasing(key, jnp.asarray(images), 0.0)), images)


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype int64")  # Keras' arange
def test_random_erasing_draws_are_distributed_as_keras_draws():
    """Keras' draws and regjax's, 100 batches of 64 against 1,000: the fraction of images
    erased (factor 1: half, as Keras 3.15 computes it, within 5 standard errors), and the
    erased boxes' areas (two-sample Kolmogorov-Smirnov), with the filled pixels N(0, 1)."""
    layer = keras.layers.RandomErasing(factor=1.0, value_range=(0, 1), seed=1)
    theirs = [layer.get_random_transformation(np.zeros((64, 28, 28, 1), np.float32))
              for _ in range(100)]
    their_applied = np.concatenate([np.asarray(t["apply_erasing"]) for t in theirs])
    their_areas = np.concatenate([np.asarray(t["batch_masks"]).reshape(64, -1).sum(1)
                                  for t in theirs])
    draw = jax.jit(jax.vmap(lambda k: augment.erasing_draws(k, (64, 28, 28, 1), 1.0)))
    bounds, applied, fill = draw(jax.random.split(jax.random.key(2), 1000))
    masks = jax.vmap(lambda b: augment.box_mask(b, 28, 28))(bounds)
    our_areas = np.asarray(masks).reshape(-1, 784).sum(1)
    for fraction in (np.mean(np.asarray(applied)), np.mean(their_applied)):
        assert abs(fraction - 0.5) < 5 * np.sqrt(0.25 / 6400)
    assert stats.ks_2samp(our_areas, their_areas).pvalue > 1e-3
    assert stats.ks_2samp(our_areas, their_areas * 1.2).pvalue < 1e-6  # the test bites
    assert stats.kstest(np.asarray(fill)[:20].ravel(), "norm").pvalue > 1e-3


def test_a_training_step_trains_on_the_erased_batch(fashion):
    """The random_erasing preset's step reports the loss of its batch erased with the draws
    of the step's erase key (targets untouched), not of the clean batch."""
    reported, images, key, loss_of = first_step(presets.preset("random_erasing"), fashion)
    x = jnp.asarray(images.astype(np.float32) / 255)
    erase_key = rng.technique_key(key, BY_NAME["random_erasing"].branch)
    erased = augment.random_erasing(erase_key, x, 1.0)
    assert reported["loss"] == pytest.approx(loss_of(erased)[0], rel=1e-5)
    assert reported["loss"] != pytest.approx(loss_of(x)[0], rel=1e-3)
