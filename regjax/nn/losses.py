"""The loss of every technique: cross-entropy on (optionally smoothed) targets plus the
L1/L2 weight penalties, exactly as Keras adds them."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from regjax.config import NUM_CLASSES


def smooth_labels(one_hot: jax.Array, smoothing: float) -> jax.Array:
    """The notebook's formula: y * (1 - s) + s / num_classes."""
    return one_hot * (1.0 - smoothing) + smoothing / one_hot.shape[-1]


def mixed_one_hot(labels: jax.Array, mix=None, dtype=jnp.float32) -> jax.Array:
    """One-hot targets of integer labels; with `mix` = (partner rows, weights lam) from
    regjax.nn.mixing, Keras' mixed targets lam * y + (1 - lam) * y[partner]."""
    one_hot = jax.nn.one_hot(labels, NUM_CLASSES, dtype=dtype)
    if mix is None:
        return one_hot
    partner, lam = mix
    return lam[:, None] * one_hot + (1.0 - lam[:, None]) * one_hot[partner]


def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float = 0.0,
                  mix=None) -> jax.Array:
    """Per-example categorical cross-entropy of softmax(logits) against integer labels with
    smoothed one-hot targets (mixed first, where `mix` is given: mixed_one_hot), computed
    from the logits with log_softmax, as Keras does on TensorFlow (the notebook's
    backend)."""
    targets = smooth_labels(mixed_one_hot(labels, mix, logits.dtype), smoothing)
    return -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)


def l1_penalty(kernels: list[jax.Array], l1: float) -> jax.Array:
    # sign(w) * w equals |w| but differentiates to sign(w), which is 0 at w = 0 as in
    # TensorFlow; jnp.abs has gradient 1 there.
    return l1 * sum(jnp.sum(jnp.sign(k) * k) for k in kernels)


def l2_penalty(kernels: list[jax.Array], l2: float) -> jax.Array:
    # Keras' l2 has no 0.5 factor: the gradient is 2 * l2 * w.
    return l2 * sum(jnp.sum(jnp.square(k)) for k in kernels)


def weight_penalty(kernels: list[jax.Array], l1, l2) -> jax.Array:
    """l1 and l2 are floats (a zero leaves its term out) or traced values."""
    penalty = jnp.zeros((), kernels[0].dtype)
    if isinstance(l1, jax.Array) or l1:
        penalty += l1_penalty(kernels, l1)
    if isinstance(l2, jax.Array) or l2:
        penalty += l2_penalty(kernels, l2)
    return penalty
