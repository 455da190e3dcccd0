"""Adam as Keras implements it."""

import jax.numpy as jnp
import numpy as np
import optax

from regjax.optim import keras_adam


def test_keras_adam_matches_keras_update_rule():
    """Keras' Adam: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
    w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)."""
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-7
    w = np.array([0.5, -1.0, 0.0], np.float64)
    grads = [np.array([0.1, -0.3, 0.0]), np.array([0.2, 0.1, 1e-4]), np.array([-0.5, 0.0, 2.0])]
    opt = keras_adam(lr)
    params = jnp.asarray(w, jnp.float32)
    state = opt.init(params)
    m = np.zeros(3)
    v = np.zeros(3)
    for t, g in enumerate(grads, start=1):
        m += (g - m) * (1 - b1)
        v += (g * g - v) * (1 - b2)
        w = w - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        updates, state = opt.update(jnp.asarray(g, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params, w, rtol=1e-5, atol=1e-7)
