"""Adam as Keras implements it, against keras.optimizers.Adam itself."""

import jax.numpy as jnp
import keras
import numpy as np
import optax
import pytest

from regjax.nn.optim import keras_adam


def gradient_sequence(steps=200, shape=(50,), seed=0):
    """Gradients of all scales, some near zero (where the epsilon's form matters most)."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-6, 0, shape)
    return [(rng.normal(size=shape) * scale).astype(np.float32) for _ in range(steps)]


def keras_trajectory(w0, grads, learning_rate):
    variable = keras.Variable(w0)
    optimizer = keras.optimizers.Adam(learning_rate)
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    return np.asarray(variable.value)


def optax_trajectory(opt, w0, grads):
    params = jnp.asarray(w0)
    state = opt.init(params)
    for g in grads:
        updates, state = opt.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
    return np.asarray(params)


@pytest.mark.parametrize("learning_rate", [1e-3, 1e-2])
def test_keras_adam_matches_keras_optimizer_over_200_steps(learning_rate):
    """Keras' defaults (b1 0.9, b2 0.999, epsilon 1e-7 added before bias correction). Both
    run the same float32 formulas; the weights agree to a few ulps of their size (~1e-7)."""
    grads = gradient_sequence()
    w0 = np.random.default_rng(1).normal(size=50).astype(np.float32)
    theirs = keras_trajectory(w0, grads, learning_rate)
    ours = optax_trajectory(keras_adam(learning_rate), w0, grads)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    # The check can tell optax's Adam (epsilon 1e-8 after bias correction) from Keras'.
    other = optax_trajectory(optax.adam(learning_rate), w0, grads)
    assert np.abs(other - theirs).max() > 100 * 1e-6
