"""The run record: its early stopping against keras.callbacks.EarlyStopping itself."""

import numpy as np
import pytest

from regjax.config import Config
from regjax.techniques.early_stopping import EarlyStopping
from regjax.train.history import RunRecord
from tests.keras_oracle import keras_stop_epoch


def our_stop_epoch(values, patience, min_delta=0.0):
    stopper = EarlyStopping(patience, min_delta)
    for epoch, v in enumerate(values):
        if stopper.update(epoch, v)[1]:
            return epoch
    return None


@pytest.mark.parametrize("values,patience,expected", [
    ([1.0, 0.9, 0.95, 0.96, 0.97, 0.5], 3, 4),  # three epochs without improvement
    ([1.0, 0.9, 0.95, 0.89, 0.97, 0.98, 0.99], 3, 6),  # improvement resets the wait
    ([1.0, 0.9, 0.9, 0.9, 0.9], 3, 4),  # equal is not an improvement
    ([1.0, 1.1], 0, 1),  # patience 0 stops at the first non-improvement, never at epoch 0
    ([1.0, 1.1, 1.2, 1.3], 1, 1),
    ([3.0, 2.0, 1.0, 0.5], 1, None),
])
def test_early_stopping_stops_where_keras_does(values, patience, expected):
    assert keras_stop_epoch(values, patience)[0] == expected
    assert our_stop_epoch(values, patience) == expected


def test_early_stopping_matches_keras_on_random_sequences():
    """Stop epoch and, with restore_best_weights, the epoch whose weights remain (regjax's
    record's best epoch when it restores, else the last epoch run), over 300 sequences with
    ties and min_delta (up to infinity: Keras counts the first epoch as an improvement
    whatever min_delta is, and restores its weights)."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        values = list(np.round(rng.uniform(0, 1, rng.integers(1, 15)), 1))
        patience, min_delta = int(rng.integers(0, 5)), float(rng.choice([0.0, 0.05, 1e30, np.inf]))
        restore = bool(rng.integers(2))
        stopped, kept = keras_stop_epoch(values, patience, min_delta, restore)
        config = Config(early_stopping=True, patience=patience, min_delta=min_delta,
                        restore_best_weights=restore, epochs=len(values))
        record = RunRecord.new(config, steps_per_epoch=1)
        for value in values:
            if record.observe({"loss": 1.0, "accuracy": 0.5},
                              {"loss": float(value), "accuracy": 0.5}, 0.1).done:
                break
        assert record.stopped_early == (stopped is not None)
        assert record.epochs_run == (len(values) if stopped is None else stopped + 1)
        assert (record.best_epoch - 1 if restore else record.epochs_run - 1) == kept


def test_min_delta_demands_a_decrease_larger_than_it():
    # 1.0 -> 0.96 is a decrease of 0.04: not an improvement with min_delta 0.05.
    values = [1.0, 0.96, 0.93, 0.9]
    assert keras_stop_epoch(values, 1, 0.05)[0] == our_stop_epoch(values, 1, 0.05) == 1
    assert keras_stop_epoch([1.0, 0.96, 0.92, 0.88], 1, 0.03)[0] is None
    assert our_stop_epoch([1.0, 0.96, 0.92, 0.88], 1, 0.03) is None
