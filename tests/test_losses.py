"""Every loss term against Keras (its regularizers, the notebook's smoothed loss) and closed
forms; finite differences only where regjax defines its own derivative."""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import pytest
from flax import nnx
from jax.test_util import check_grads

from regjax import config as cfg
from regjax import presets
from regjax.files.modelfile import named_arrays
from regjax.models import make_model, regularized_kernels
from regjax.nn import tree
from regjax.nn.losses import cross_entropy
from regjax.techniques.l1 import l1_penalty
from regjax.techniques.l2 import l2_penalty
from regjax.techniques.label_smoothing import smooth_labels
from tests import keras_oracle as oracle
from tests.helpers import SPEC, loss_function


def smoothed_loss(logits, labels, smoothing):
    """The notebook's loss: cross-entropy of the one-hot targets smoothed by `smoothing`."""
    return cross_entropy(logits, smooth_labels(jax.nn.one_hot(labels, 10), smoothing))


def batch(n=16, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    images = jax.random.uniform(k1, (n, 28, 28, 1))
    labels = jax.random.randint(k2, (n,), 0, 10)
    return images, labels, jnp.ones(n)


def loss_grads(config, images, labels, weights, key=None, train=True):
    state, loss = loss_function(config)
    return state, jax.grad(lambda p: loss(p, state.batch_stats, images, labels, weights, key,
                                          train))(state.params)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_l1_gradient_is_lambda_sign_on_hidden_kernels_only(model):
    images, labels, w = batch()
    state, plain = loss_function(cfg.Config(model=model, hidden=(32, 16)))
    _, l1 = loss_function(cfg.Config(model=model, hidden=(32, 16), l1=0.01))
    # Zero a column of every kernel: TensorFlow's |w| has gradient 0 there.
    params = jax.tree.map(lambda a: a.at[..., 0].set(0.0) if a.ndim >= 2 else a, state.params)

    def grads(loss):
        return jax.grad(lambda p: loss(p, state.batch_stats, images, labels, w))(params)

    diff = jax.tree.map(lambda a, b: a - b, grads(l1), grads(plain))
    penalised = 0
    for (path, d), p in zip(jax.tree_util.tree_leaves_with_path(diff), jax.tree.leaves(params)):
        name = jax.tree_util.keystr(path)
        hidden_kernel = "['kernel']" in name and "['output']" not in name
        expected = 0.01 * np.sign(p) if hidden_kernel else np.zeros_like(p)
        np.testing.assert_allclose(d, expected, atol=1e-6, err_msg=name)
        penalised += hidden_kernel
    assert penalised == (3 if model == "cnn" else 2)  # the conv kernel and hidden Dense kernels


def test_l2_gradient_is_two_lambda_w():
    kernels = [jnp.array([[0.5, -1.0], [0.0, 2.0]]), jnp.array([3.0, -0.25])]
    grads = jax.grad(lambda ks: l2_penalty(ks, 1e-3))(kernels)
    for g, k in zip(grads, kernels):
        np.testing.assert_allclose(g, 2e-3 * k, rtol=1e-6)
    np.testing.assert_allclose(l2_penalty(kernels, 1e-3), 1e-3 * (5.25 + 9.0625), rtol=1e-6)


def test_l1_value_and_gradient_at_zero():
    k = jnp.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(l1_penalty([k], 0.5), 2.5)
    np.testing.assert_array_equal(jax.grad(lambda k: l1_penalty([k], 0.5))(k), [-0.5, 0.0, 0.5])


def test_full_loss_l2_adds_exactly_penalty_gradient():
    images, labels, w = batch()
    _, g0 = loss_grads(presets.preset("baseline"), images, labels, w)
    s2, g2 = loss_grads(presets.preset("l2"), images, labels, w)
    kernels = [s2.params["head"]["hidden"][i]["kernel"][...] for i in range(2)]
    hidden = [g2["head"]["hidden"][i]["kernel"][...] - g0["head"]["hidden"][i]["kernel"][...]
              for i in range(2)]
    for d, k in zip(hidden, kernels):
        np.testing.assert_allclose(d, 2e-3 * k, atol=1e-6)
    np.testing.assert_allclose(g2["head"]["output"]["kernel"][...],
                               g0["head"]["output"]["kernel"][...], atol=1e-7)


def test_smooth_labels_is_the_notebook_formula():
    y = jax.nn.one_hot(jnp.array([3, 0]), 10)
    expected = np.asarray(y) * (1 - 0.1) + 0.1 / 10
    np.testing.assert_allclose(smooth_labels(y, 0.1), expected, rtol=1e-7)
    np.testing.assert_allclose(smooth_labels(y, 0.1), optax.smooth_labels(y, 0.1), rtol=1e-7)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_smoothed_cross_entropy_value_and_gradient(smoothing):
    logits = jax.random.normal(jax.random.key(1), (5, 10)) * 3
    labels = jnp.array([0, 3, 9, 3, 7])
    targets = np.asarray(smooth_labels(jax.nn.one_hot(labels, 10), smoothing))
    p = np.asarray(jax.nn.softmax(logits))
    np.testing.assert_allclose(smoothed_loss(logits, labels, smoothing),
                               -(targets * np.log(p)).sum(-1), rtol=1e-5)
    grad = jax.grad(lambda z: smoothed_loss(z, labels, smoothing).sum())(logits)
    np.testing.assert_allclose(grad, p - targets, atol=1e-6)


@pytest.mark.parametrize("l1,l2", [(1e-3, 0.0), (0.0, 1e-3), (0.01, 0.003)])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_penalties_match_keras_regularizers_on_the_same_model(model, l1, l2):
    """The penalty regjax adds equals the regularization losses Keras collects from the
    equivalent model (kernel_regularizer on the hidden layers, not biases, not the output
    layer): the same float32 sums, to a few ulps."""
    config = cfg.Config(model=model, hidden=(32, 16), l1=l1, l2=l2)
    module = make_model(config, SPEC)
    _, params, batch_stats, _ = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
    keras_model = oracle.keras_model(config)
    keras_model.set_weights(oracle.keras_weights(named_arrays(params, batch_stats), config))
    kernels = tree.arrays_at(params, regularized_kernels(module))
    penalty = l1_penalty(kernels, l1) + l2_penalty(kernels, l2)
    np.testing.assert_allclose(penalty, sum(float(x) for x in keras_model.losses), rtol=1e-5)
    k = kernels[0]
    if l1:
        np.testing.assert_allclose(l1_penalty([k], l1), keras.regularizers.l1(l1)(k), rtol=1e-5)
    if l2:
        np.testing.assert_allclose(l2_penalty([k], l2), keras.regularizers.l2(l2)(k), rtol=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_the_notebooks_loss_from_logits(smoothing):
    """Against the notebook's custom_loss (categorical_crossentropy of y * (1 - s) + s / 10)
    computed by Keras from the logits, as Keras does on TensorFlow; confident and wrong
    rows included (where Keras' JAX-backend clipping of probabilities would differ)."""
    logits = jax.random.normal(jax.random.key(1), (64, 10)) * 12
    labels = jax.random.randint(jax.random.key(2), (64,), 0, 10)
    theirs = oracle.notebook_loss(smoothing)(oracle.one_hot(np.asarray(labels)), logits)
    np.testing.assert_allclose(smoothed_loss(logits, labels, smoothing), theirs, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("technique", ["l1", "augmentation"])
def test_full_loss_matches_finite_differences_in_float64(technique):
    """Only where regjax writes its own derivative: l1's sign(w) * w (gradient 0 at w = 0,
    as TensorFlow's) and the CNN's patch convolution with its first-maximum pooling rule.
    Elsewhere the gradient is JAX's autodiff of plain jnp code, which this would test instead
    of regjax (the Keras train_on_batch tests in test_step.py check those gradients' use)."""
    config = presets.preset(technique, hidden=(12, 8) if technique != "augmentation" else (6,))
    with jax.enable_x64(True):
        state, full_loss = loss_function(config)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), state.params)
        stats = jax.tree.map(lambda a: a.astype(jnp.float64), state.batch_stats)
        k1, k2 = jax.random.split(jax.random.key(3))
        images = jax.random.uniform(k1, (6, 28, 28, 1), dtype=jnp.float64)
        labels = jax.random.randint(k2, (6,), 0, 10)

        def loss(params):
            return full_loss(params, stats, images, labels, jnp.ones(6, jnp.float64))

        check_grads(loss, (params,), order=1, modes=["rev"], eps=1e-6, atol=1e-5, rtol=1e-5)
