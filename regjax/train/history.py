"""One run's record: the per-epoch metrics, the host rule that may stop it (the early
stopping technique's, regjax.techniques), the best epoch, divergence and the run's status.
It owns the schema of history.json (and of each run in a comparison's results.json), and
what a checkpoint stores to continue the record exactly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from regjax.config import Config
from regjax.techniques import active

EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")
# status: "running" while training; then "completed" (all epochs, or stopped early),
# "interrupted" (asked to stop between epochs) or "diverged" (a non-finite loss).
STATUSES = ("running", "completed", "interrupted", "diverged")


class History(dict):
    """A run as history.json holds it (RunRecord.summary), which also reads as Keras' History
    does: `history.history` holds the per-epoch metrics under Keras' keys, `history.epoch`
    the epochs run (numbered from 0, as Keras numbers them)."""

    KERAS_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")

    @property
    def history(self) -> dict[str, list[float]]:
        return {key: list(self[key]) for key in self.KERAS_KEYS}

    @property
    def epoch(self) -> list[int]:
        return list(range(self["epochs_run"]))


class Observation(NamedTuple):
    improved: bool  # val_loss improved (early stopping's sense): the best weights change
    done: bool  # the run trains no further epoch (stopped early, last epoch, or diverged)


@dataclasses.dataclass
class RunRecord:
    config: Config
    steps_per_epoch: int
    epochs: dict[str, list] = dataclasses.field(
        default_factory=lambda: {key: [] for key in EPOCH_KEYS})
    stopper: object | None = None  # a host rule: update(epoch, val_loss) -> (improved, stop)
    status: str = "running"
    stopped_early: bool = False
    diverged_epoch: int | None = None  # 1-based, never recorded in `epochs`
    compile_seconds: float | None = None
    test: dict | None = None  # {"loss", "accuracy"}

    @classmethod
    def new(cls, config: Config, steps_per_epoch: int) -> "RunRecord":
        return cls(config, steps_per_epoch, stopper=host_rule(config))

    @property
    def epochs_run(self) -> int:
        return len(self.epochs["loss"])

    @property
    def trains_on(self) -> bool:
        """Whether another epoch is due: still running, not stopped early, epochs left (a
        checkpoint of the last epoch is taken before the run is marked completed)."""
        return (self.status == "running" and not self.stopped_early
                and self.epochs_run < self.config.epochs)

    @property
    def keeps_best(self) -> bool:
        return bool(getattr(self.stopper, "restore_best_weights", False))

    @property
    def best_epoch(self) -> int | None:
        """1-based epoch of the lowest val_loss, tracked when early stopping is on."""
        return None if self.stopper is None else self.stopper.best_epoch + 1

    def observe(self, train: dict, val: dict, seconds: float) -> Observation:
        """Takes one epoch's training and validation metrics. A non-finite loss ends the
        run as diverged, and that epoch is not recorded."""
        if not (math.isfinite(train["loss"]) and math.isfinite(val["loss"])):
            self.status, self.diverged_epoch = "diverged", self.epochs_run + 1
            return Observation(False, True)
        for key, value in (*train.items(), *(("val_" + k, v) for k, v in val.items()),
                           ("epoch_seconds", seconds)):
            self.epochs[key].append(value)
        improved = False
        if self.stopper is not None:
            improved, self.stopped_early = self.stopper.update(self.epochs_run - 1, val["loss"])
        return Observation(improved, self.stopped_early or self.epochs_run == self.config.epochs)

    def finish(self, interrupted: bool) -> None:
        """Ends a run still running: interrupted, or completed."""
        if self.status == "running":
            self.status = "interrupted" if interrupted else "completed"

    def summary(self) -> History:
        """The run as history.json holds it."""
        seconds = self.epochs["epoch_seconds"]
        steps = self.steps_per_epoch
        return History({
            "status": self.status, "config": self.config.to_dict(), **self.epochs,
            "epochs_run": self.epochs_run, "stopped_early": self.stopped_early,
            "best_epoch": self.best_epoch, "compile_seconds": self.compile_seconds,
            "steps_per_epoch": steps,
            # The first epoch is left out when there are others: it warms caches.
            "train_steps_per_second":
                float(np.median([steps / s for s in (seconds[1:] or seconds)]))
                if seconds else None,
            **({"diverged_epoch": self.diverged_epoch} if self.diverged_epoch else {}),
            **({"test_loss": self.test["loss"], "test_accuracy": self.test["accuracy"]}
               if self.test else {}),
        })

    def checkpoint(self) -> dict:
        """What a checkpoint stores to continue this record exactly (JSON)."""
        return {"epochs": self.epochs, "status": self.status,
                "stopped_early": self.stopped_early, "diverged_epoch": self.diverged_epoch,
                "host_rule": None if self.stopper is None else
                dataclasses.asdict(self.stopper)}

    @classmethod
    def from_checkpoint(cls, config: Config, steps_per_epoch: int, saved: dict) -> "RunRecord":
        stopper = host_rule(config)
        if stopper is not None:
            stopper = dataclasses.replace(stopper, **saved["host_rule"])
        return cls(config, steps_per_epoch, epochs=saved["epochs"], status=saved["status"],
                   stopped_early=saved["stopped_early"], diverged_epoch=saved["diverged_epoch"],
                   stopper=stopper)


def host_rule(config: Config):
    """The rule a host technique applies between epochs (early stopping), or None."""
    rules = [t.host(config) for t in active(config) if t.host]
    return rules[0] if rules else None
