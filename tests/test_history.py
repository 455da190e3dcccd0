"""The run record: Keras' EarlyStopping rule, transcribed from Keras and compared."""

import numpy as np
import pytest

from regjax.history import EarlyStopping


def keras_stop_epoch(values, patience, min_delta=0.0):
    """Keras' EarlyStopping.on_epoch_end, transcribed: returns the 0-based epoch at which
    training stops, or None."""
    # MonitorCallback: min_delta = abs(min_delta), negated when the monitor_op is less.
    min_delta = -abs(min_delta)
    best, wait = None, 0
    for epoch, current in enumerate(values):
        wait += 1
        if best is None or current - min_delta < best:  # _is_improvement
            best, wait = current, 0
            continue
        if wait >= patience and epoch > 0:
            return epoch
    return None


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
    assert keras_stop_epoch(values, patience) == expected
    assert our_stop_epoch(values, patience) == expected


def test_early_stopping_matches_keras_on_random_sequences():
    rng = np.random.default_rng(0)
    for _ in range(500):
        values = list(np.round(rng.uniform(0, 1, rng.integers(1, 15)), 1))
        patience, min_delta = int(rng.integers(0, 5)), float(rng.choice([0.0, 0.05]))
        assert our_stop_epoch(values, patience, min_delta) == keras_stop_epoch(
            values, patience, min_delta)


def test_min_delta_demands_a_decrease_larger_than_it():
    # 1.0 -> 0.96 is a decrease of 0.04: not an improvement with min_delta 0.05.
    values = [1.0, 0.96, 0.93, 0.9]
    assert keras_stop_epoch(values, 1, 0.05) == our_stop_epoch(values, 1, 0.05) == 1
    assert our_stop_epoch([1.0, 0.96, 0.92, 0.88], 1, 0.03) is None
