"""Checkpoints of a training run, written with orbax-checkpoint after every epoch.

A checkpoint holds the arrays (parameters, optimizer state, batch-norm statistics and, when
restore_best_weights is on, the best weights so far) and a JSON record of everything else
needed to continue exactly: the config, the epoch, the history so far and the early-stopping
counters. Orbax writes each checkpoint into a temporary directory and renames it when it is
complete, so a run killed at any moment leaves only whole checkpoints behind; on resume the
newest whole one is used. The last `keep` checkpoints are kept, plus the one with the lowest
val_loss (the metric early stopping monitors).

Saving is asynchronous: the arrays are copied to host memory, then one background thread
writes them while the next epoch trains. The compiled epoch keeps one core busy, so on a
machine with two or more the write costs the training loop almost nothing (orbax's own async
mode still does ~20-40 ms of its work on the calling thread; see benchmarks/README.md).
"""

from __future__ import annotations

import concurrent.futures
import copy
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

MONITOR = "val_loss"


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or belongs to a different run."""


class Checkpoints:
    def __init__(self, directory: str | os.PathLike, keep: int = 2):
        self.directory = Path(directory)
        policy = policies.AnyPreservationPolicy([
            policies.LatestN(n=keep),
            policies.BestN(get_metric_fn=lambda metrics: metrics[MONITOR], reverse=True, n=1),
        ])
        self._manager = ocp.CheckpointManager(
            self.directory.absolute(),
            options=ocp.CheckpointManagerOptions(
                preservation_policy=policy, create=True,
                # best_fn makes orbax write each checkpoint's metrics, which a resumed run
                # needs to know the best one (the policy above decides what is kept).
                best_fn=lambda metrics: metrics[MONITOR], best_mode="min",
                cleanup_tmp_directories=True,  # the remains of a killed write
                enable_async_checkpointing=False))  # the writer thread below is async
        # One thread: checkpoints are written one after another, in epoch order.
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "regjax-checkpoint")
        self._pending: concurrent.futures.Future | None = None

    def save(self, epoch: int, arrays: Any, record: dict, val_loss: float) -> None:
        """Starts writing the checkpoint of `epoch` (1-based, = epochs completed)."""
        # Copies: the next epoch donates the device buffers and appends to the history
        # while this is written.
        host, record = jax.tree.map(np.array, arrays), copy.deepcopy(record)
        self.wait()  # the previous one, and any error it met
        self._pending = self._writer.submit(
            self._manager.save, epoch, args=ocp.args.Composite(
                arrays=ocp.args.StandardSave(host), record=ocp.args.JsonSave(record)),
            metrics={MONITOR: val_loss})

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
                                  f"{epoch} ({type(e).__name__}: {e})") from None
        return restored.record

    def arrays(self, epoch: int, like: Any) -> Any:
        """The arrays of the checkpoint of `epoch`, in the structure of `like`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self._manager.restore(
                epoch, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(abstract)))
        except Exception as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{self.directory}: the checkpoint of epoch {epoch} does "
                                  f"not fit this model ({first_line})") from None
        return restored.arrays

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
