"""The host loop (regjax.training): end-to-end training on real Fashion-MNIST, restoring the
best weights, reproducibility, evaluation of a trained model, and memory errors."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import regjax
from regjax import config as cfg
from regjax import data
from regjax.devices import OutOfMemory
from tests.helpers import quiet, without_timing


def test_restore_best_weights_restores_the_lowest_val_loss(small):
    train, val, _ = small
    config = cfg.preset("early_stopping", epochs=8, patience=1, restore_best_weights=True,
                        learning_rate=0.02, hidden=(64,))
    history, model = regjax.fit(config, train, val, log=quiet)
    best = int(np.argmin(history["val_loss"]))
    assert history["best_epoch"] == best + 1
    final = regjax.evaluate(model, val)
    assert final["loss"] == pytest.approx(history["val_loss"][best], rel=1e-5)
    if best != len(history["val_loss"]) - 1:
        assert final["loss"] != pytest.approx(history["val_loss"][-1], rel=1e-5)


def test_one_epoch_of_baseline_on_fashion_mnist_reaches_80_percent_reproducibly(fashion):
    train, val = data.train_and_validation(fashion, "split")
    config = cfg.preset("baseline", epochs=1)
    history, model = regjax.fit(config, train, val, fashion.test, log=quiet)
    assert history["val_accuracy"][0] >= 0.80
    assert history["test_accuracy"] >= 0.78
    assert history["epochs_run"] == 1 and history["steps_per_epoch"] == 750
    assert regjax.evaluate(model, fashion.test) == {"loss": history["test_loss"],
                                                    "accuracy": history["test_accuracy"]}
    again, _ = regjax.fit(config, train, val, fashion.test, log=quiet)
    assert without_timing(again) == without_timing(history)


@pytest.mark.parametrize("technique", ["dropout", "batchnorm", "augmentation"])
def test_same_seed_gives_identical_histories(small, technique):
    train, val, _ = small
    config = cfg.preset(technique, epochs=2, **({"hidden": (32,)} if technique ==
                                               "augmentation" else {}))
    runs = [regjax.fit(config, train, val, log=quiet) for _ in range(2)]
    h1, h2 = (without_timing(h) for h, _ in runs)
    assert h1 == h2
    for a, b in zip(*(jax.tree.leaves(nnx.state(m.module)) for _, m in runs)):
        np.testing.assert_array_equal(a, b)
    other, _ = regjax.fit(dataclasses.replace(config, seed=1), train, val, log=quiet)
    assert other["loss"] != h1["loss"]


def test_a_model_too_large_for_memory_is_a_clear_error(small):
    # 784 x 10^9 float32 weights: far beyond any machine; refused before anything is allocated.
    with pytest.raises(OutOfMemory, match="lower --hidden"):
        regjax.fit(cfg.preset("baseline", hidden=(10**9,)), *small[:2], log=quiet)


def test_an_epoch_too_large_for_memory_is_a_clear_error(small, monkeypatch):
    # XLA's estimate of the compiled epoch is compared with the free memory before training.
    monkeypatch.setattr("regjax.devices.free_bytes", lambda device=None: 10**6)
    with pytest.raises(OutOfMemory, match="one epoch needs about .* lower --batch-size"):
        regjax.fit(cfg.preset("baseline", hidden=(8,)), *small[:2], log=quiet)
