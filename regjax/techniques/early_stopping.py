"""Early stopping on val_loss (keras.callbacks.EarlyStopping(monitor='val_loss')), applied by
the host loop between epochs: training stops when val_loss has not improved by more than
MIN_DELTA for PATIENCE epochs, optionally restoring the best epoch's weights at the end."""

from __future__ import annotations

import dataclasses

from regjax.fields import NONNEGATIVE, STOP, Range, setting
from regjax.techniques.base import Preset, Technique


@dataclasses.dataclass
class EarlyStopping:
    """Keras' EarlyStopping(monitor='val_loss') rule.

    `wait` counts epochs without an improvement larger than min_delta; training stops when
    wait >= patience (and never after the first epoch). The first epoch is an improvement
    whatever min_delta is (Keras starts with no best value, not with infinity), so
    restore_best_weights restores at least its weights. Stopping happens one epoch earlier
    than with flax.training.early_stopping for the same patience.
    """

    patience: int
    min_delta: float = 0.0
    restore_best_weights: bool = False
    best: float | None = None  # None before the first epoch
    best_epoch: int = -1  # 0-based
    wait: int = 0

    def update(self, epoch: int, value: float) -> tuple[bool, bool]:
        """Records `value` for `epoch` (0-based); returns (improved, should_stop)."""
        self.wait += 1
        if self.best is None or value + self.min_delta < self.best:  # by more than min_delta
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True, False
        return False, self.wait >= self.patience and epoch > 0

    @classmethod
    def of(cls, config) -> "EarlyStopping":
        return cls(config.patience, config.min_delta, config.restore_best_weights)


TECHNIQUE = Technique(
    "early_stopping",
    {"early_stopping": setting(False, STOP, "stop when val_loss has not improved for "
                               "PATIENCE epochs", vary="host"),
     "patience": setting(3, STOP, "epochs without improvement before stopping", metavar="N",
                         valid=Range(0), vary="host", needs="early_stopping"),
     "min_delta": setting(0.0, STOP, "smallest decrease of val_loss that counts as an "
                          "improvement", metavar="D", valid=NONNEGATIVE, vary="host",
                          needs="early_stopping"),
     "restore_best_weights": setting(False, STOP, "at the end, restore the weights of the "
                                     "epoch with the lowest val_loss", vary="host",
                                     needs="early_stopping")},
    presets={"early_stopping": Preset(dict(early_stopping=True, patience=3, epochs=50),
                                      "baseline, up to 50 epochs, stops when val_loss stalls "
                                      "for 3 epochs", 1, 5)},
    place="host", order=1,
    host=EarlyStopping.of,
)
