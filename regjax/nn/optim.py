"""Adam as Keras implements it: pure functions of the gradients, the state and the learning
rate (which may be traced, one per model of a batched run), and the same rule as an optax
transformation, which the techniques' own transformations (AdamW's decay, the weights'
moving average) are chained after.

Keras adds epsilon to sqrt(v) before bias correction ("epsilon hat" form) with a default of
1e-7; optax.adam adds it after correction with a default of 1e-8. The two differ early in
training, so results would not be comparable with the notebook.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

B1, B2, EPSILON = 0.9, 0.999, 1e-7  # Keras' defaults


class AdamState(NamedTuple):
    count: jax.Array
    m: optax.Updates
    v: optax.Updates


def adam_init(params) -> AdamState:
    return AdamState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params),
                     jax.tree.map(jnp.zeros_like, params))


def adam_update(grads, state: AdamState, learning_rate, b1: float = B1, b2: float = B2,
                epsilon: float = EPSILON) -> tuple[optax.Updates, AdamState]:
    """Keras' Adam.update_step: returns (updates to add to the parameters, new state)."""
    count = state.count + 1
    t = count.astype(jnp.float32)
    m = jax.tree.map(lambda m, g: m + (g - m) * (1 - b1), state.m, grads)
    v = jax.tree.map(lambda v, g: v + (jnp.square(g) - v) * (1 - b2), state.v, grads)
    alpha = learning_rate * jnp.sqrt(1 - b2**t) / (1 - b1**t)
    updates = jax.tree.map(lambda m, v: -alpha * m / (jnp.sqrt(v) + epsilon), m, v)
    return updates, AdamState(count, m, v)


def keras_adam(learning_rate=1e-3, b1: float = B1, b2: float = B2,
               epsilon: float = EPSILON) -> optax.GradientTransformation:
    """adam_update as an optax transformation."""

    def update(grads, state, params=None):
        del params
        return adam_update(grads, state, learning_rate, b1, b2, epsilon)

    return optax.GradientTransformation(adam_init, update)
