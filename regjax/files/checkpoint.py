"""Checkpoints of a training run, written with orbax-checkpoint after every epoch (what a run
stores in them and how it continues from one: regjax.train.resume).

A checkpoint holds the arrays (parameters, optimizer state, batch-norm statistics and, when
restore_best_weights is on, the best weights so far) and a JSON record of everything else
needed to continue exactly: the config, the epoch, the history so far and the early-stopping
counters. Orbax writes each checkpoint into a temporary directory and renames it when it is
complete, so a run killed at any moment leaves only whole checkpoints behind; on resume the
newest whole one is used. The last `keep` checkpoints are kept, plus the one with the lowest
val_loss (the metric early stopping monitors).

Saving is asynchronous: the arrays are copied to host memory, then one background thread
writes them while the next epoch trains (orbax's own async mode still does part of its work
on the calling thread; benchmarks/checkpoint_cost.py measures what a checkpoint costs).
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from regjax.files.atomic import fsync_directory

MONITOR = "val_loss"


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable (`damaged`) or belongs to a different run."""

    def __init__(self, message: str, damaged: bool = False):
        super().__init__(message)
        self.damaged = damaged


class Checkpoints:
    def __init__(self, directory: str | os.PathLike, keep: int = 2):
        self.directory = Path(directory)
        try:
            self._manager = self._open(keep)
        except Exception as e:  # orbax reads every checkpoint's metrics here
            raise CheckpointError(
                f"{self.directory}: cannot open the checkpoints ({type(e).__name__}: "
                f"{first_line(e)}); move the damaged epoch directories out of it, or start "
                "again with --overwrite", damaged=True) from None
        # One thread: checkpoints are written one after another, in epoch order.
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "regjax-checkpoint")
        self._pending: concurrent.futures.Future | None = None

    def _open(self, keep: int) -> ocp.CheckpointManager:
        policy = policies.AnyPreservationPolicy([
            policies.LatestN(n=keep),
            policies.BestN(get_metric_fn=lambda metrics: metrics[MONITOR], reverse=True, n=1),
        ])
        # Each process of a distributed run keeps its own checkpoints, of its own models, in
        # its own directory: it writes them as their only (primary) process, and no process
        # waits for another to save.
        me = jax.process_index()
        alone = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me},
                                                   barrier_sync_key_prefix=f"process-{me}")
        # Made here: orbax creates it only when every process shares the directory.
        self.directory.mkdir(parents=True, exist_ok=True)
        return ocp.CheckpointManager(
            self.directory.absolute(),
            item_handlers={"arrays": NpzHandler(),
                           "record": ocp.JsonCheckpointHandler(multiprocessing_options=alone)},
            options=ocp.CheckpointManagerOptions(
                preservation_policy=policy, create=False,
                # best_fn makes orbax write each checkpoint's metrics, which a resumed run
                # needs to know the best one (the policy above decides what is kept).
                best_fn=lambda metrics: metrics[MONITOR], best_mode="min",
                cleanup_tmp_directories=True,  # the remains of a killed write
                enable_async_checkpointing=False,  # the writer thread is async
                multiprocessing_options=alone))

    def save(self, epoch: int, arrays: Any, record: dict, val_loss: float) -> None:
        """Starts writing the checkpoint of `epoch` (1-based, = epochs completed)."""
        # Copies: the next epoch donates the device buffers and appends to the history
        # while this is written.
        host, record = jax.tree.map(np.array, arrays), copy.deepcopy(record)
        self.wait()  # the previous one, and any error it met
        self._pending = self._writer.submit(self._write, epoch, host, record, val_loss)

    def _write(self, epoch: int, arrays, record: dict, val_loss: float) -> None:
        self._manager.save(epoch, args=ocp.args.Composite(
            arrays=NpzSave(arrays), record=ocp.args.JsonSave(record)),
            metrics={MONITOR: val_loss})
        # Orbax has renamed the finished checkpoint into place: make the rename durable
        # (the arrays' file was flushed as it was written), so that a power cut cannot undo
        # a checkpoint that counts as written.
        for directory in (self.directory / str(epoch), self.directory):
            fsync_directory(directory)

    def latest_epoch(self) -> int | None:
        self.wait()
        return self._manager.latest_step()

    def all_epochs(self) -> list[int]:
        self.wait()
        return list(self._manager.all_steps())

    def record(self, epoch: int) -> dict:
        """The JSON record of the checkpoint of `epoch`."""
        try:
            restored = self._manager.restore(
                epoch, args=ocp.args.Composite(record=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many types for a damaged directory
            raise CheckpointError(f"{self.directory}: cannot read the checkpoint of epoch "
                                  f"{epoch} ({type(e).__name__}: {first_line(e)})",
                                  damaged=True) from None
        return restored.record

    def arrays(self, epoch: int, like: Any) -> Any:
        """The arrays of the checkpoint of `epoch`, in the structure of `like`."""
        try:
            restored = self._manager.restore(
                epoch, args=ocp.args.Composite(arrays=NpzRestore(like)))
        except Exception as e:
            raise CheckpointError(f"{self.directory}: the checkpoint of epoch {epoch} does "
                                  f"not fit this model ({first_line(e)})", damaged=True) from None
        # Back where `like` lives (on a device, or split between devices).
        return jax.tree.map(lambda a, to: jax.device_put(a, to.sharding), restored.arrays, like)

    def delete(self, epoch: int) -> None:
        self.wait()
        self._manager.delete(epoch)

    def wait(self) -> None:
        """Blocks until every checkpoint started so far is completely written; raises the
        error of a write that failed."""
        pending, self._pending = self._pending, None
        if pending is not None and pending.exception() is not None:
            e = pending.exception()
            raise CheckpointError(f"{self.directory}: writing a checkpoint failed "
                                  f"({type(e).__name__}: {e}); the earlier ones are intact")

    def close(self) -> None:
        self.wait()
        self._writer.shutdown()
        self._manager.close()


class NpzHandler(ocp.CheckpointHandler):
    """A checkpoint's arrays, a pytree of numpy arrays, as one .npz file. Orbax's own array
    handlers write numpy arrays from process 0 only and refuse a process's own jax arrays in
    a multi-process run, while each process of a distributed comparison keeps its own
    models' checkpoints; orbax's manager still makes each checkpoint atomic, numbers, keeps
    and deletes them."""

    FILE = "arrays.npz"

    def save(self, directory, args: "NpzSave") -> None:
        with open(os.fspath(directory / self.FILE), "wb") as f:
            np.savez(f, *jax.tree.leaves(args.item))
            f.flush()
            os.fsync(f.fileno())

    def restore(self, directory, args: "NpzRestore"):
        """The arrays in the structure of args.like, refused unless every shape and dtype
        matches."""
        leaves, structure = jax.tree.flatten(args.like)
        with np.load(os.fspath(directory / self.FILE)) as saved:
            arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        if len(arrays) != len(leaves):
            raise ValueError(f"{len(arrays)} arrays saved, {len(leaves)} expected")
        for saved, expected in zip(arrays, leaves):
            if (saved.shape, saved.dtype) != (expected.shape, expected.dtype):
                raise ValueError(f"an array of shape {saved.shape} {saved.dtype} saved, "
                                 f"{expected.shape} {expected.dtype} expected")
        return jax.tree.unflatten(structure, arrays)


@ocp.args.register_with_handler(NpzHandler, for_save=True)
@dataclasses.dataclass
class NpzSave(ocp.args.CheckpointArgs):
    item: Any


@ocp.args.register_with_handler(NpzHandler, for_restore=True)
@dataclasses.dataclass
class NpzRestore(ocp.args.CheckpointArgs):
    like: Any


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
