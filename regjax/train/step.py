"""The compiled program: pure functions of a model's state, the data and the knobs.

`loss`, `train_step`, `train_epoch` and `evaluate` are plain functions; the engine
(regjax.train.engine) jits them, mapped over a model axis. Their first argument, a
`Program`, is static: the model's graph, the data's shape and the structure of the config
(which techniques are on). Everything that may differ between models trained together
(seed, penalties, dropout rate, smoothing, learning rate, augmentation ranges) comes in as
`Knobs`, always passed explicitly; a model's other variables (its layers' knob, key and row
slots, a user model's rng streams) come in as `rest` and are set before every call.

The step composes the active techniques' hooks in Keras' order (regjax.techniques): the
input transforms, the model (with the layers the techniques placed), the targets, the
loss terms, Keras' Adam chained with the techniques' optax transformations, then the
projections of the weights. It names no technique.

The whole dataset sits on the device (uint8, or float32 in [0, 1]). One call of
`train_epoch` draws the epoch's permutation, gathers each batch by index, normalises and
transforms it and takes the optimizer step, all under `lax.scan`. The partial last batch is
padded to full size and masked, so shapes never change and no row is dropped or repeated.
Keys come from regjax.rng's key tree.

(Over 250 lines on purpose: this is the whole compiled program, read as one piece.)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from regjax import rng, techniques
from regjax.config import Config, Knobs
from regjax.data.split import DataSpec
from regjax.models import make_model, regularized_kernels
from regjax.nn import layers, tree
from regjax.nn.losses import cross_entropy, mixed_one_hot
from regjax.nn.optim import keras_adam

EVAL_CHUNK = 2000  # rows per evaluation chunk (fixed, so any split size compiles once)


class TrainState(NamedTuple):
    params: nnx.State
    batch_stats: nnx.State
    opt_state: Any  # each gradient technique's, Keras' Adam's, each update technique's


class Metrics(NamedTuple):
    """Sums over examples; divided by `count` on the host (per_model)."""

    loss: jax.Array  # per-example (cross-entropy + penalty), summed
    correct: jax.Array
    count: jax.Array


@dataclasses.dataclass(frozen=True)
class Program:
    """What a compiled program is built for: the model's graph, the data's shape, the
    structure of the config (Config.structure: which techniques are on, the batch size; the
    knob values, the seed and the host-side settings do not enter it, so runs that differ
    only in those share one trace and one compiled program), and the paths of the model's
    regularized kernels. The values used come from Knobs. With `batch_sharding` (data
    parallelism), each training batch is split along its rows between devices; the
    arithmetic stays that of the whole batch."""

    config: Config
    spec: DataSpec
    graphdef: Any
    kernels: tuple
    batch_sharding: Any = None

    def hooks(self, hook: str) -> list:
        """The active techniques that act at `hook` (a Technique attribute), in order."""
        return [t for t in techniques.active(self.config) if getattr(t, hook)]


def split_model(model: nnx.Module):
    """(graph, params, batch statistics, the rest of the model's variables)."""
    return nnx.split(model, nnx.Param, nnx.BatchStat, ...)


def program_of(config: Config, spec: DataSpec, maker=None) -> Program:
    """The program for `config` and every config of its structure, on data of `spec`
    (`maker`: a user's model, for config.model "custom"), without initialising weights."""
    structure = config.structure()
    model = nnx.eval_shape(lambda: make_model(structure, spec, maker=maker))
    return Program(structure, spec, split_model(model)[0], regularized_kernels(model))


def optimizer(program: Program, knobs: Knobs) -> optax.GradientTransformation:
    """The gradient techniques' transformations (gradient noise, SAM's ascent), Keras' Adam at
    the model's learning rate, then the update techniques' (AdamW's decay, the weights'
    moving average), in order. Its update takes the extra arguments `key` (the step's key)
    and `loss_gradient` (params -> the loss's gradient at those weights on the step's batch,
    with its draws), which transformations that support extra arguments receive."""
    return optax.chain(*(t.gradient(knobs) for t in program.hooks("gradient")),
                       keras_adam(knobs.learning_rate),
                       *(t.update(knobs) for t in program.hooks("update")))


def initial_state(program: Program, config: Config, seed=None, maker=None):
    """(TrainState, rest) of a model of `program` initialised from `seed` (default
    config.seed; may be traced): weights from the init branch of its key tree, Adam's
    moments zero."""
    _, params, batch_stats, rest = split_model(make_model(program.config, program.spec,
                                                          seed if seed is not None else
                                                          config.seed, maker))
    opt_state = optimizer(program, Knobs.of(config)).init(params)
    return TrainState(params, batch_stats, opt_state), rest


def final_weights(program: Program, opt_state) -> list[tuple]:
    """(technique, the weights it ends a model with) of the update techniques that replace
    them when training ends (Keras' finalize: the moving average)."""
    updates = program.hooks("update")
    first = len(program.hooks("gradient")) + 1  # after the gradient techniques' and Adam's
    return [(t, t.final(opt_state[first + updates.index(t)])) for t in updates if t.final]


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
    """uint8 pixels to float32 in [0, 1], as the notebook's `x / 255.0`; floats as they are."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


# --------------------------------------------------------------------------- the program

def logits_of(program: Program, params, batch_stats, rest, images, *, train: bool,
              knobs: Knobs, key=None, rows=None):
    """The model's logits for float images, its batch statistics after the call and the loss
    terms per example its layers added: the model merged, its layers given their knobs,
    keys and rows (regjax.nn.layers.prepare)."""
    # copy: fresh Variables belonging to this trace, which the call may update.
    model = nnx.merge(program.graphdef, params, batch_stats, rest, copy=True)
    layers.prepare(model, train=train, knobs=knobs, key=key, rows=rows)
    logits = model(images)
    return logits, nnx.state(model, nnx.BatchStat), layers.example_losses(model)


def loss(program: Program, params, batch_stats, rest, images, labels, weights, key,
         knobs: Knobs, *, train: bool, mix=None):
    """Mean cross-entropy over the weighted rows plus the techniques' penalties, as Keras
    reports it. `images` are float [B, H, W, C]; `key` is the step's layer key (None when not
    training); `mix`, MixUp's or CutMix's partners and weights (regjax.nn.mixing), makes the
    targets mixed (accuracy then counts the mixed target's largest class, as Keras' accuracy
    does). Returns (loss, (new batch stats, Metrics))."""
    logits, batch_stats, example_loss = logits_of(
        program, params, batch_stats, rest, images, train=train, knobs=knobs, key=key,
        rows=weights if train else None)
    mixed = mixed_one_hot(labels, program.spec.classes, mix, logits.dtype)
    targets = mixed
    for t in program.hooks("targets"):
        targets = t.targets(targets, knobs)
    per_example = cross_entropy(logits, targets) + example_loss
    count = jnp.sum(weights)
    total = jnp.sum(per_example * weights)
    kernels = tree.arrays_at(params, program.kernels)
    penalty = jnp.zeros((), logits.dtype)
    for t in program.hooks("penalty"):
        penalty += t.penalty(kernels, knobs)
    mean = total / jnp.maximum(count, 1.0) + penalty
    target = labels if mix is None else jnp.argmax(mixed, -1)
    correct = jnp.sum((jnp.argmax(logits, -1) == target) * weights)
    return mean, (batch_stats, Metrics(total + penalty * count, correct, count))


def train_step(program: Program, state: TrainState, rest, images, labels, weights, key,
               knobs: Knobs) -> tuple[TrainState, Metrics]:
    """One optimizer step on a batch of images (uint8 or float); `key` is the step's key."""
    x, mix = normalize(images), None
    for t in program.hooks("inputs"):  # in Keras' order: the warp first, the noise last
        x, mix = t.inputs(rng.technique_key(key, t.branch), x, weights, knobs, mix)

    def gradient(params):  # the loss's on this batch, with this step's draws, at `params`
        return jax.grad(loss, argnums=1, has_aux=True)(
            program, params, state.batch_stats, rest, x, labels, weights,
            rng.layers_key(key), knobs, train=True, mix=mix)

    # Only the gradient at the weights themselves updates the batch statistics.
    grads, (batch_stats, metrics) = gradient(state.params)
    updates, opt_state = optimizer(program, knobs).update(
        grads, state.opt_state, state.params, key=key,
        loss_gradient=lambda params: gradient(params)[0])
    params = optax.apply_updates(state.params, updates)
    for t in program.hooks("project"):  # Keras applies constraints after the update
        params = t.project(params, program.kernels, knobs)
    return TrainState(params, batch_stats, opt_state), metrics


def train_epoch(program: Program, state: TrainState, rest, images, labels, epoch,
                knobs: Knobs, num_steps: int | None = None) -> tuple[TrainState, Metrics]:
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
        return train_step(program, state, rest, *batch, rng.step_key(key, i), knobs)

    inputs = jax.tree.map(lambda a: a[:num_steps], (jnp.arange(len(rows)), rows, weights))
    state, metrics = jax.lax.scan(step, state, inputs)
    return state, jax.tree.map(jnp.sum, metrics)


def eval_chunks(n: int) -> tuple[jax.Array, jax.Array]:
    """Rows 0..n-1 in chunks of EVAL_CHUNK [chunks, EVAL_CHUNK] (one chunk of n rows where
    n is smaller: a small split is not padded to 2,000 rows), the last one padded with
    repeats of row n-1, and the rows' weights (0 for the padding)."""
    size = min(EVAL_CHUNK, n)
    chunks = math.ceil(n / size)
    rows = jnp.arange(chunks * size)
    weights = (rows < n).astype(jnp.float32).reshape(chunks, size)
    return jnp.minimum(rows, n - 1).reshape(chunks, size), weights


def predict(program: Program, params, batch_stats, rest, images, knobs: Knobs) -> jax.Array:
    """The model's class probabilities (softmax) [n, classes], in evaluation mode, chunk by
    chunk."""
    rows, _ = eval_chunks(images.shape[0])

    def chunk(r):
        logits, _, _ = logits_of(program, params, batch_stats, rest, normalize(images[r]),
                              train=False, knobs=knobs)
        return jax.nn.softmax(logits)

    return jax.lax.map(chunk, rows).reshape(-1, program.spec.classes)[:images.shape[0]]


def evaluate(program: Program, params, batch_stats, rest, images, labels,
             knobs: Knobs) -> Metrics:
    """Loss (with penalties and smoothing, as Keras reports val_loss) and correct counts in
    evaluation mode, over fixed-size chunks with the remainder masked."""
    rows, weights = eval_chunks(labels.shape[0])

    def chunk(_, inputs):
        r, w = inputs
        _, (_, metrics) = loss(program, params, batch_stats, rest, normalize(images[r]),
                               labels[r], w, None, knobs, train=False)
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
