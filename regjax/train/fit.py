"""The host loop, shared by one model (`fit`) and many trained at once (regjax.train.batched):
put the data on the device, compile before the clock starts, train epoch by epoch, record
each model's metrics (regjax.train.history), keep best weights, checkpoint and resume, stop on
request, then restore best weights and evaluate on the test split.

An engine runs the compiled program for its models; the loop never looks inside it. This
module's engine, `OneModel`, jits the pure functions of regjax.train.step for one config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import time
from typing import Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from regjax.config import Config
from regjax.data.split import Split, as_split
from regjax.files.checkpoint import CheckpointError, Checkpoints, restore_run, save_run
from regjax.nn.models import TrainedModel, state_copies, weights_bytes
from regjax.train import devices, step
from regjax.train.history import RunRecord

_train_epoch = jax.jit(step.train_epoch, static_argnums=0, static_argnames="num_steps",
                       donate_argnums=1)
_evaluate = jax.jit(step.evaluate, static_argnums=0)


class Engine(Protocol):
    """The compiled program for a list of models, as the loop drives it. Per-model values
    (metrics, masks) are lists or arrays in the order of `configs`."""

    configs: list[Config]

    def init_state(self) -> step.TrainState: ...
    def put(self, split: Split | list[Split]) -> tuple[jax.Array, jax.Array]: ...
    def compile(self, state, train, validation) -> None: ...
    def epoch(self, state, train, epoch: int, active: np.ndarray) -> tuple[object, list[dict]]: ...
    def validate(self, state, validation) -> list[dict]: ...
    def evaluate(self, params, batch_stats, data) -> list[dict]: ...
    def select(self, mask: np.ndarray, new, old): ...


class OneModel:
    """One model: regjax.train.step's functions jitted, the state donated to each epoch. With
    `data_parallel` > 1, the weights and the data replicated on that many devices, each
    training batch split between them."""

    def __init__(self, config: Config, data_parallel: int = 1):
        self.configs = [config]
        check_models_fit(self.configs)
        self.program, self._initial = step.make_program(config)
        self.replicated = None
        if data_parallel > 1:
            mesh = data_mesh(config, data_parallel)
            self.replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
            self.program = dataclasses.replace(self.program, batch_sharding=batch)
        self.knobs = jax.device_put(step.Knobs.of(config), self.replicated)

    def init_state(self) -> step.TrainState:
        # A copy: training consumes the state it is given.
        return jax.device_put(jax.tree.map(jnp.copy, self._initial), self.replicated)

    def put(self, split: Split):
        return jax.device_put((jnp.asarray(split.images), jnp.asarray(split.labels)),
                              self.replicated)

    def compile(self, state, train, validation) -> None:
        self._epoch = _train_epoch.lower(self.program, state, *train, jnp.int32(0),
                                         self.knobs).compile()
        self._validate = _evaluate.lower(self.program, state.params, state.batch_stats,
                                         *validation, self.knobs).compile()
        check_compiled_fits([self._epoch, self._validate])

    def epoch(self, state, train, epoch, active):
        state, metrics = self._epoch(state, *train, jnp.int32(epoch), self.knobs)
        return state, step.per_model(metrics)

    def validate(self, state, validation):
        return step.per_model(self._validate(state.params, state.batch_stats, *validation,
                                             self.knobs))

    def evaluate(self, params, batch_stats, data):
        return step.per_model(_evaluate(self.program, params, batch_stats, *data, self.knobs))

    def select(self, mask, new, old):
        return jax.tree.map(jnp.copy, new) if mask[0] else old


def data_mesh(config: Config, count: int) -> jax.sharding.Mesh:
    """The first `count` devices as a "data" axis; the batch must split evenly."""
    available = jax.devices()
    if count > len(available):
        raise ValueError(f"--devices {count}: only {len(available)} device(s) here")
    if config.batch_size % count:
        raise ValueError(f"--batch-size {config.batch_size} does not split evenly between "
                         f"{count} devices; choose a multiple of {count}")
    return jax.sharding.Mesh(np.array(available[:count]), ("data",))


def check_models_fit(configs: list[Config]) -> None:
    """Refuses models whose state (models.state_copies: weights, Adam's moments, the moving
    average, the best weights) and gradients would not fit the device, before anything is
    allocated."""
    needed = sum((state_copies(c) + 1) * weights_bytes(c) for c in configs)
    what = "the model" if len(configs) == 1 else f"{len(configs)} models"
    fix = "lower --hidden" if len(configs) == 1 else "train fewer models at once, or lower --hidden"
    devices.check_fits(needed, f"{what} (weights, gradients, Adam's moments)", fix)


def check_compiled_fits(compiled: list) -> None:
    devices.check_fits(max(map(devices.compiled_bytes, compiled)), "one epoch",
                       "lower --batch-size or --hidden")


def num_rows(split: Split | list[Split]) -> int:
    """Rows of a split, or of each model's split (models trained together have as many)."""
    return len(split[0] if isinstance(split, list) else split)


def fingerprint(*splits: Split | list[Split]) -> str:
    """A digest of the rows (images and labels) the models train and validate on: a
    checkpoint records it, and resuming on other data (another dataset of the same size,
    other files) is refused."""
    digest = hashlib.sha256()
    seen = set()
    for split in splits:
        for s in split if isinstance(split, list) else [split]:
            for a in (s.images, s.labels):
                if id(a) not in seen:  # models that share their data share its digest
                    seen.add(id(a))
                    digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()[:16]


def train_loop(engine: Engine, train: Split | list[Split], validation: Split | list[Split],
               test: Split | None, *,
               log: Callable[[str], None], checkpoints: Checkpoints | None, resume: bool,
               should_stop: Callable[[], bool],
               on_epoch: Callable[[list[RunRecord]], None]) -> tuple[list[RunRecord], object]:
    """Trains the engine's models; returns their records and final state (best weights
    restored where asked). `train` and `validation`: one split for every model, or a list
    of one per model (under a data regime, regjax.data.model_data)."""
    sizes = num_rows(train), num_rows(validation)
    steps = math.ceil(sizes[0] / engine.configs[0].batch_size)
    records = [RunRecord.new(c, steps) for c in engine.configs]
    x_train, x_val = engine.put(train), engine.put(validation)
    state = engine.init_state()
    keep_best = np.array([r.keeps_best for r in records])
    best = jax.tree.map(jnp.copy, (state.params, state.batch_stats)) \
        if keep_best.any() else None
    epoch = 0  # epochs the loop has run (a model that stopped has run fewer)
    rows = fingerprint(train, validation) if checkpoints is not None else None
    if resume:
        epoch, state, best, records = restore_run(checkpoints, engine.configs, state, best,
                                                  steps, sizes, log, rows)
        on_epoch(records)  # where the run stands (a progress display starts from there)

    start = time.perf_counter()  # compile before the clock starts: epoch times exclude it
    engine.compile(state, x_train, x_val)
    for r in records:
        r.compile_seconds = time.perf_counter() - start
    active = np.array([r.trains_on for r in records])
    interrupted = False
    try:
        while active.any():
            if should_stop():
                interrupted = True
                break
            t0 = time.perf_counter()
            state, train_metrics = engine.epoch(state, x_train, epoch, active)
            val = engine.validate(state, x_val)
            seconds = time.perf_counter() - t0
            epoch += 1
            improved = np.zeros(len(records), bool)
            for i in np.flatnonzero(active):
                improved[i], done = records[i].observe(train_metrics[i], val[i], seconds)
                active[i] = not done
            if len(records) == 1:
                log_epoch(log, records[0], train_metrics[0], val[0], seconds)
            if best is not None and (improved & keep_best).any():
                best = engine.select(improved & keep_best, (state.params, state.batch_stats),
                                     best)
            if checkpoints is not None and any(r.status != "diverged" for r in records):
                save_run(checkpoints, epoch, state, best, records, sizes, rows)
            on_epoch(records)
    except BaseException:  # the error on its way is raised, not a checkpoint's after it
        if checkpoints is not None:
            with contextlib.suppress(CheckpointError):
                checkpoints.wait()
        raise
    if checkpoints is not None:
        checkpoints.wait()
    for r in records:  # a model that had finished (stopped early) is complete, not stopped
        r.finish(interrupted and r.trains_on)
    return records, finish(engine, records, state, best, test, log)


def finish(engine: Engine, records: list[RunRecord], state, best, test: Split | None, log):
    """After training, for each completed model, in Keras 3's order: the weights replaced
    by their moving average where it keeps one (use_ema: the optimizer's finalize), then the
    best weights restored where asked (EarlyStopping at the end of training), then its
    test metrics recorded."""
    keep_best = np.array([r.keeps_best for r in records])
    completed = np.array([r.status == "completed" for r in records])
    averaged = completed & np.array([r.config.ema > 0 for r in records])
    if averaged.any():
        state = state._replace(params=engine.select(averaged, state.opt_state.ema,
                                                    state.params))
    if best is not None and (keep_best & completed).any():
        params, batch_stats = engine.select(keep_best & completed, best,
                                            (state.params, state.batch_stats))
        state = state._replace(params=params, batch_stats=batch_stats)
        if len(records) == 1:
            log(f"restored the weights of epoch {records[0].best_epoch}")
    if test is not None and completed.any():
        for r, metrics in zip(records, engine.evaluate(state.params, state.batch_stats,
                                                       engine.put(test))):
            if r.status == "completed":
                r.test = metrics
        if len(records) == 1 and records[0].test:
            log(f"test_loss {records[0].test['loss']:.4f} - test_accuracy "
                f"{records[0].test['accuracy']:.4f}")
    return state


def log_epoch(log, record: RunRecord, train: dict, val: dict, seconds: float) -> None:
    """One model's epoch line, as Keras' fit prints it."""
    epochs = record.config.epochs
    if record.status == "diverged":
        log(f"epoch {record.diverged_epoch}/{epochs}: loss {train['loss']}, val_loss "
            f"{val['loss']}: not finite, stopping without saving this epoch")
        return
    log(f"epoch {record.epochs_run}/{epochs} {seconds:.2f}s "
        f"({record.steps_per_epoch / seconds:,.0f} steps/s) - loss {train['loss']:.4f} - "
        f"accuracy {train['accuracy']:.4f} - val_loss {val['loss']:.4f} - "
        f"val_accuracy {val['accuracy']:.4f}")
    if record.stopped_early:
        log(f"early stopping after epoch {record.epochs_run}: val_loss has not improved for "
            f"{record.config.patience} epochs (best {record.stopper.best:.4f} at epoch "
            f"{record.best_epoch})")


def fit(config: Config, train: Split, validation: Split, test: Split | None = None, *,
        log: Callable[[str], None] = print, checkpoints: Checkpoints | None = None,
        resume: bool = False, should_stop: Callable[[], bool] = lambda: False,
        on_epoch: Callable[[dict], None] = lambda history: None, data_parallel: int = 1,
        ) -> tuple[dict, TrainedModel]:
    """Trains one model as Keras' model.fit does, then evaluates it on `test`.

    Returns (history, trained model). The history (regjax.train.history.RunRecord.summary) holds
    per-epoch loss, accuracy, val_loss, val_accuracy and epoch_seconds (training plus
    validation; compilation happens first and is compile_seconds), the test metrics, and
    `status`: "completed" (all epochs, or stopped early), "interrupted" (`should_stop()` was
    true before an epoch) or "diverged" (an epoch's loss was not finite; that epoch is
    neither recorded nor checkpointed). With `checkpoints`, a checkpoint is written after
    every epoch; with `resume`, training continues from the newest intact one and ends
    exactly as an uninterrupted run would. `on_epoch(history so far)` follows each epoch.
    `data_parallel` > 1 splits each batch between that many devices (the same arithmetic as
    one device, up to the order of the sums; it pays only for large batches). `train` and
    `validation` are the config's splits: regjax.data.model_data(config, dataset), which
    also applies its data regime (train_size, label_noise).
    """
    config.validate()
    train, validation = as_split(train, "train"), as_split(validation, "validation")
    test = None if test is None else as_split(test, "test")
    rows = len(train) + (len(validation) if config.validation == "split" else 0)
    if config.train_size and rows != config.train_size:
        raise ValueError(f"train_size {config.train_size}, but the splits hold {rows} rows: "
                         "pass the splits regjax.model_data(config, dataset) gives")
    engine = OneModel(config, data_parallel)
    records, state = train_loop(
        engine, train, validation, test, log=log, checkpoints=checkpoints, resume=resume,
        should_stop=should_stop, on_epoch=lambda records: on_epoch(records[0].summary()))
    return records[0].summary(), TrainedModel(config, nnx.merge(
        engine.program.graphdef, state.params, state.batch_stats))


def evaluate(model: TrainedModel, split: Split) -> dict:
    """{"loss", "accuracy"} of a trained model on a split, in evaluation mode; the loss
    includes the config's penalties and smoothing, as Keras reports it."""
    split = as_split(split)
    _, params, batch_stats = nnx.split(model.module, nnx.Param, nnx.BatchStat)
    program = step.program_of(model.config)
    return step.per_model(_evaluate(program, params, batch_stats, jnp.asarray(split.images),
                                    jnp.asarray(split.labels),
                                    jax.device_put(step.Knobs.of(model.config))))[0]
