"""The host loop, shared by one model (regjax.train.fit) and many trained at once
(regjax.train.batched): put the data on the device, compile before the clock starts, train
epoch by epoch, record each model's metrics (regjax.train.history), keep best weights,
checkpoint and resume (regjax.train.resume), stop on request, then restore best weights and
evaluate on the test split. What a run reads and writes besides the data (its log, its
checkpoints, whether it resumes, when it stops, what follows each epoch) is one `RunIO`.

An engine runs the compiled program for its models; the loop never looks inside it.
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

from regjax.config import Config
from regjax.data.split import Split
from regjax.files.checkpoint import CheckpointError, Checkpoints
from regjax.train import step
from regjax.train.history import RunRecord
from regjax.train.resume import restore_run, save_run


@dataclasses.dataclass
class RunIO:
    """What a run reads and writes besides its data: `log` (its lines), `checkpoints` (after
    every epoch; None: none), `resume` (continue from the newest intact checkpoint),
    `should_stop` (asked before every epoch) and `on_epoch(records)` (after every epoch,
    and first where a resumed run stands)."""

    log: Callable[[str], None] = lambda line: None
    checkpoints: Checkpoints | None = None
    resume: bool = False
    should_stop: Callable[[], bool] = lambda: False
    on_epoch: Callable[[list], None] = lambda records: None


class Engine(Protocol):
    """The compiled program for a list of models, as the loop drives it. Per-model values
    (metrics, masks) are lists or arrays in the order of `configs`."""

    configs: list[Config]

    def init_state(self) -> step.TrainState: ...
    def final_weights(self, state) -> list[tuple]: ...
    def put(self, split: Split | list[Split]) -> tuple[jax.Array, jax.Array]: ...
    def compile(self, state, train, validation) -> None: ...
    def epoch(self, state, train, epoch: int, active: np.ndarray) -> tuple[object, list[dict]]: ...
    def validate(self, state, validation) -> list[dict]: ...
    def evaluate(self, params, batch_stats, data) -> list[dict]: ...
    def select(self, mask: np.ndarray, new, old): ...


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
               test: Split | None, io: RunIO) -> tuple[list[RunRecord], object]:
    """Trains the engine's models; returns their records and final state (best weights
    restored where asked). `train` and `validation`: one split for every model, or a list
    of one per model (under a data regime, regjax.data.model_data)."""
    run = Run.start(engine, train, validation, io)
    if io.resume:
        io.on_epoch(run.records)  # where the run stands (a progress display starts from there)
    x_train, x_val = engine.put(train), engine.put(validation)
    start = time.perf_counter()  # compile before the clock starts: epoch times exclude it
    engine.compile(run.state, x_train, x_val)
    for r in run.records:
        r.compile_seconds = time.perf_counter() - start
    active = np.array([r.trains_on for r in run.records])
    interrupted = False
    try:
        while active.any():
            if io.should_stop():
                interrupted = True
                break
            run.epoch(x_train, x_val, active, io.log)
            if io.checkpoints is not None and any(r.status != "diverged" for r in run.records):
                save_run(io.checkpoints, run)
            io.on_epoch(run.records)
    except BaseException:  # the error on its way is raised, not a checkpoint's after it
        if io.checkpoints is not None:
            with contextlib.suppress(CheckpointError):
                io.checkpoints.wait()
        raise
    if io.checkpoints is not None:
        io.checkpoints.wait()
    for r in run.records:  # a model that had finished (stopped early) is complete, not stopped
        r.finish(interrupted and r.trains_on)
    return run.records, finish(engine, run.records, run.state, run.best, test, io.log)


@dataclasses.dataclass
class Run:
    """Where a run of the loop stands: its engine, the models' records, the state, the best
    weights so far (None where no model keeps them) and the epochs the loop has run (a
    model that stopped has run fewer)."""

    engine: Engine
    records: list[RunRecord]
    state: object
    best: object
    epochs: int
    sizes: tuple[int, int]  # training and validation rows
    rows: str | None  # their digest, recorded in checkpoints

    @classmethod
    def start(cls, engine, train, validation, io: RunIO) -> Run:
        """A new run, or, with `io.resume`, the one the newest intact checkpoint holds (a
        run stopped before its first epoch ended starts from the beginning)."""
        sizes = num_rows(train), num_rows(validation)
        steps = math.ceil(sizes[0] / engine.configs[0].batch_size)
        records = [RunRecord.new(c, steps) for c in engine.configs]
        state = engine.init_state()
        best = jax.tree.map(jnp.copy, (state.params, state.batch_stats)) \
            if any(r.keeps_best for r in records) else None
        rows = fingerprint(train, validation) if io.checkpoints is not None else None
        run = cls(engine, records, state, best, 0, sizes, rows)
        if io.resume and io.checkpoints.all_epochs():
            restore_run(io.checkpoints, run, io.log)
        elif io.resume:  # stopped before its first epoch ended: nothing is lost by starting
            io.log(f"nothing to resume in {io.checkpoints.directory} (no epoch had finished): "
                   "starting from the beginning")
        return run

    def epoch(self, train, validation, active: np.ndarray, log) -> None:
        """One epoch of the models still training (`active`, updated where one stops): their
        records, and their best weights where they improved."""
        t0 = time.perf_counter()
        self.state, train_metrics = self.engine.epoch(self.state, train, self.epochs, active)
        val = self.engine.validate(self.state, validation)
        seconds = time.perf_counter() - t0
        self.epochs += 1
        improved = np.zeros(len(self.records), bool)
        for i in np.flatnonzero(active):
            improved[i], done = self.records[i].observe(train_metrics[i], val[i], seconds)
            active[i] = not done
        if len(self.records) == 1:
            log_epoch(log, self.records[0], train_metrics[0], val[0], seconds)
        keep_best = improved & np.array([r.keeps_best for r in self.records])
        if self.best is not None and keep_best.any():
            self.best = self.engine.select(keep_best, (self.state.params,
                                                       self.state.batch_stats), self.best)


def finish(engine: Engine, records: list[RunRecord], state, best, test: Split | None, log):
    """After training, for each completed model, in Keras 3's order: the weights replaced
    by their moving average where it keeps one (use_ema: the optimizer's finalize), then the
    best weights restored where asked (EarlyStopping at the end of training), then its
    test metrics recorded."""
    keep_best = np.array([r.keeps_best for r in records])
    completed = np.array([r.status == "completed" for r in records])
    for technique, weights in engine.final_weights(state):
        replaced = completed & np.array([technique.on(r.config) for r in records])
        if replaced.any():
            state = state._replace(params=engine.select(replaced, weights, state.params))
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
