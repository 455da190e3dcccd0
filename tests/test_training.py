"""The host loop (regjax.train.loop): early stopping and restored weights against Keras'
callback, every reported number against numpy, end-to-end training on real Fashion-MNIST,
reproducibility, evaluation of a trained model, and memory errors."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from flax import nnx

import regjax
from regjax import config as cfg
from regjax import data, presets
from regjax.files.modelfile import named_arrays
from regjax.models import make_model
from regjax.train.devices import OutOfMemory
from tests import rounding
from tests.helpers import one_line_error, quiet, script, without_timing
from tests.keras_oracle import keras_stop_epoch


def test_fit_stops_and_restores_where_keras_earlystopping_does_on_its_own_val_losses(small):
    """keras.callbacks.EarlyStopping driven with the run's own val_loss series stops at the
    epoch fit stopped at (not before) and keeps the weights of the epoch fit restored."""
    train, val, _ = small
    stopped_early = []
    for seed in (0, 1):
        config = presets.preset("early_stopping", epochs=10, patience=1, restore_best_weights=True,
                            learning_rate=0.02, hidden=(64,), seed=seed)
        history, model = regjax.fit(config, train, val, log=quiet)
        stopped, kept = keras_stop_epoch(history["val_loss"], config.patience,
                                         restore_best_weights=True)
        assert history["stopped_early"] == (stopped is not None)
        assert history["epochs_run"] == (config.epochs if stopped is None else stopped + 1)
        assert history["best_epoch"] == kept + 1
        final = regjax.evaluate(model, val)
        assert final["loss"] == pytest.approx(history["val_loss"][kept], rel=1e-6)
        stopped_early.append(history["stopped_early"] and kept != stopped)
    assert any(stopped_early)  # the case that matters: stopped, and restored an earlier epoch


# ------------------------------------------------- reported numbers against numpy (float64)

def numpy_logits(arrays: dict, config: cfg.Config, images: np.ndarray, train: bool):
    """The notebook's forward pass in numpy float64 from model.npz-named arrays: the CNN's
    3x3 'valid' convolution, ReLU and 2x2 max-pool, then Dense+ReLU layers with batch norm
    (batch statistics with biased variance in training, moving statistics otherwise) and
    the output Dense layer's logits. No dropout or augmentation (evaluation's path)."""
    w = {k: np.asarray(v, np.float64) for k, v in arrays.items()}
    x = images.astype(np.float64) / 255.0
    if config.model == "cnn":
        windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))
        conv = np.einsum("bijckl,klcf->bijf", windows, w["params/kernel"])
        conv = np.maximum(conv + w["params/bias"], 0)
        b, h, wd, f = conv.shape
        conv = conv[:, :h // 2 * 2, :wd // 2 * 2]
        x = conv.reshape(b, h // 2, 2, wd // 2, 2, f).max(axis=(2, 4))
    x = x.reshape(len(x), -1)
    for i in range(len(config.hidden)):
        layer = f"params/head/hidden/{i}"
        x = np.maximum(x @ w[f"{layer}/kernel"] + w[f"{layer}/bias"], 0)
        if config.batchnorm:
            norm = f"head/after/{i}/0/norm"  # the hidden layer's first: batch norm
            mean, var = (x.mean(0), x.var(0)) if train else (
                w[f"batch_stats/{norm}/mean"], w[f"batch_stats/{norm}/var"])
            x = ((x - mean) / np.sqrt(var + 1e-3) * w[f"params/{norm}/scale"]
                 + w[f"params/{norm}/bias"])
    return x @ w["params/head/output/kernel"] + w["params/head/output/bias"]


def numpy_metrics(arrays: dict, config: cfg.Config, split, train: bool = False):
    """(loss, accuracy, the number of rows whose top two logits are too close for float32 to
    order reliably) as Keras reports them: mean cross-entropy on the smoothed targets plus
    l1 * sum|W| + l2 * sum W^2 over the penalised kernels."""
    logits = numpy_logits(arrays, config, split.images, train)
    shifted = logits - logits.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    s = config.label_smoothing
    targets = np.eye(10)[split.labels] * (1 - s) + s / 10
    kernels = [np.asarray(arrays[k], np.float64) for k in arrays
               if k.endswith("kernel") and "output" not in k]
    penalty = sum(config.l1 * np.abs(k).sum() + config.l2 * np.square(k).sum() for k in kernels)
    top2 = np.sort(logits, 1)[:, -2:]
    return (float(-(targets * log_p).sum(1).mean() + penalty),
            float((logits.argmax(1) == split.labels).mean()),
            int((top2[:, 1] - top2[:, 0] < 1e-4).sum()))


def arrays_of(module) -> dict:
    return named_arrays(*nnx.split(module, nnx.Param, nnx.BatchStat, ...)[1:3])


# Every transform that acts in training only (dropout, spatial dropout, Gaussian noise,
# random erasing, MixUp, CutMix, augmentation): the numpy reference computes evaluation
# without any of them, so a transform that leaked into evaluation would fail the test.
TRAINING_ONLY = ("dropout", "spatial_dropout", "gaussian_noise", "random_erasing", "mixup",
                 "cutmix", "augment")


@pytest.mark.parametrize("overrides", [
    dict(batchnorm=True, l1=1e-3, l2=1e-3, label_smoothing=0.1),
    dict(technique="augmentation", hidden=(32,), l2=1e-3),
    dict(dropout=0.5, gaussian_noise=0.3, random_erasing=1.0, mixup=0.4),
    dict(cutmix=1.0, batchnorm=True),
    dict(technique="spatial_dropout", hidden=(32,), spatial_dropout=0.5, dropout=0.5)],
    ids=["penalties-smoothing-bn", "augmentation", "dropout-noise-erasing-mixup",
         "cutmix-bn", "spatial-dropout"])
def test_every_reported_number_equals_numpy_from_the_same_weights(small, overrides):
    """loss and accuracy of a one-step epoch (from the initial weights, training mode: batch
    statistics; where no random transform acts in training), and val_loss, val_accuracy,
    test_loss and test_accuracy (from the trained weights, evaluation mode: moving
    statistics, none of the training-only transforms), penalties and smoothing included,
    against numpy in float64. float32 sums of ~1e3 terms carry a relative error of ~1e-6;
    an accuracy may differ only by rows whose top two logits float32 cannot order."""
    overrides = dict(overrides)
    technique = overrides.pop("technique", "baseline")
    train, val, test = small
    train = data.Split(train.images[:64], train.labels[:64], 10)  # one step: batch 64
    config = presets.preset(technique, epochs=1, validation="split", **overrides)
    history, model = regjax.fit(config, train, val, test, log=quiet)
    initial = arrays_of(make_model(config, train.spec))
    checks = [(history["val_loss"][0], history["val_accuracy"][0], arrays_of(model.module), val),
              (history["test_loss"], history["test_accuracy"], arrays_of(model.module), test)]
    if not any(getattr(config, name) for name in TRAINING_ONLY):  # random in training
        checks.append((history["loss"][0], history["accuracy"][0], initial, train))
    for i, (loss, accuracy, arrays, split) in enumerate(checks):
        expected_loss, expected_accuracy, close = numpy_metrics(arrays, config, split,
                                                                train=i == 2)
        assert loss == pytest.approx(expected_loss, rel=1e-5)
        assert abs(accuracy - expected_accuracy) <= close / len(split)


def test_one_epoch_of_baseline_on_fashion_mnist_reaches_80_percent_reproducibly(fashion):
    train, val = data.train_and_validation(fashion, "split")
    config = presets.preset("baseline", epochs=1)
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
    config = presets.preset(technique, epochs=2, **({"hidden": (32,)} if technique ==
                                               "augmentation" else {}))
    runs = [regjax.fit(config, train, val, log=quiet) for _ in range(2)]
    h1, h2 = (without_timing(h) for h, _ in runs)
    assert h1 == h2
    for a, b in zip(*(jax.tree.leaves(nnx.state(m.module, nnx.Param, nnx.BatchStat))
                      for _, m in runs)):
        np.testing.assert_array_equal(a, b)
    other, _ = regjax.fit(dataclasses.replace(config, seed=1), train, val, log=quiet)
    assert other["loss"] != h1["loss"]


def test_a_model_too_large_for_memory_is_a_clear_error(small):
    # 784 x 10^9 float32 weights: far beyond any machine; refused before anything is allocated.
    with pytest.raises(OutOfMemory, match="lower --hidden"):
        regjax.fit(presets.preset("baseline", hidden=(10**9,)), *small[:2], log=quiet)


def test_an_epoch_too_large_for_memory_is_a_clear_error(small, monkeypatch):
    # XLA's estimate of the compiled epoch is compared with the free memory before training.
    monkeypatch.setattr("regjax.train.devices.free_bytes", lambda device=None: 10**6)
    with pytest.raises(OutOfMemory, match="one epoch needs about .* lower --batch-size"):
        regjax.fit(presets.preset("baseline", hidden=(8,)), *small[:2], log=quiet)


@pytest.mark.skipif(jax.default_backend() != "cpu",
                    reason="forces 4 XLA CPU devices, compared with a run of this process's "
                           "backend, which is not the CPU")
def test_data_parallel_training_on_4_devices_follows_one_device(tmp_path, tiny_idx_dir):
    """train.py --devices 4 (4 XLA CPU devices, each batch split between them, batch-norm
    statistics and gradients summed across devices) against one device, with batch norm:
    the same arithmetic summed in another order. The first steps agree to float32 rounding;
    how far Adam carries that apart over two epochs is measured here, from the one-device
    run trained again from weights nudged by one ulp (tests/rounding.py); the guard: another
    seed's run is further away than that bound by far."""
    result = script("train", "--technique", "batchnorm", "--epochs", 2, "--devices", 4,
                    "--data-dir", tiny_idx_dir, "--output-dir", tmp_path / "d4", "--quiet")
    assert result.returncode == 0, result.stderr
    four = json.loads((tmp_path / "d4" / "history.json").read_text())
    dataset = data.read_idx_dataset("tiny", tiny_idx_dir)
    config = presets.preset("batchnorm", epochs=2)
    splits = (*data.train_and_validation(dataset, config.validation), dataset.test)
    one, _ = regjax.fit(config, *splits, log=quiet)
    perturbed = [h for h, _ in rounding.perturbed_fits(config, *splits)]
    allowed = rounding.assert_follows(four, one, perturbed, len(dataset.test))
    other, _ = regjax.fit(dataclasses.replace(config, seed=1), *splits, log=quiet)
    rounding.assert_separated(one, allowed, [other])
    bad = script("train", "--devices", 3, "--data-dir", tiny_idx_dir)
    assert one_line_error(bad, "--devices must be >= 1 and divide --batch-size (64), got 3")
