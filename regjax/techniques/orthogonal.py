"""Keras' orthogonal regularizer (keras.regularizers.OrthogonalRegularizer(F, mode="rows"))
on the hidden Dense kernels: each kernel's rows (a unit of the layer below's outgoing
weights) L2-normalised, loss += F * 0.5 * sum |r_i . r_j| over the pairs i != j divided by
the number of pairs n (n - 1) / 2 (so each pair is counted twice, as Keras counts it). It
acts on 2-D kernels only (Keras refuses others), so the CNN's convolution is left out."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from regjax.fields import LOSS, NONNEGATIVE, setting
from regjax.techniques.base import Preset, Technique

KERAS_EPSILON = 1e-7  # keras.ops.normalize's lower bound on the norm


def orthogonal_penalty(kernel, factor):
    """Keras' OrthogonalRegularizer(factor, mode="rows") of one [in, out] kernel."""
    inv_norm = jnp.minimum(jax.lax.rsqrt(jnp.sum(jnp.square(kernel), axis=1, keepdims=True)),
                           1.0 / KERAS_EPSILON)
    rows = kernel * inv_norm
    product = rows @ rows.T
    size = kernel.shape[0]
    off_diagonal = product * (1.0 - jnp.eye(size, dtype=kernel.dtype))
    return factor * 0.5 * jnp.sum(jnp.abs(off_diagonal)) / (size * (size - 1.0) / 2.0)


TECHNIQUE = Technique(
    "orthogonal",
    {"orthogonal": setting(
        0.0, LOSS, "loss += F * the mean |cosine| between the rows of each hidden Dense "
        "kernel (keras.regularizers.OrthogonalRegularizer(F, mode='rows'))", metavar="F",
        valid=NONNEGATIVE, vary="program", sweep=True)},
    presets={"orthogonal": Preset(dict(orthogonal=0.01), "baseline + "
                                  "OrthogonalRegularizer(0.01, mode='rows') on the hidden "
                                  "kernels", 3, 5)},
    place="penalty", order=3,
    penalty=lambda kernels, knobs: sum(orthogonal_penalty(k, knobs.orthogonal)
                                       for k in kernels if k.ndim == 2),
)
