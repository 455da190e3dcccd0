"""What a training run stores in its checkpoints (regjax.files.checkpoint) and how it
continues from one: the arrays, the configs, each model's record so far, and the rows it
trains on (their number and digest), checked on resume so that a run continues only from its
own checkpoint.
"""

from __future__ import annotations

import math

import numpy as np

from regjax.config import Config
from regjax.files.checkpoint import CheckpointError, Checkpoints
from regjax.train.history import RunRecord


def save_run(checkpoints: Checkpoints, run) -> None:
    """Starts writing the checkpoint of the epochs `run` (regjax.train.loop.Run) has trained:
    the arrays, and a record of the configs, the histories, the number of rows and their
    digest (regjax.train.loop.fingerprint)."""
    arrays = {"state": run.state, **({"best": run.best} if run.best is not None else {})}
    val_losses = [r.epochs["val_loss"][-1] for r in run.records if r.epochs_run]
    checkpoints.save(run.epochs, arrays, {
        "epoch": run.epochs, "configs": [r.config.to_dict() for r in run.records],
        "records": [r.checkpoint() for r in run.records], "arrays": sorted(arrays),
        "train_rows": run.sizes[0], "validation_rows": run.sizes[1], "data": run.rows,
    }, float(np.mean(val_losses)) if val_losses else math.inf)


def restore_run(checkpoints: Checkpoints, run, log) -> None:
    """Sets `run` (a new regjax.train.loop.Run: its state and best weights give the arrays'
    structure) to where the newest intact checkpoint stands, after checking that the
    checkpoint belongs to the same configs and data. Damaged newer checkpoints are reported
    and removed (the epochs they held are trained again, with the same result)."""
    configs = [r.config for r in run.records]
    epochs = sorted(checkpoints.all_epochs(), reverse=True)
    if not epochs:
        raise CheckpointError(f"{checkpoints.directory}: no complete checkpoint to resume from")
    like = {"state": run.state, **({"best": run.best} if run.best is not None else {})}
    for n, epoch in enumerate(epochs):
        try:
            record = checkpoints.record(epoch)
            check_same_run(checkpoints, record, configs, run.sizes, run.rows)
            arrays = checkpoints.arrays(epoch, like)
            break
        except CheckpointError as e:
            if e.damaged and n < len(epochs) - 1:
                log(f"the checkpoint of epoch {epoch} is damaged ({e}); trying the one before")
                continue
            raise
    for damaged in epochs[:n]:
        checkpoints.delete(damaged)
    steps = run.records[0].steps_per_epoch
    run.records = [RunRecord.from_checkpoint(c, steps, saved)
                   for c, saved in zip(configs, record["records"])]
    run.epochs, run.state, run.best = epoch, arrays["state"], arrays.get("best")
    log(f"resuming from the checkpoint of epoch {epoch} in {checkpoints.directory}")


def check_same_run(checkpoints: Checkpoints, record: dict, configs: list[Config],
                   rows: tuple[int, int], data: str) -> None:
    saved = [Config.from_dict(c) for c in record["configs"]]
    if saved != configs:
        if len(saved) != len(configs):
            raise CheckpointError(f"{checkpoints.directory}: the checkpoint holds "
                                  f"{len(saved)} models, not {len(configs)}; resume with the "
                                  "same command")
        mine, theirs = next((a.to_dict(), b.to_dict())
                            for a, b in zip(configs, saved) if a != b)
        diff = ", ".join(f"{k}={theirs[k]!r} (now {mine[k]!r})"
                         for k in mine if mine[k] != theirs[k])
        raise CheckpointError(f"{checkpoints.directory}: the checkpoint was made with a "
                              f"different config: {diff}; resume with the same flags")
    if (record["train_rows"], record["validation_rows"]) != rows:
        raise CheckpointError(
            f"{checkpoints.directory}: the checkpoint was trained on {record['train_rows']:,} "
            f"training and {record['validation_rows']:,} validation rows, not {rows[0]:,} and "
            f"{rows[1]:,}; resume with the same dataset")
    if record.get("data") is None:
        raise CheckpointError(
            f"{checkpoints.directory}: the checkpoint does not record which rows it was "
            "trained on (an older regjax wrote it); start again with --overwrite")
    if record["data"] != data:
        raise CheckpointError(
            f"{checkpoints.directory}: the checkpoint was trained on other data (rows with "
            f"digest {record['data']}, these have {data}); resume with the same --dataset "
            "and --data-dir")
