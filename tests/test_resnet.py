"""The resnet model against the same network built in Keras from the same weights, and
stochastic depth against timm's drop_path formula in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from regjax import presets, rng
from regjax.config import Knobs
from regjax.data.split import DataSpec
from regjax.models import make_model
from regjax.models.resnet import STAGES
from regjax.nn import layers
from regjax.techniques import stochastic_depth as sd


def keras_resnet(model, spec: DataSpec):
    """The network of regjax.models.resnet in Keras' functional API, its layers given the
    regjax model's weights and statistics as each is built."""
    import keras
    from keras import layers as kl

    def conv(module, filters, size, stride):
        layer = kl.Conv2D(filters, size, strides=stride, padding="same", use_bias=False)
        layer.build((None, None, None, module.kernel[...].shape[2]))
        layer.set_weights([np.asarray(module.kernel[...])])
        return layer

    def norm(module):
        layer = kl.BatchNormalization()  # momentum 0.99, epsilon 1e-3: Keras' defaults
        n = module.norm
        layer.build((None, None, None, n.num_features))
        layer.set_weights([np.asarray(a) for a in (n.scale[...], n.bias[...], n.mean[...],
                                                   n.var[...])])
        return layer

    inputs = keras.Input(spec.shape)
    x = kl.ReLU()(norm(model.norm)(conv(model.stem, STAGES[0], 3, 1)(inputs)))
    for block in model.blocks:
        cout, stride = block.conv1.kernel[...].shape[-1], block.conv1.stride
        y = kl.ReLU()(norm(block.norm1)(conv(block.conv1, cout, 3, stride)(x)))
        y = norm(block.norm2)(conv(block.conv2, cout, 3, 1)(y))
        if len(block.shortcut):
            x = norm(block.shortcut[1])(conv(block.shortcut[0], cout, 1, stride)(x))
        x = kl.ReLU()(kl.Add()([x, y]))
    dense = kl.Dense(spec.classes)
    dense.build((None, STAGES[-1]))
    dense.set_weights([np.asarray(model.output.kernel[...]), np.asarray(model.output.bias[...])])
    return keras.Model(inputs, dense(kl.GlobalAveragePooling2D()(x)))


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_the_resnet_computes_what_the_same_network_in_keras_computes(fashion, shape):
    """From the same weights, with batch-norm scales, offsets and moving statistics set to
    random values (so that a mixed-up statistic shows): the logits in evaluation (moving
    statistics) and in training (the batch's statistics), against Keras' model. float32
    convolutions summed in another order: 1e-4 relative to the logits' scale."""
    spec = DataSpec(shape, 10)
    model = make_model(presets.preset("stochastic_depth", stochastic_depth=0.0), spec, 0)
    gen = np.random.default_rng(0)
    for _, module in nnx.iter_modules(model):
        if hasattr(module, "norm") and hasattr(module.norm, "mean"):
            n = module.norm
            n.scale.set_value(jnp.asarray(gen.uniform(0.5, 1.5, n.scale[...].shape),
                                          jnp.float32))
            n.bias.set_value(jnp.asarray(gen.normal(0, 0.1, n.bias[...].shape), jnp.float32))
            n.mean.set_value(jnp.asarray(gen.normal(0, 0.1, n.mean[...].shape), jnp.float32))
            n.var.set_value(jnp.asarray(gen.uniform(0.5, 2, n.var[...].shape), jnp.float32))
    keras_model = keras_resnet(model, spec)
    if shape[2] == 1:
        x = fashion.test.images[:16].astype(np.float32) / 255  # [16, 28, 28, 1]
    else:
        x = gen.random((16, *shape), np.float32)
    for train in (False, True):
        layers.prepare(model, train=train, knobs=Knobs.of(presets.preset("stochastic_depth")),
                       key=jax.random.key(0), rows=jnp.ones(16))
        ours = np.asarray(model(jnp.asarray(x)))
        theirs = np.asarray(keras_model(x, training=train))
        np.testing.assert_allclose(ours, theirs, atol=1e-4 * np.abs(theirs).max(), rtol=0,
                                   err_msg=f"train={train}")
        assert np.abs(theirs).max() > 1e-2  # the logits are not all zero


def test_drop_path_is_timms_formula():
    """timm's drop_path in numpy: x * (bernoulli(1 - p) / (1 - p)) with one draw per example,
    from the same draws (regjax's bits for the key); a fraction p of 20,000 examples dropped
    (within 5 binomial standard deviations), each whole."""
    p, n = 0.2, 20_000
    x = np.random.default_rng(1).normal(size=(n, 4, 4, 2)).astype(np.float32)
    key = jax.random.key(3)
    ours = np.asarray(sd.drop_path(jnp.asarray(x), p, key))
    kept = np.asarray(rng.bernoulli(key, 1 - p, (n, 1, 1, 1)))
    timm = x * (kept.astype(np.float32) / np.float32(1 - p))
    np.testing.assert_allclose(ours, timm, rtol=1e-6, atol=0)
    dropped = np.all(ours == 0, axis=(1, 2, 3))
    assert np.all(dropped | np.all(ours != 0, axis=(1, 2, 3)))  # whole examples
    assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_array_equal(np.asarray(sd.drop_path(jnp.asarray(x), 0.0, key)), x)


def test_each_block_drops_with_a_rate_growing_linearly_to_p():
    """timm's schedule, linspace(0, P, depth): block i of 6 at P * i / 5, each drawing from
    its own key, in training only."""
    config = presets.preset("stochastic_depth", stochastic_depth=0.3)
    model = make_model(config, DataSpec((28, 28, 1), 10), 0)
    paths = [block.branch[0] for block in model.blocks]
    np.testing.assert_allclose([p.depth * 0.3 for p in paths], np.linspace(0, 0.3, 6))
    assert [p.key.position for p in paths] == list(range(6))
    n = 20_000
    ones = jnp.ones((n, 1, 1, 1))
    layers.prepare(model, train=True, knobs=Knobs.of(config), key=jax.random.key(5))
    for i, path in enumerate(paths):
        rate = 0.3 * i / 5
        dropped = float(np.mean(np.asarray(path(ones)) == 0))
        assert abs(dropped - rate) <= 5 * np.sqrt(max(rate * (1 - rate), 1e-12) / n), i
    layers.prepare(model, train=False)
    np.testing.assert_array_equal(np.asarray(paths[-1](ones)), np.asarray(ones))


def test_stochastic_depth_needs_a_residual_model_and_the_resnet_takes_no_dense_layers():
    with pytest.raises(ValueError, match="stochastic depth skips residual blocks: it needs "
                                         "model resnet"):
        presets.preset("stochastic_depth", model="mlp").validate()
    with pytest.raises(ValueError, match="dropout places its layers where model resnet has no "
                                         "place for them: it needs model mlp or cnn"):
        presets.preset("dropout", model="resnet").validate()
