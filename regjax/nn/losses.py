"""The loss every technique shares: categorical cross-entropy of softmax(logits) against
one-hot targets (mixed where MixUp or CutMix mixed the batch), computed from the logits as
Keras computes it on TensorFlow, the notebook's backend. The techniques' own terms (weight
penalties, smoothed targets) are their modules' (regjax.techniques)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mixed_one_hot(labels: jax.Array, classes: int, mix=None, dtype=jnp.float32) -> jax.Array:
    """One-hot targets [B, classes] of integer labels; with `mix` = (partner rows, weights
    lam) from regjax.nn.mixing, Keras' mixed targets lam * y + (1 - lam) * y[partner]."""
    one_hot = jax.nn.one_hot(labels, classes, dtype=dtype)
    if mix is None:
        return one_hot
    partner, lam = mix
    return lam[:, None] * one_hot + (1.0 - lam[:, None]) * one_hot[partner]


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example categorical cross-entropy of softmax(logits) against `targets` (one-hot,
    mixed or smoothed), from the logits with log_softmax, as Keras does on TensorFlow."""
    return -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)
