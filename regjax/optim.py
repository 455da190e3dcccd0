"""Adam as Keras implements it, as an optax transformation.

Keras adds epsilon to sqrt(v) before bias correction ("epsilon hat" form) with a default of
1e-7; optax.adam adds it after correction with a default of 1e-8. The two differ early in
training, so results would not be comparable with the notebook.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class KerasAdamState(NamedTuple):
    count: jax.Array
    m: optax.Updates
    v: optax.Updates


def keras_adam(learning_rate: float = 1e-3, b1: float = 0.9, b2: float = 0.999,
               epsilon: float = 1e-7) -> optax.GradientTransformation:
    def init(params):
        return KerasAdamState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params),
                              jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        del params
        count = state.count + 1
        t = count.astype(jnp.float32)
        m = jax.tree.map(lambda m, g: m + (g - m) * (1 - b1), state.m, grads)
        v = jax.tree.map(lambda v, g: v + (jnp.square(g) - v) * (1 - b2), state.v, grads)
        alpha = learning_rate * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        updates = jax.tree.map(lambda m, v: -alpha * m / (jnp.sqrt(v) + epsilon), m, v)
        return updates, KerasAdamState(count, m, v)

    return optax.GradientTransformation(init, update)
