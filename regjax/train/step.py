"""The compiled program: pure functions of a model's state, the data and the knobs.

`loss`, `train_step`, `train_epoch` and `evaluate` are plain functions; the host loops
(regjax.train.fit for one model, regjax.train.batched for many) jit them, a batched run
maps them over a model axis. Their first argument, a `Program`, is static: the model's graph
and the config that decides which layers and loss terms exist. Everything that may differ
between models trained together (seed, penalties, dropout rate, smoothing, learning rate,
augmentation ranges) comes in as `Knobs`, always passed explicitly.

The whole dataset sits on the device as uint8. One call of `train_epoch` draws the epoch's
permutation, gathers each batch by index, normalises and augments it and takes the optimizer
step, all under `lax.scan`. The partial last batch is padded to full size and masked, so
shapes never change and no row is dropped or repeated. Keys come from regjax.rng's key tree.

Why one module of some 260 lines: the compiled program is read as one piece, from an epoch's
batch order through the loss and the optimizer step to the evaluation; cut in two, a reader
would page between files to follow one step.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from regjax import rng
from regjax.config import KNOBS, NUM_CLASSES, Config
from regjax.nn import augment, mixing
from regjax.nn.losses import cross_entropy, mixed_one_hot, weight_penalty
from regjax.nn.models import make_model
from regjax.nn.optim import AdamState, adam_init, adam_update

KERAS_EPSILON = 1e-7  # keras.backend.epsilon()
EVAL_CHUNK = 2000  # rows per evaluation chunk (fixed, so any split size compiles once)


class TrainState(NamedTuple):
    params: nnx.State
    batch_stats: nnx.State
    opt_state: AdamState


class Knobs(collections.namedtuple("Knobs", KNOBS)):
    """The settings that may differ between models trained together (config.KNOBS), as
    arrays: scalars for one model, one value per model along a leading axis for many."""

    __slots__ = ()

    @classmethod
    def of(cls, configs: Config | list[Config]) -> "Knobs":
        """One config's knobs as scalars, or a list's stacked along a leading model axis."""
        many = isinstance(configs, list)
        values = configs if many else [configs]
        stacked = cls(*(np.asarray([getattr(c, name) for c in values],
                                   np.int32 if name == "seed" else np.float32)
                        for name in cls._fields))
        return stacked if many else jax.tree.map(lambda a: a[0], stacked)


class Metrics(NamedTuple):
    """Sums over examples; divided by `count` on the host (per_model)."""

    loss: jax.Array  # per-example (cross-entropy + penalty), summed
    correct: jax.Array
    count: jax.Array


@dataclasses.dataclass(frozen=True)
class Program:
    """What a compiled program is built for: the model's graph and the structure of the
    config (Config.structure: which layers and loss terms exist, the batch size; the knob
    values, the seed and the host-side settings do not enter it, so runs that differ only
    in those share one trace and one compiled program). The values used come from Knobs.
    With `batch_sharding` (data parallelism), each training batch is split along its rows
    between devices; the arithmetic stays that of the whole batch (XLA sums the gradients
    and the batch-norm statistics across devices)."""

    config: Config
    graphdef: Any
    batch_sharding: Any = None


def program_of(config: Config) -> Program:
    """The program for `config` and every config of its structure, without initialising any
    weights (from shapes)."""
    structure = config.structure()
    model = nnx.eval_shape(lambda: make_model(structure))
    return Program(structure, nnx.split(model, nnx.Param, nnx.BatchStat)[0])


def make_program(config: Config) -> tuple[Program, TrainState]:
    """The program for `config` and the initial state of its model (weights drawn from the
    init branch of config.seed's key tree, Adam's moments zero)."""
    _, params, batch_stats = nnx.split(make_model(config), nnx.Param, nnx.BatchStat)
    return program_of(config), TrainState(params, batch_stats,
                                          adam_init(params, ema=bool(config.ema)))


# ------------------------------------------------------------------------------ the data

def epoch_batches(key: jax.Array, n: int, batch: int) -> tuple[jax.Array, jax.Array]:
    """An epoch's batches as row indices [steps, batch] and weights [steps, batch]: a fresh
    permutation of range(n), padded to whole batches; padded slots have weight 0, so every
    row is trained on exactly once and the partial last batch keeps a fixed shape."""
    steps = math.ceil(n / batch)
    order = rng.permutation(key, n)
    order = jnp.concatenate([order, jnp.zeros(steps * batch - n, order.dtype)])
    weights = (jnp.arange(steps * batch) < n).astype(jnp.float32)
    return order.reshape(steps, batch), weights.reshape(steps, batch)


def normalize(images: jax.Array) -> jax.Array:
    """uint8 pixels to float32 in [0, 1], as the notebook's `x / 255.0`."""
    return images.astype(jnp.float32) / 255.0


# --------------------------------------------------------------------------- the program

def loss(program: Program, params, batch_stats, images, labels, weights, key,
         knobs: Knobs, *, train: bool, mix=None):
    """Mean cross-entropy over the weighted rows plus the weight penalty, as Keras reports
    it. `images` are float [B, 28, 28]; `key` is the step's dropout key (None when not
    training); `mix`, MixUp's partners and weights (regjax.nn.mixing), makes the targets mixed
    (accuracy then counts the mixed target's largest class, as Keras' accuracy does).
    Returns (loss, (new batch stats, Metrics))."""
    c = program.config
    # copy: fresh Variables belonging to this trace, which batch norm may update.
    model = nnx.merge(program.graphdef, params, batch_stats, copy=True)
    logits = model(images, train=train, key=key, mask=weights > 0, dropout=knobs.dropout,
                   spatial_dropout=knobs.spatial_dropout)
    per_example = cross_entropy(logits, labels, knobs.label_smoothing, mix)
    count = jnp.sum(weights)
    total = jnp.sum(per_example * weights)
    # A penalty the structure lacks costs nothing; one it has takes each model's value.
    penalty = weight_penalty(model.regularized_kernels(), knobs.l1 if c.l1 else 0.0,
                             knobs.l2 if c.l2 else 0.0)
    mean = total / jnp.maximum(count, 1.0) + penalty
    target = labels if mix is None else jnp.argmax(mixed_one_hot(labels, mix), -1)
    correct = jnp.sum((jnp.argmax(logits, -1) == target) * weights)
    return mean, (nnx.state(model, nnx.BatchStat), Metrics(total + penalty * count, correct, count))


def train_step(program: Program, state: TrainState, images, labels, weights, key,
               knobs: Knobs) -> tuple[TrainState, Metrics]:
    """One optimizer step on a batch of uint8 images; `key` is the step's key."""
    x = normalize(images)
    if program.config.augment:
        x = augment.random_affine(
            rng.augment_key(key), x, rotation_range=knobs.rotation_range,
            shift_range=knobs.shift_range, shear_range=knobs.shear_range,
            zoom_range=knobs.zoom_range)
    if program.config.random_erasing:  # keras.layers.RandomErasing, after the affine warp
        x = augment.random_erasing(rng.erase_key(key), x, knobs.random_erasing)
    mix = None
    if program.config.mixup:  # keras.layers.MixUp in the input pipeline, after augmenting
        x, mix = mixing.mixup(rng.mix_key(key), x, weights, knobs.mixup)
    if program.config.cutmix:  # keras.layers.CutMix, likewise
        x, mix = mixing.cutmix(rng.mix_key(key), x, weights, knobs.cutmix)
    if program.config.gaussian_noise:  # keras.layers.GaussianNoise on the model's inputs
        x = x + knobs.gaussian_noise * rng.normal(rng.noise_key(key), x.shape)
    grads, (batch_stats, metrics) = jax.grad(loss, argnums=1, has_aux=True)(
        program, state.params, state.batch_stats, x, labels, weights, rng.dropout_key(key),
        knobs, train=True, mix=mix)
    updates, opt_state = adam_update(grads, state.opt_state, knobs.learning_rate)
    params = state.params
    if program.config.weight_decay:  # Keras' AdamW: decayed first, then Adam's update
        params = jax.tree.map(lambda p: p - p * knobs.weight_decay * knobs.learning_rate,
                              params)
    params = optax.apply_updates(params, updates)
    if program.config.ema:  # Keras' use_ema: averaged after the update, before constraints
        momentum = jnp.where(state.opt_state.count == 0, 0.0, knobs.ema)
        opt_state = opt_state._replace(ema=jax.tree.map(
            lambda a, w: momentum * a + (1.0 - momentum) * w, opt_state.ema, params))
    if program.config.max_norm:  # Keras applies constraints after the update
        params = constrain_max_norm(program, params, batch_stats, knobs.max_norm)
    return TrainState(params, batch_stats, opt_state), metrics


def constrain_max_norm(program: Program, params, batch_stats, max_norm):
    """keras.constraints.MaxNorm(max_norm, axis=0) on each hidden Dense kernel: every
    column (a unit's incoming weights) scaled by clip(norm, 0, c) / (1e-7 + norm), which
    also shrinks a column under the bound by norm / (1e-7 + norm), as Keras does. A model
    of a batched run whose max_norm is 0 keeps its weights as they are."""
    model = nnx.merge(program.graphdef, params, batch_stats, copy=True)
    for layer in model.head.hidden:
        w = layer.kernel[...]
        norms = jnp.sqrt(jnp.sum(jnp.square(w), axis=0, keepdims=True))
        scaled = w * (jnp.clip(norms, 0, max_norm) / (KERAS_EPSILON + norms))
        layer.kernel[...] = jnp.where(max_norm > 0, scaled, w)
    return nnx.state(model, nnx.Param)


def train_epoch(program: Program, state: TrainState, images, labels, epoch, knobs: Knobs,
                num_steps: int | None = None) -> tuple[TrainState, Metrics]:
    """Epoch `epoch` (0-based) over all rows (or its first `num_steps` steps); returns the
    new state and the epoch's metric sums."""
    key = rng.epoch_key(knobs.seed, epoch)
    n = labels.shape[0]
    # A batch larger than the data is one batch of all rows, as in Keras (no padding).
    rows, weights = epoch_batches(rng.shuffle_key(key), n, min(program.config.batch_size, n))

    def step(state, inputs):
        i, rows, w = inputs
        batch = images[rows], labels[rows], w
        if program.batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, program.batch_sharding)
        return train_step(program, state, *batch, rng.step_key(key, i), knobs)

    inputs = jax.tree.map(lambda a: a[:num_steps], (jnp.arange(len(rows)), rows, weights))
    state, metrics = jax.lax.scan(step, state, inputs)
    return state, jax.tree.map(jnp.sum, metrics)


def eval_chunks(n: int) -> tuple[jax.Array, jax.Array]:
    """Rows 0..n-1 in chunks of EVAL_CHUNK [chunks, EVAL_CHUNK], the last one padded with
    repeats of row n-1, and the rows' weights (0 for the padding)."""
    chunks = math.ceil(n / EVAL_CHUNK)
    rows = jnp.arange(chunks * EVAL_CHUNK)
    weights = (rows < n).astype(jnp.float32).reshape(chunks, EVAL_CHUNK)
    return jnp.minimum(rows, n - 1).reshape(chunks, EVAL_CHUNK), weights


def predict(program: Program, params, batch_stats, images) -> jax.Array:
    """The model's class probabilities (softmax) [n, 10] for uint8 images, in evaluation
    mode, chunk by chunk."""
    rows, _ = eval_chunks(images.shape[0])

    def chunk(r):
        model = nnx.merge(program.graphdef, params, batch_stats, copy=True)
        return jax.nn.softmax(model(normalize(images[r]), train=False))

    return jax.lax.map(chunk, rows).reshape(-1, NUM_CLASSES)[:images.shape[0]]


def evaluate(program: Program, params, batch_stats, images, labels, knobs: Knobs) -> Metrics:
    """Loss (with penalties and smoothing, as Keras reports val_loss) and correct counts in
    evaluation mode, over fixed-size chunks with the remainder masked."""
    rows, weights = eval_chunks(labels.shape[0])

    def chunk(_, inputs):
        r, w = inputs
        _, (_, metrics) = loss(program, params, batch_stats, normalize(images[r]), labels[r],
                               w, None, knobs, train=False)
        return None, metrics

    _, metrics = jax.lax.scan(chunk, None, (rows, weights))
    return jax.tree.map(jnp.sum, metrics)


def per_model(metrics: Metrics) -> list[dict]:
    """{"loss", "accuracy"} of each model, from sums with a leading model axis (or scalar
    sums of one model)."""
    m = jax.device_get(jax.tree.map(np.atleast_1d, metrics))
    count = np.maximum(m.count.astype(np.float64), 1.0)
    return [{"loss": float(loss), "accuracy": float(a)}
            for loss, a in zip(m.loss / count, m.correct / count)]
