"""Compiled training and evaluation, and the host-side fit loop.

The whole dataset sits on the device as uint8. One compiled call trains one epoch: it
draws the epoch's permutation, gathers each batch by index, normalises and augments it and
takes the optimizer step, all under `lax.scan`, with the train state donated. The partial
last batch is padded to full size and masked, so shapes never change and no row is dropped
or repeated. Random keys derive from (seed, epoch, step) with `fold_in`, so a run is
reproducible and any epoch can be recomputed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from regjax import augment, rng
from regjax.checkpoint import CheckpointError, Checkpoints
from regjax.config import Config
from regjax.data import Split
from regjax.losses import cross_entropy, weight_penalty
from regjax.models import make_model
from regjax.optim import keras_adam

# Streams folded into a step's key, so dropout and augmentation never share randomness.
SHUFFLE, DROPOUT, AUGMENT = 0, 1, 2
EVAL_CHUNK = 2000


class TrainState(NamedTuple):
    params: nnx.State
    batch_stats: nnx.State
    opt_state: optax.OptState


class Knobs(NamedTuple):
    """The settings that may differ between models trained together in one vmapped program
    (one value per model there); for a single run they are the config's constants. Whether
    a term exists at all (any dropout, any penalty) is decided by the Trainer's config."""

    seed: Any
    l1: Any
    l2: Any
    dropout: Any
    label_smoothing: Any
    learning_rate: Any
    rotation_range: Any
    shift_range: Any
    shear_range: Any
    zoom_range: Any

    @classmethod
    def of(cls, config: Config) -> "Knobs":
        return cls(*(getattr(config, name) for name in cls._fields))


class Metrics(NamedTuple):
    """Sums over examples; divided by `count` on the host."""

    loss: jax.Array  # per-example (cross-entropy + penalty), summed
    correct: jax.Array
    count: jax.Array


def epoch_key(seed: int, epoch) -> jax.Array:
    """JAX's default (threefry) key for `seed`, folded with the epoch; steps and streams fold
    in further, so a run is reproducible and any epoch can be recomputed."""
    return jax.random.fold_in(jax.random.key(seed), epoch)


def stable_argsort(keys: jax.Array) -> jax.Array:
    """np.argsort(keys, kind="stable") of uint32 keys along the last axis, as int32.

    Packing each key and its position into one 64-bit value (key << 32 | position) makes it
    a sort of a single array, which XLA's CPU runtime does about 4x faster than argsort's
    sort of (key, position) pairs; equal keys keep their order, as in a stable sort."""
    positions = jnp.arange(keys.shape[-1], dtype=jnp.uint32)
    with jax.enable_x64():  # local to these ops: the rest of the program stays 32-bit
        packed = keys.astype(jnp.uint64) << 32 | positions.astype(jnp.uint64)
        return (jnp.sort(packed, axis=-1) & 0xFFFFFFFF).astype(jnp.int32)


def shuffled_indices(key: jax.Array, n: int) -> jax.Array:
    """A uniformly random permutation of range(n): rows ordered by random 32-bit keys, ties
    by row number. One sort is several times cheaper on CPU than jax.random.permutation's
    repeated sorts."""
    return stable_argsort(rng.bits(key, (n,)))


def epoch_batches(key: jax.Array, n: int, batch: int) -> tuple[jax.Array, jax.Array]:
    """An epoch's batches as row indices [steps, batch] and weights [steps, batch]: a fresh
    permutation of range(n), padded to whole batches; padded slots have weight 0, so every
    row is trained on exactly once and the partial last batch keeps a fixed shape."""
    steps = math.ceil(n / batch)
    order = shuffled_indices(key, n)
    order = jnp.concatenate([order, jnp.zeros(steps * batch - n, order.dtype)])
    weights = (jnp.arange(steps * batch) < n).astype(jnp.float32)
    return order.reshape(steps, batch), weights.reshape(steps, batch)


class Trainer:
    """Builds the compiled epoch and evaluation for one config and holds the model's graph.

    The model is split once into its graph definition and its state (parameters and
    batch-norm statistics); the compiled functions are pure functions of that state.
    """

    def __init__(self, config: Config):
        self.config = config
        model = make_model(config)
        self.graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
        self.optimizer = keras_adam(config.learning_rate)
        self._initial = (params, batch_stats)
        self._train_epoch = jax.jit(self._epoch, static_argnames="num_steps", donate_argnums=0)
        self._evaluate = jax.jit(self._evaluate_impl)

    def knobs(self, knobs: Knobs | None) -> Knobs:
        return Knobs.of(self.config) if knobs is None else knobs

    def init_state(self) -> TrainState:
        """A fresh copy of the initial state (training consumes the state it is given)."""
        params, batch_stats = jax.tree.map(jnp.copy, self._initial)
        return TrainState(params, batch_stats, self.optimizer.init(params))

    # ------------------------------------------------------------------ pure functions

    def loss(self, params, batch_stats, images, labels, weights, key, train: bool,
             knobs: Knobs | None = None):
        """Mean of cross-entropy over the weighted rows plus the weight penalty.

        Returns (loss, (new batch stats, Metrics)); images are float [B, 28, 28]."""
        c, k = self.config, self.knobs(knobs)
        # copy: fresh Variables belonging to this trace, which batch norm may update.
        model = nnx.merge(self.graphdef, params, batch_stats, copy=True)
        logits = model(images, train=train, key=key, mask=weights > 0, dropout=k.dropout)
        per_example = cross_entropy(logits, labels, k.label_smoothing)
        count = jnp.sum(weights)
        total = jnp.sum(per_example * weights)
        penalty = weight_penalty(model.regularized_kernels(), k.l1 if c.l1 else 0.0,
                                 k.l2 if c.l2 else 0.0)
        loss = total / jnp.maximum(count, 1.0) + penalty
        correct = jnp.sum((jnp.argmax(logits, -1) == labels) * weights)
        metrics = Metrics(total + penalty * count, correct, count)
        return loss, (nnx.state(model, nnx.BatchStat), metrics)

    def train_step(self, state: TrainState, images, labels, weights, key,
                   knobs: Knobs | None = None) -> tuple[TrainState, Metrics]:
        """One optimizer step on a batch of uint8 images."""
        c, k = self.config, self.knobs(knobs)
        x = images.astype(jnp.float32) / 255.0
        if c.augment:
            x = augment.random_affine(
                jax.random.fold_in(key, AUGMENT), x, rotation_range=k.rotation_range,
                shift_range=k.shift_range, shear_range=k.shear_range, zoom_range=k.zoom_range)
        grads, (batch_stats, metrics) = jax.grad(self.loss, has_aux=True)(
            state.params, state.batch_stats, x, labels, weights,
            jax.random.fold_in(key, DROPOUT), True, knobs)
        optimizer = self.optimizer if knobs is None else keras_adam(k.learning_rate)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), batch_stats, opt_state), metrics

    def _epoch(self, state: TrainState, images, labels, epoch, knobs: Knobs | None = None,
               num_steps: int | None = None):
        key = epoch_key(self.knobs(knobs).seed, epoch)
        rows, weights = epoch_batches(jax.random.fold_in(key, SHUFFLE), labels.shape[0],
                                      self.config.batch_size)

        def step(state, inputs):
            i, rows, w = inputs
            return self.train_step(state, images[rows], labels[rows], w,
                                   jax.random.fold_in(key, i), knobs)

        steps = jnp.arange(len(rows))
        inputs = jax.tree.map(lambda a: a[:num_steps], (steps, rows, weights))
        state, metrics = jax.lax.scan(step, state, inputs)
        return state, jax.tree.map(jnp.sum, metrics)

    def _evaluate_impl(self, params, batch_stats, images, labels,
                       knobs: Knobs | None = None) -> Metrics:
        n = labels.shape[0]
        chunks = math.ceil(n / EVAL_CHUNK)
        rows = jnp.arange(chunks * EVAL_CHUNK)
        weights = (rows < n).astype(jnp.float32).reshape(chunks, EVAL_CHUNK)
        rows = jnp.minimum(rows, n - 1).reshape(chunks, EVAL_CHUNK)

        def chunk(_, inputs):
            r, w = inputs
            x = images[r].astype(jnp.float32) / 255.0
            _, (_, metrics) = self.loss(params, batch_stats, x, labels[r], w, None, False, knobs)
            return None, metrics

        _, metrics = jax.lax.scan(chunk, None, (rows, weights))
        return jax.tree.map(jnp.sum, metrics)

    # ------------------------------------------------------------------- host wrappers

    def train_epoch(self, state: TrainState, images, labels, epoch: int,
                    num_steps: int | None = None) -> tuple[TrainState, dict]:
        """Trains one epoch (or its first `num_steps` steps); `state` is consumed."""
        state, metrics = self._train_epoch(state, images, labels,
                                           jnp.asarray(epoch, jnp.int32), num_steps=num_steps)
        return state, summarize(metrics)

    def evaluate(self, state: TrainState, images, labels) -> dict:
        """Loss (with penalties, as Keras reports it) and accuracy in evaluation mode."""
        return summarize(self._evaluate(state.params, state.batch_stats, images, labels))

    def steps_per_epoch(self, n_rows: int) -> int:
        return math.ceil(n_rows / self.config.batch_size)

    def model(self, state: TrainState):
        """The NNX model holding `state`'s parameters and statistics, for inspection."""
        return nnx.merge(self.graphdef, state.params, state.batch_stats)


def summarize(metrics: Metrics) -> dict:
    return summarize_each(jax.tree.map(jnp.atleast_1d, metrics))[0]


def summarize_each(metrics: Metrics) -> list[dict]:
    """Loss and accuracy of each model, from sums with a leading model axis."""
    m = jax.device_get(metrics)
    count = np.maximum(m.count.astype(np.float64), 1.0)
    loss, accuracy = m.loss / count, m.correct / count
    return [{"loss": float(l), "accuracy": float(a)} for l, a in zip(loss, accuracy)]


def is_finite(train_metrics: dict, val: dict) -> bool:
    return math.isfinite(train_metrics["loss"]) and math.isfinite(val["loss"])


def record_epoch(history: dict, train_metrics: dict, val: dict, seconds: float) -> None:
    """Appends one epoch's metrics to the per-epoch lists of `history` (HISTORY_KEYS)."""
    for key, value in (*train_metrics.items(), *(("val_" + k, v) for k, v in val.items()),
                       ("epoch_seconds", seconds)):
        history[key].append(value)


@dataclasses.dataclass
class EarlyStopping:
    """Keras' EarlyStopping(monitor='val_loss') rule, host side.

    `wait` counts epochs without an improvement larger than min_delta; training stops when
    wait >= patience (and never after the first epoch). Stopping happens one epoch earlier
    than with flax.training.early_stopping for the same patience.
    """

    patience: int
    min_delta: float = 0.0
    best: float = math.inf
    best_epoch: int = -1
    wait: int = 0

    def update(self, epoch: int, value: float) -> tuple[bool, bool]:
        """Records `value` for `epoch`; returns (improved, should_stop)."""
        self.wait += 1
        if value + self.min_delta < self.best:  # a decrease by more than min_delta
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True, False
        return False, self.wait >= self.patience and epoch > 0


def to_device(split: Split) -> tuple[jax.Array, jax.Array]:
    return jnp.asarray(split.images), jnp.asarray(split.labels)


HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")


def _restore(checkpoints: Checkpoints, trainer: Trainer, n_train: int, n_val: int):
    """The newest checkpoint's (state, best weights or None, record), after checking that it
    belongs to this config and data."""
    epoch = checkpoints.latest_epoch()
    if epoch is None:
        raise CheckpointError(f"{checkpoints.directory}: no complete checkpoint to resume from")
    record = checkpoints.record(epoch)
    saved = Config.from_dict(record["config"])
    if saved != trainer.config:
        mine, theirs = trainer.config.to_dict(), saved.to_dict()
        diff = ", ".join(f"{k}={theirs[k]!r} (now {mine[k]!r})" for k in mine if mine[k] != theirs[k])
        raise CheckpointError(f"{checkpoints.directory}: the checkpoint was made with a "
                              f"different config: {diff}; resume with the same flags")
    if (record["train_rows"], record["validation_rows"]) != (n_train, n_val):
        raise CheckpointError(
            f"{checkpoints.directory}: the checkpoint was trained on {record['train_rows']:,} "
            f"training and {record['validation_rows']:,} validation rows, not {n_train:,} and "
            f"{n_val:,}; resume with the same dataset")
    state = trainer.init_state()
    like = {"state": state, "best": (state.params, state.batch_stats)}
    if "best" not in record["arrays"]:
        del like["best"]
    arrays = checkpoints.arrays(epoch, like)
    return arrays["state"], arrays.get("best"), record


def summarize_history(history: dict, status: str, stopped_early: bool,
                      stopper: EarlyStopping | None, compile_seconds: float, steps: int) -> dict:
    """A run's history (per-epoch lists) with its summary fields."""
    seconds = history["epoch_seconds"]
    return {
        **history, "status": status, "epochs_run": len(seconds), "stopped_early": stopped_early,
        "best_epoch": None if stopper is None else stopper.best_epoch + 1,
        "compile_seconds": compile_seconds, "steps_per_epoch": steps,
        # The first epoch is left out when there are others: it warms caches.
        "train_steps_per_second": float(np.median([steps / s for s in (seconds[1:] or seconds)]))
        if seconds else None,
    }


def fit(config: Config, train: Split, validation: Split, test: Split | None = None, *,
        log: Callable[[str], None] = print, checkpoints: Checkpoints | None = None,
        resume: bool = False, should_stop: Callable[[], bool] = lambda: False,
        on_epoch: Callable[[dict], None] = lambda history: None,
        ) -> tuple[dict, Trainer, TrainState]:
    """Trains as Keras' model.fit does, then evaluates on `test`.

    Returns (history, trainer, final state). The history holds per-epoch loss, accuracy,
    val_loss, val_accuracy and epoch_seconds (training plus validation; compilation is done
    beforehand and reported as compile_seconds), the test metrics, and `status`:
      - "completed": all epochs ran, or early stopping ended the run;
      - "interrupted": `should_stop()` was true before an epoch (checked between epochs);
      - "diverged": an epoch's loss was not finite; that epoch is neither recorded nor
        checkpointed (`diverged_epoch` names it).
    With `checkpoints`, a checkpoint is written after every epoch; with `resume`, training
    continues from the newest one and ends exactly as an uninterrupted run would.
    """
    config.validate()
    trainer = Trainer(config)
    x_train, y_train = to_device(train)
    x_val, y_val = to_device(validation)
    keep_best = config.early_stopping and config.restore_best_weights

    state, best = trainer.init_state(), None  # best: (params, batch_stats) of the best epoch
    history: dict[str, Any] = {k: [] for k in HISTORY_KEYS}
    stopper = EarlyStopping(config.patience, config.min_delta) if config.early_stopping else None
    stopped_early, done = False, 0  # done: epochs completed
    if resume:
        state, best, record = _restore(checkpoints, trainer, len(train), len(validation))
        done, history, stopped_early = record["epoch"], record["history"], record["stopped_early"]
        if stopper is not None:
            stopper = EarlyStopping(**record["early_stopping"])
        log(f"resuming from the checkpoint of epoch {done} in {checkpoints.directory}")

    # Compile before the clock starts, so epoch times measure training and validation only.
    start = time.perf_counter()
    run_epoch = trainer._train_epoch.lower(state, x_train, y_train, jnp.int32(0)).compile()
    run_eval = trainer._evaluate.lower(state.params, state.batch_stats, x_val, y_val).compile()
    compile_seconds = time.perf_counter() - start
    steps = trainer.steps_per_epoch(len(train))

    def summary(status: str) -> dict:
        return summarize_history(history, status, stopped_early, stopper, compile_seconds, steps)

    status = "completed"
    try:
        while done < config.epochs and not stopped_early:
            if should_stop():
                status = "interrupted"
                break
            t0 = time.perf_counter()
            state, metrics = run_epoch(state, x_train, y_train, jnp.int32(done))
            train_metrics = summarize(metrics)
            val = summarize(run_eval(state.params, state.batch_stats, x_val, y_val))
            seconds = time.perf_counter() - t0
            if not is_finite(train_metrics, val):
                status = "diverged"
                log(f"epoch {done + 1}/{config.epochs}: loss {train_metrics['loss']}, val_loss "
                    f"{val['loss']}: not finite, stopping without saving this epoch")
                break
            done += 1
            record_epoch(history, train_metrics, val, seconds)
            log(f"epoch {done}/{config.epochs} {seconds:.2f}s ({steps / seconds:,.0f} steps/s)"
                f" - loss {train_metrics['loss']:.4f} - accuracy {train_metrics['accuracy']:.4f}"
                f" - val_loss {val['loss']:.4f} - val_accuracy {val['accuracy']:.4f}")
            if stopper is not None:
                improved, stopped_early = stopper.update(done - 1, val["loss"])
                if keep_best and improved:
                    best = jax.tree.map(jnp.copy, (state.params, state.batch_stats))
            if checkpoints is not None:
                arrays = {"state": state, **({"best": best} if keep_best else {})}
                checkpoints.save(done, arrays, {
                    "epoch": done, "config": config.to_dict(), "history": history,
                    "stopped_early": stopped_early, "arrays": sorted(arrays),
                    "early_stopping": None if stopper is None else dataclasses.asdict(stopper),
                    "train_rows": len(train), "validation_rows": len(validation),
                }, val["loss"])
            on_epoch(summary("running"))
            if stopped_early:
                log(f"early stopping after epoch {done}: val_loss has not improved for "
                    f"{config.patience} epochs (best {stopper.best:.4f} at epoch "
                    f"{stopper.best_epoch + 1})")
    finally:
        if checkpoints is not None:
            checkpoints.wait()

    result = summary(status)
    if status == "diverged":
        result["diverged_epoch"] = done + 1
    if status != "completed":
        return result, trainer, state
    if best is not None:
        # As Keras 3: restore the best weights at the end of training whenever asked.
        state = state._replace(params=best[0], batch_stats=best[1])
        log(f"restored the weights of epoch {stopper.best_epoch + 1}")
    if test is not None:
        metrics = trainer.evaluate(state, *to_device(test))
        result.update(test_loss=metrics["loss"], test_accuracy=metrics["accuracy"])
        log(f"test_loss {metrics['loss']:.4f} - test_accuracy {metrics['accuracy']:.4f}")
    return result, trainer, state
