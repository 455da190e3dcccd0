"""Early stopping, end-to-end training on real Fashion-MNIST, and reproducibility."""

import dataclasses

import jax
import numpy as np
import pytest

from regjax import config as cfg
from regjax import data
from regjax.train import EarlyStopping, Trainer, fit, to_device


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


def small(dataset, n_train=2000, n_val=500):
    return (data.Split(dataset.train.images[:n_train], dataset.train.labels[:n_train]),
            data.Split(dataset.train.images[-n_val:], dataset.train.labels[-n_val:]))


def test_restore_best_weights_restores_the_lowest_val_loss(fashion):
    train, val = small(fashion)
    config = cfg.preset("early_stopping", epochs=8, patience=1, restore_best_weights=True,
                        learning_rate=0.02, hidden=(64,))
    history, trainer, state = fit(config, train, val, log=lambda _: None)
    best = int(np.argmin(history["val_loss"]))
    assert history["best_epoch"] == best + 1
    final = trainer.evaluate(state, *to_device(val))
    assert final["loss"] == pytest.approx(history["val_loss"][best], rel=1e-5)
    if best != len(history["val_loss"]) - 1:
        assert final["loss"] != pytest.approx(history["val_loss"][-1], rel=1e-5)


def test_partial_last_batch_counts_every_row_once(fashion):
    train = data.Split(fashion.train.images[:100], fashion.train.labels[:100])
    t = Trainer(cfg.preset("baseline"))
    state, metrics = t._train_epoch(t.init_state(), *to_device(train), jax.numpy.int32(0))
    assert float(metrics.count) == 100  # 64 + 36 rows, the padded 28 slots weigh nothing


TIMING = ("epoch_seconds", "compile_seconds", "train_steps_per_second")


def without_timing(history):
    return {k: v for k, v in history.items() if k not in TIMING}


def test_one_epoch_of_baseline_on_fashion_mnist_reaches_80_percent_reproducibly(fashion):
    train, val = data.train_and_validation(fashion, "split")
    config = cfg.preset("baseline", epochs=1)
    history, _, _ = fit(config, train, val, fashion.test, log=lambda _: None)
    assert history["val_accuracy"][0] >= 0.80
    assert history["test_accuracy"] >= 0.78
    assert history["epochs_run"] == 1 and history["steps_per_epoch"] == 750
    again, _, _ = fit(config, train, val, fashion.test, log=lambda _: None)
    assert without_timing(again) == without_timing(history)


@pytest.mark.parametrize("technique", ["dropout", "batchnorm", "augmentation"])
def test_same_seed_gives_identical_histories(fashion, technique):
    train, val = small(fashion, 1000, 300)
    config = cfg.preset(technique, epochs=2)
    runs = [fit(config, train, val, log=lambda _: None) for _ in range(2)]
    h1, h2 = (without_timing(h) for h, _, _ in runs)
    assert h1 == h2
    for a, b in zip(jax.tree.leaves(runs[0][2].params), jax.tree.leaves(runs[1][2].params)):
        np.testing.assert_array_equal(a, b)
    other, _, _ = fit(dataclasses.replace(config, seed=1), train, val, log=lambda _: None)
    assert other["loss"] != h1["loss"]


def test_min_delta_demands_a_decrease_larger_than_it():
    # 1.0 -> 0.96 is a decrease of 0.04: not an improvement with min_delta 0.05.
    values = [1.0, 0.96, 0.93, 0.9]
    assert keras_stop_epoch(values, 1, 0.05) == our_stop_epoch(values, 1, 0.05) == 1
    assert our_stop_epoch([1.0, 0.96, 0.92, 0.88], 1, 0.03) is None
