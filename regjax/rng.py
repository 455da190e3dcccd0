"""Randomness: the key tree of a run, written down once, and random bits (JAX's threefry,
computed with its rounds unrolled).

The key tree. Every random draw of a run comes from one branch of its seed's key; each
branch is `fold_in(parent, branch number)`, and no key is used both as a leaf (to draw) and
as a parent (to derive keys), nor shared between branches:

    root(seed) -> init                       the model's initial weights
               -> data -> subset                 the rows of --train-size
                       -> labels -> flip         which training labels --label-noise replaces
                                 -> class        the class each one gets
               -> train -> epoch(e) -> shuffle           the epoch's order of rows
                                    -> step(i) -> layers     the layers' draws: a layer at
                                                             position p draws from
                                                             fold_in(layers, p)
                                               -> technique(b)  an input technique's draws,
                                                             at the branch b its module
                                                             declares (regjax.techniques)

A key depends only on (seed, epoch, step), so a run is reproducible, any epoch can be
recomputed on resume, and a model trained among others (regjax.train.batched) draws exactly what
it would draw alone.

`bits(key, shape)` returns exactly what `jax.random.bits(key, shape)` returns for a threefry
key (the default `jax.random.key`). JAX lowers threefry on CPU with its 20 rounds inside a
loop, which keeps compilation short but makes every draw a small while loop; in the training
step those loops took about a third of a dropout epoch. Written out as plain elementwise
operations, XLA fuses the whole hash into one vectorised loop (measured: about 4x faster per
draw). Being a pure elementwise function of the key, it is also exact under `jax.vmap`: a
model trained among others draws what it would draw alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Branch numbers: a child is fold_in(parent, number); siblings have different numbers. Under
# a step, LAYERS is the layers' branch; the techniques' branches (1, 2, ...) are declared in
# their modules, and tests/test_rng.py checks that no two techniques that may be combined
# share one.
INIT, TRAIN, DATA = 0, 1, 2
SUBSET, LABELS = 0, 1
FLIP, CLASS = 0, 1
SHUFFLE, STEPS = 0, 1
LAYERS = 0


def root_key(seed) -> jax.Array:
    """The threefry key for `seed`, the root of the run's key tree: threefry whatever JAX's
    default implementation is set to (jax_default_prng_impl), so a seed draws the same
    everywhere and `bits` can compute its hash."""
    return jax.random.key(seed, impl="threefry2x32")


def init_key(seed) -> jax.Array:
    return jax.random.fold_in(root_key(seed), INIT)


def data_key(seed) -> jax.Array:
    return jax.random.fold_in(root_key(seed), DATA)


def subset_key(seed) -> jax.Array:
    return jax.random.fold_in(data_key(seed), SUBSET)


def labels_key(seed) -> jax.Array:
    return jax.random.fold_in(data_key(seed), LABELS)


def epoch_key(seed, epoch) -> jax.Array:
    """The parent of epoch `epoch`'s keys (seed and epoch may be traced)."""
    return jax.random.fold_in(jax.random.fold_in(root_key(seed), TRAIN), epoch)


def shuffle_key(epoch: jax.Array) -> jax.Array:
    return jax.random.fold_in(epoch, SHUFFLE)


def step_key(epoch: jax.Array, step) -> jax.Array:
    """The parent of step `step`'s keys within the epoch whose key is `epoch`."""
    return jax.random.fold_in(jax.random.fold_in(epoch, STEPS), step)


def layers_key(step: jax.Array) -> jax.Array:
    """The parent of the keys of a step's layers (regjax.nn.layers.prepare)."""
    return jax.random.fold_in(step, LAYERS)


def technique_key(step: jax.Array, branch: int) -> jax.Array:
    """The key of the technique whose module declares `branch`, in step `step`."""
    if branch == LAYERS:
        raise ValueError(f"branch {LAYERS} of a step is its layers'; a technique takes another")
    return jax.random.fold_in(step, branch)


# Threefry-2x32 (Salmon et al., 2011, "Parallel random numbers: as easy as 1, 2, 3"), as in
# jax._src.random: five groups of four rounds, a key injection after each group.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, r: int) -> jax.Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array):
    """The Threefry-2x32 block cipher of the counter pair (x0, x1) under the key (k0, k1)."""
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, r) ^ x0
        x0 = x0 + ks[(group + 1) % 3]
        x1 = x1 + ks[(group + 2) % 3] + np.uint32(group + 1)
    return x0, x1


def bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 random bits, equal to jax.random.bits(key, shape) for a threefry key."""
    if jax.random.key_impl(key) != jax.random.key_impl(root_key(0)):
        raise ValueError(f"regjax.rng draws from threefry keys only, got a "
                         f"{jax.random.key_impl(key)} key: derive keys from rng.root_key")
    k0, k1 = jax.random.key_data(key)
    size = int(np.prod(shape, dtype=np.int64))
    if size >= 2**32:
        raise ValueError(f"cannot draw {size} values at once (at most 2**32 - 1)")
    counter = jax.lax.iota(jnp.uint32, size).reshape(shape)
    x0, x1 = threefry2x32(k0, k1, jnp.zeros_like(counter), counter)
    return x0 ^ x1


def uniform(key: jax.Array, shape: tuple[int, ...], minval=0.0, maxval=1.0) -> jax.Array:
    """float32 uniform in [minval, maxval), computed as jax.random.uniform computes it."""
    mantissa = jax.lax.shift_right_logical(bits(key, shape), np.uint32(32 - 23))
    one = np.array(1.0, np.float32).view(np.uint32)
    floats = jax.lax.bitcast_convert_type(mantissa | one, jnp.float32) - 1.0
    minval, maxval = jnp.float32(minval), jnp.float32(maxval)
    return jax.lax.max(minval, floats * (maxval - minval) + minval)


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """float32 standard normal, as jax.random.normal computes it: sqrt(2) * erfinv of a
    uniform in (-1, 1)."""
    low = np.nextafter(np.float32(-1.0), np.float32(0.0))
    return np.float32(np.sqrt(2)) * jax.lax.erf_inv(uniform(key, shape, low, 1.0))


def permutation(key: jax.Array, n: int) -> jax.Array:
    """A uniformly random permutation of range(n), int32: rows ordered by random 32-bit keys,
    ties by row number. One sort is cheaper than jax.random.permutation's repeated sorts."""
    return stable_argsort(bits(key, (n,)))


def stable_argsort(keys: jax.Array) -> jax.Array:
    """np.argsort(keys, kind="stable") of uint32 keys along the last axis, as int32.

    Packing each key and its position into one 64-bit value (key << 32 | position) makes it
    a sort of a single array, which XLA's CPU runtime sorts several times faster than
    argsort's sort of (key, position) pairs; equal keys keep their order, as in a stable
    sort (benchmarks/step_throughput.py measures the epoch). regjax.train.step shuffles an
    epoch's rows with it."""
    positions = jnp.arange(keys.shape[-1], dtype=jnp.uint32)
    with jax.enable_x64():  # local to these ops: the rest of the program stays 32-bit
        packed = keys.astype(jnp.uint64) << 32 | positions.astype(jnp.uint64)
        return (jnp.sort(packed, axis=-1) & 0xFFFFFFFF).astype(jnp.int32)


GAMMA_TRIES = 8  # candidates per draw; all rejected with probability < 1e-10


def log_gamma_from_uniforms(u: jax.Array, a) -> jax.Array:
    """log of a Gamma(a, 1) draw (a > 0; may be traced) from 2 * GAMMA_TRIES + 1 uniforms
    in [0, 1) along the first axis of `u`: Marsaglia and Tsang's method (2000) for shape
    a + 1, times U^(1/a) (their boost for a < 1, used for every a so that one formula serves
    all). The rejection loop is unrolled into GAMMA_TRIES candidates, the first accepted one
    kept: plain elementwise arithmetic, exact under vmap, where jax.random.gamma runs a
    while loop per element (on a CPU that made a MixUp step several times the step itself)."""
    tries = GAMMA_TRIES
    low = np.nextafter(np.float32(-1.0), np.float32(0.0))
    x = np.float32(np.sqrt(2)) * jax.lax.erf_inv(jnp.maximum(2.0 * u[:tries] - 1.0, low))
    d = a + 1.0 - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)
    v = (1.0 + c * x) ** 3
    safe_v = jnp.where(v > 0, v, 1.0)
    accepted = (v > 0) & (jnp.log(u[tries:2 * tries]) <
                          0.5 * x * x + d - d * safe_v + d * jnp.log(safe_v))
    first = jnp.where(jnp.any(accepted, axis=0), jnp.argmax(accepted, axis=0), tries - 1)
    log_v = jnp.take_along_axis(jnp.log(safe_v), first[None], axis=0)[0]
    return jnp.log(d) + log_v + jnp.log(u[2 * tries]) / a


def beta(key: jax.Array, a, b, shape: tuple[int, ...]) -> jax.Array:
    """A Beta(a, b) draw as X / (X + Y) of Gamma(a) and Gamma(b) draws, from their logs (so
    that draws near 0 and 1 for small a and b neither underflow nor divide 0 by 0); every
    uniform it needs from one call of `uniform`."""
    u = uniform(key, (2, 2 * GAMMA_TRIES + 1, *shape))
    return jax.nn.sigmoid(log_gamma_from_uniforms(u[0], a) - log_gamma_from_uniforms(u[1], b))


def bernoulli(key: jax.Array, p, shape: tuple[int, ...]) -> jax.Array:
    """True with probability p, as jax.random.bernoulli computes it."""
    return uniform(key, shape) < p
