"""Random draws that a model gets the same whether it trains alone or vmapped with others.

regjax draws with XLA's RngBitGenerator ("rbg" keys), several times faster on CPU than
threefry. Key derivation (fold_in, split) is exact under jax.vmap, but generating bits from
a batch of rbg keys is not: the vmapped generator gives every model but the first other
numbers than it would get alone. So bits are drawn by `bits`, whose vmap rule draws them
once per model (a loop unrolled at trace time) and stacks them; `uniform` and `bernoulli`
are jax.random's, built on it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 random bits, as jax.random.bits(key, shape), exact under vmap over keys."""
    return _bits(tuple(shape))(key)


@functools.cache
def _bits(shape: tuple[int, ...]):
    @jax.custom_batching.custom_vmap
    def draw(key):
        return jax.random.bits(key, shape, jnp.uint32)

    @draw.def_vmap
    def draw_each(axis_size, in_batched, key):
        (batched,) = in_batched
        if not batched:
            return draw(key), False
        return jnp.stack([draw(key[i]) for i in range(axis_size)]), True

    return draw


def uniform(key: jax.Array, shape: tuple[int, ...], minval=0.0, maxval=1.0) -> jax.Array:
    """float32 uniform in [minval, maxval), computed as jax.random.uniform computes it."""
    mantissa = jax.lax.shift_right_logical(bits(key, shape), np.uint32(32 - 23))
    one = np.array(1.0, np.float32).view(np.uint32)
    floats = jax.lax.bitcast_convert_type(mantissa | one, jnp.float32) - 1.0
    minval, maxval = jnp.float32(minval), jnp.float32(maxval)
    return jax.lax.max(minval, floats * (maxval - minval) + minval)


def bernoulli(key: jax.Array, p, shape: tuple[int, ...]) -> jax.Array:
    """True with probability p, as jax.random.bernoulli computes it."""
    return uniform(key, shape) < p
