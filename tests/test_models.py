"""The models: dropout and batch norm against Keras' layers, the CNN's convolution and
pooling against lax's generic primitives, Keras' initialisers by their closed form."""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from scipy import stats

from regjax import config as cfg
from regjax import presets
from regjax.config import Knobs
from regjax.models import make_model
from regjax.models.cnn import MAPS, conv3x3_relu_maxpool
from regjax.nn import layers
from regjax.techniques.batchnorm import EPSILON as BN_EPSILON
from regjax.techniques.batchnorm import MOMENTUM as BN_MOMENTUM
from regjax.techniques.dropout import inverted_dropout
from regjax.techniques.spatial_dropout import spatial_dropout_maps
from regjax.train import step
from tests.helpers import SPEC, make_program


def inputs(n=32, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, 28 * 28))


def pre_activation(stack, x):
    layer = stack.hidden[0]
    return jax.nn.relu(x @ layer.kernel[...] + layer.bias[...])


def features(model, x, *, train, key=None, rows=None):
    """The hidden activations of a registered model's DenseStack, its layers prepared as a
    step prepares them (their knobs as the model holds them)."""
    layers.prepare(model, train=train, key=key, rows=rows)
    return model.head.features(x)


def test_dropout_scales_kept_units_and_keeps_about_one_minus_rate():
    model = make_model(cfg.Config(hidden=(4000,), dropout=0.25), SPEC)
    x = inputs()
    h = np.asarray(pre_activation(model.head, x))
    out = np.asarray(features(model, x, train=True, key=jax.random.key(1)))
    active = h > 0
    kept = out[active] != 0
    # Kept units are scaled by 1 / (1 - rate) (inverted dropout); dropped ones are 0.
    np.testing.assert_allclose(out[active][kept], h[active][kept] / 0.75, rtol=1e-6)
    n = active.sum()
    assert abs(kept.mean() - 0.75) < 4 * np.sqrt(0.75 * 0.25 / n)
    # Identity in evaluation.
    np.testing.assert_allclose(features(model, x, train=False), h, rtol=1e-6)


def test_dropout_mask_changes_with_the_key_and_repeats_with_it():
    model = make_model(cfg.Config(hidden=(256,), dropout=0.5), SPEC)
    x = inputs()
    a = features(model, x, train=True, key=jax.random.key(1))
    b = features(model, x, train=True, key=jax.random.key(1))
    c = features(model, x, train=True, key=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert np.mean(np.asarray(a != c)) > 0.2


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_every_step_draws_a_fresh_dropout_mask(rate):
    """Two steps on identical batches, with a learning rate too small to change anything,
    have different losses exactly when dropout draws a new mask each step."""
    config = cfg.Config(hidden=(256,), dropout=rate, learning_rate=1e-12)
    program, state, rest = make_program(config)
    image = jax.random.randint(jax.random.key(0), (1, 28, 28, 1), 0, 256, jnp.uint8)
    images, labels = jnp.tile(image, (128, 1, 1, 1)), jnp.full(128, 3, jnp.int32)

    def loss(num_steps):
        _, metrics = step.train_epoch(program, state, rest, images, labels, 0,
                                      Knobs.of(config), num_steps)
        return step.per_model(metrics)[0]["loss"]

    first, both = loss(1), loss(2)
    second = 2 * both - first  # both is the mean over the two steps' rows
    if rate:
        assert abs(second - first) > 1e-3
    else:
        assert second == pytest.approx(first, abs=1e-5)


def test_the_trained_model_drops_units_at_its_real_rate(small):
    """The model regjax.fit returns holds its real rates: called with train=True, dropout
    zeroes about a quarter of the hidden units (dropout 0.25), not every one; in evaluation
    mode it is deterministic."""
    import regjax

    config = presets.preset("dropout", hidden=(2000,), epochs=1)
    _, model = regjax.fit(config, *small[:2], log=lambda _: None)
    x = jnp.asarray(small[2].images[:16], jnp.float32) / 255
    layers.prepare(model.module, train=True, key=jax.random.key(3))
    hidden = np.asarray(model.module.head.features(x.reshape(16, -1)))
    layers.prepare(model.module, train=False)
    clean = np.asarray(model.module.head.features(x.reshape(16, -1)))
    active = clean > 0
    dropped = np.mean(hidden[active] == 0)
    assert abs(dropped - 0.25) < 5 * np.sqrt(0.25 * 0.75 / active.sum()), dropped
    np.testing.assert_allclose(hidden[active & (hidden != 0)],
                               clean[active & (hidden != 0)] / 0.75, rtol=1e-5)
    logits = np.asarray(model(x, train=True, key=jax.random.key(4)))
    assert np.std(logits) > 1e-2  # not collapsed to the output bias
    np.testing.assert_array_equal(model(x), model(x))


def test_batchnorm_matches_keras_batchnormalization_in_training_and_inference():
    """Outputs and moving statistics against keras.layers.BatchNormalization (momentum 0.99,
    epsilon 1e-3, biased batch variance), two training calls then inference; float32 on
    both sides, agreeing to a few ulps of values of size ~1."""
    model = make_model(cfg.Config(hidden=(16,), batchnorm=True), SPEC)
    bn = model.head.after[0][0].norm
    bn.scale[...] = jnp.linspace(0.5, 2.0, 16)
    bn.bias[...] = jnp.linspace(-1.0, 1.0, 16)
    layer = keras.layers.BatchNormalization()
    layer.build((None, 16))
    layer.set_weights([np.asarray(bn.scale[...]), np.asarray(bn.bias[...]),
                       np.zeros(16, np.float32), np.ones(16, np.float32)])
    for seed in (0, 1):  # training mode: batch statistics, moving averages updated
        x = inputs(seed=seed)
        h = np.asarray(pre_activation(model.head, x))
        np.testing.assert_allclose(features(model, x, train=True, rows=jnp.ones(32)),
                                   layer(h, training=True), rtol=1e-5, atol=1e-5)
        _, _, moving_mean, moving_var = layer.get_weights()
        np.testing.assert_allclose(bn.mean[...], moving_mean, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(bn.var[...], moving_var, rtol=1e-5)
    # Inference: the moving statistics, and nothing changes.
    np.testing.assert_allclose(features(model, x, train=False), layer(h, training=False),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.mean[...], layer.get_weights()[2], rtol=1e-5, atol=1e-7)
    assert (BN_MOMENTUM, BN_EPSILON) == (layer.momentum, layer.epsilon)


def test_dropout_scaling_matches_keras_dropout():
    """Kept units are scaled by 1 / (1 - rate) as keras.layers.Dropout scales them, and
    evaluation is the identity in both."""
    h = jnp.ones((64, 4000))
    ours = np.unique(np.asarray(inverted_dropout(h, 0.25, jax.random.key(0))))
    theirs = np.unique(np.asarray(keras.layers.Dropout(0.25, seed=0)(h, training=True)))
    np.testing.assert_allclose(ours, theirs, rtol=1e-7)  # {0, 1 / 0.75}
    assert len(ours) == 2


def test_spatial_dropout_drops_whole_maps_as_keras_spatialdropout2d():
    """keras.layers.SpatialDropout2D and regjax's draw from different random streams, so
    both are compared on all-ones maps shaped like the CNN's pooled output: every (image,
    channel) map is zeroed whole or kept whole, kept ones scaled by 1 / (1 - rate), and the
    fraction dropped of 400 x 32 maps is the rate within 5 standard errors (0.02) on both
    sides. In evaluation Keras' layer is the identity (regjax draws no mask there)."""
    rate, x = 0.3, jnp.ones((400, 13, 13, 32))
    layer = keras.layers.SpatialDropout2D(rate, seed=0)
    for maps in (np.asarray(spatial_dropout_maps(x, rate, jax.random.key(0))),
                 np.asarray(layer(x, training=True))):
        per_map = maps.reshape(400, 169, 32)
        assert np.all(per_map == per_map[:, :1, :])  # each map constant
        np.testing.assert_allclose(np.unique(maps), [0.0, 1 / (1 - rate)], rtol=1e-6)
        dropped = np.mean(per_map[:, 0, :] == 0)
        assert abs(dropped - rate) < 5 * np.sqrt(rate * (1 - rate) / (400 * 32))
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


def test_the_cnn_drops_its_pooled_maps_in_training_only():
    """The spatial_dropout preset's CNN: in training, the head sees the pooled maps times the
    mask drawn from the feature maps' position (MAPS) under the step's layer key; in
    evaluation the maps as they are. A knob of 0 (a batched model without it) is the
    identity."""
    config = presets.preset("spatial_dropout", hidden=(16,))
    model = make_model(config, SPEC)
    images = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1))
    key = jax.random.key(2)
    pooled = conv3x3_relu_maxpool(images, model.kernel[...], model.bias[...])

    def head(maps):
        layers.prepare(model, train=False)
        return model.head(maps.reshape(8, -1))

    def call(train, knobs=None):
        layers.prepare(model, train=train, key=key, knobs=knobs)
        return model(images)

    masked = spatial_dropout_maps(pooled, 0.2, jax.random.fold_in(key, MAPS))
    np.testing.assert_allclose(call(True), head(masked), rtol=1e-6)
    np.testing.assert_allclose(call(False), head(pooled), rtol=1e-6)
    assert not np.allclose(head(masked), head(pooled), rtol=1e-3)  # the mask bites
    off = Knobs.of(presets.preset("spatial_dropout", hidden=(16,), spatial_dropout=0.0))
    np.testing.assert_array_equal(call(True, off), head(pooled))
    with pytest.raises(ValueError, match="spatial dropout .* needs model cnn"):
        presets.preset("baseline", spatial_dropout=0.2)


def test_batchnorm_statistics_ignore_padded_rows():
    model = make_model(cfg.Config(hidden=(16,), batchnorm=True), SPEC)
    x = inputs(32)
    features(model, x, train=True, rows=(jnp.arange(32) < 20).astype(jnp.float32))
    masked_mean = np.asarray(model.head.after[0][0].norm.mean[...])
    reference = make_model(cfg.Config(hidden=(16,), batchnorm=True), SPEC)
    features(reference, x[:20], train=True, rows=jnp.ones(20))
    # The same float32 sums over the 20 rows in another order (masked: over 32, zeros
    # added): a few ulps of the activations' scale, which near-zero means make relative.
    np.testing.assert_allclose(masked_mean, reference.head.after[0][0].norm.mean[...],
                               rtol=1e-5, atol=1e-6)


def keras_conv_relu_pool(images, kernel, bias):
    """Conv2D(3x3, 'valid', relu) then MaxPooling2D(2x2) with lax's generic primitives."""
    conv = jax.lax.conv_general_dilated(images, kernel, (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.lax.reduce_window(jax.nn.relu(conv + bias), -jnp.inf, jax.lax.max,
                                 (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


@pytest.mark.parametrize("shape", [(3, 28, 28, 1), (2, 9, 12, 1), (2, 32, 32, 3)])
def test_conv_relu_pool_matches_lax_conv_and_reduce_window(shape):
    """One channel (the notebook's) and three (CIFAR's), against lax.conv and reduce_window:
    the outputs, and the gradients of the images, the kernel and the bias."""
    images = jax.random.uniform(jax.random.key(0), shape)
    kernel = jax.random.normal(jax.random.key(1), (3, 3, shape[-1], 32))
    bias = jax.random.normal(jax.random.key(2), (32,)) * 0.3
    expected = keras_conv_relu_pool(images, kernel, bias)
    np.testing.assert_allclose(conv3x3_relu_maxpool(images, kernel, bias), expected,
                               rtol=1e-5, atol=1e-5)
    weights = jax.random.normal(jax.random.key(3), expected.shape)

    def grads(f):
        return jax.grad(lambda *a: jnp.sum(f(*a) * weights), argnums=(0, 1, 2))(
            images, kernel, bias)

    for ours, reference in zip(grads(conv3x3_relu_maxpool), grads(keras_conv_relu_pool)):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


def test_pool_gradient_goes_to_the_first_of_tied_maxima():
    """A blank image gives four equal convolution outputs (the bias) per window: the
    gradient must reach the bias once per window, not four times."""
    images = jnp.zeros((1, 6, 6, 1))
    kernel = jnp.ones((3, 3, 1, 2))
    bias = jnp.array([0.5, -0.5])
    grad_bias = jax.grad(lambda b: conv3x3_relu_maxpool(images, kernel, b).sum())(bias)
    # 2x2 pooled outputs; relu kills the second
    np.testing.assert_array_equal(grad_bias, [4.0, 0.0])
    grad_images = jax.grad(lambda x: conv3x3_relu_maxpool(x, kernel, bias).sum())(images)
    # Each window's winner is its top-left corner output: each sees its own 3x3 patch once.
    expected = np.zeros((6, 6))
    for i in (0, 2):
        for j in (0, 2):
            expected[i:i + 3, j:j + 3] += 1
    np.testing.assert_array_equal(grad_images[0, ..., 0], expected)


@pytest.mark.parametrize("technique", ["baseline", "augmentation"])
def test_initialisers_are_keras_glorot_uniform_by_fan_and_zero_biases(technique):
    """Every kernel is uniform on +-sqrt(6 / (fan_in + fan_out)) (Kolmogorov-Smirnov against
    that distribution), the convolution's fans counting its 3x3 receptive field (fan_in
    3*3*1, fan_out 3*3*32); every bias is zero."""
    model = make_model(presets.preset(technique), SPEC)
    kernels = [layer.kernel[...] for layer in (*model.head.hidden, model.head.output)]
    if technique == "augmentation":
        kernels.insert(0, model.kernel[...])
        assert model.kernel[...].shape == (3, 3, 1, 32)
    for kernel in kernels:
        fan_in = int(np.prod(kernel.shape[:-1]))
        fan_out = int(np.prod(kernel.shape[:-2])) * kernel.shape[-1]
        limit = np.sqrt(6 / (fan_in + fan_out))
        values = np.asarray(kernel).ravel()
        assert np.abs(values).max() <= limit
        assert stats.kstest(values, "uniform", args=(-limit, 2 * limit)).pvalue > 1e-3
    biases = [layer.bias[...] for layer in (*model.head.hidden, model.head.output)]
    biases += [model.bias[...]] if technique == "augmentation" else []
    for bias in biases:
        np.testing.assert_array_equal(bias, 0)
