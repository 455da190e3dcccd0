"""Many models in one program (one at a time or vmapped): each model draws exactly its single
run's randomness, follows its single run, and stops early on its own."""

import jax
import numpy as np
import pytest

import regjax
from regjax import data, rng
from regjax.config import Knobs
from regjax.nn import augment
from regjax.presets import preset
from regjax.techniques import BY_NAME
from regjax.train import devices, mapping, step
from regjax.train.batched import fit_batched
from regjax.train.engine import Engine
from regjax.train.mapping import over_models, shared_structure
from tests import rounding
from tests.helpers import SPEC, make_program, quiet

# Every knob that may differ between models of one program, all from seed 0 (so what tells
# the models apart is their knobs), plus one model of another seed.
MIXED_KNOBS = [
    preset("dropout", seed=0, epochs=2), preset("dropout", seed=0, dropout=0.5, epochs=2),
    preset("dropout", seed=0, dropout=0.0, l2=1e-3, weight_decay=0.05, max_norm=1.0,
           gaussian_noise=0.2, mixup=0.4, epochs=2),
    preset("dropout", seed=0, l1=1e-4, label_smoothing=0.2, learning_rate=3e-3,
           random_erasing=0.7, epochs=2),
    preset("dropout", seed=1, epochs=2)]
WIDTHS = [None, 1, 2]  # all vmapped at once, one at a time (lax.map), in pairs


def draws(config, knobs, epoch, n, step_index=0):
    """What a model draws in one epoch: its order of rows, the dropout mask of a step's first
    layer and that step's augmentation parameters."""
    epoch_key = rng.epoch_key(knobs.seed, epoch)
    rows, _ = step.epoch_batches(rng.shuffle_key(epoch_key), n, config.batch_size)
    step_key = rng.step_key(epoch_key, step_index)
    mask = rng.bernoulli(jax.random.fold_in(rng.layers_key(step_key), 0), 1 - knobs.dropout,
                         (config.batch_size, config.hidden[0]))
    affine = augment.sample_affine_params(
        rng.technique_key(step_key, BY_NAME["augmentation"].branch), config.batch_size, 28, 28,
        rotation_range=knobs.rotation_range, shift_range=knobs.shift_range,
        shear_range=knobs.shear_range, zoom_range=knobs.zoom_range)
    return rows, mask, affine


@pytest.mark.parametrize("width", WIDTHS, ids=["vmap", "one-at-a-time", "pairs"])
def test_each_model_draws_exactly_its_single_runs_randomness(width):
    """Exact, on any device: random bits are integer arithmetic (regjax.rng), so a model
    among others must draw bit for bit what it draws alone."""
    configs = [*MIXED_KNOBS, preset("augmentation", seed=3, rotation_range=30.0)]
    structure = MIXED_KNOBS[0]  # batch size and layer width: the same for all
    alone = jax.jit(lambda k, e: draws(structure, k, e, 1000))
    together = jax.jit(lambda k, e: over_models(lambda m: draws(structure, m, e, 1000), k,
                                                 width))
    for epoch in (0, 1):
        batched = together(Knobs.of(configs), epoch)
        for i, config in enumerate(configs):
            single = alone(Knobs.of(config), epoch)
            for ours, theirs in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
                np.testing.assert_array_equal(ours[i], theirs)


# Why these tolerances: a model in the batched program runs the same operations as its single
# run, but XLA compiles the two programs separately and may sum products in another order, and
# training amplifies that difference at a rate that depends on the technique and the machine
# (with MixUp and MaxNorm here, 1e-3 within the first epoch). The bound is measured on the
# machine that runs the test, from the single run trained again from weights nudged by one
# ulp (tests/rounding.py), and every other model's single run must be GUARD times further.
@pytest.fixture(scope="module")
def reference():
    """reference(config, train, validation, test) -> (its single run, the same run from
    nudged weights), each computed once for the module (several tests compare with them)."""
    cache = {}

    def runs(config, train, validation, test):
        key = (config, id(train), id(validation), id(test))
        if key not in cache:
            cache[key] = (regjax.fit(config, train, validation, test, log=quiet)[0],
                          [h for h, _ in rounding.perturbed_fits(config, train, validation,
                                                                 test)])
        return cache[key]

    return runs


def assert_batched_equal_single_runs(reference, splits, configs, vmap_width):
    """`splits`: (train, validation, test), the first two shared or one per model."""
    train, val, test = splits
    batched = fit_batched(configs, train, val, test, vmap_width=vmap_width)
    own = lambda split, k: split[k] if isinstance(split, list) else split  # noqa: E731
    references = [reference(c, own(train, k), own(val, k), test) for k, c in enumerate(configs)]
    for k, (history, (single, perturbed)) in enumerate(zip(batched, references)):
        allowed = rounding.assert_follows(history, single, perturbed, len(test), what=k)
        rounding.assert_separated(single, allowed, [r[0] for j, r in enumerate(references)
                                                    if j != k], what=k)


@pytest.mark.parametrize("configs", [
    MIXED_KNOBS,
    [preset("batchnorm", seed=0, epochs=2), preset("batchnorm", seed=5, cutmix=1.0, epochs=2)],
    [preset("augmentation", seed=0, epochs=1, hidden=(16,)),
     preset("augmentation", seed=0, epochs=1, hidden=(16,), rotation_range=30.0,
            zoom_range=0.0, spatial_dropout=0.3)],
], ids=["mlp-knobs", "batchnorm", "cnn-augmentation"])
def test_each_batched_model_follows_its_single_run(reference, small, configs):
    assert_batched_equal_single_runs(reference, small, configs, vmap_width=None)


@pytest.mark.parametrize("vmap_width", [2, len(MIXED_KNOBS)], ids=["pairs", "all"])
def test_vmapped_models_follow_their_single_runs_too(reference, small, vmap_width):
    # The default on a CPU trains a device's models one after another; vmapped (in pairs,
    # or all of a device's models at once) they must give the same histories.
    assert_batched_equal_single_runs(reference, small, MIXED_KNOBS, vmap_width)


@pytest.mark.parametrize("vmap_width,train_size", [(None, 1500), (1, 0)],
                         ids=["own-rows-vmap", "own-labels-one-at-a-time"])
def test_models_with_data_of_their_own_follow_their_single_runs(reference, fashion, small,
                                                                vmap_width, train_size):
    # A data regime gives each model its own rows and labels (its seed's subset and noise;
    # with label noise alone, the images stay shared and only the labels get a model axis),
    # still in one program (regjax.train.engine.Engine.put).
    dataset = data.Dataset("fashion_mnist", "2,000 rows", data.Split(
        fashion.train.images[:2000], fashion.train.labels[:2000], 10), small[2])
    configs = [preset("baseline", seed=0, epochs=2, train_size=train_size, label_noise=0.3),
               preset("baseline", seed=1, epochs=2, train_size=train_size)]
    train, val = map(list, zip(*(data.model_data(c, dataset) for c in configs)))
    assert not np.array_equal(train[0].labels, train[1].labels)  # the test bites
    assert_batched_equal_single_runs(reference, (train, val, small[2]), configs, vmap_width)


@pytest.mark.parametrize("vmap_width", [1, 3], ids=["one-at-a-time", "vmapped"])
def test_early_stopping_is_per_model(reference, small, vmap_width):
    train, val, test = small
    configs = [preset("early_stopping", seed=0, epochs=8, patience=1, min_delta=0.1),
               preset("early_stopping", seed=1, epochs=8, patience=2, min_delta=0.05,
                      restore_best_weights=True),
               preset("baseline", seed=2, epochs=5)]
    batched = fit_batched(configs, train, val, test, vmap_width=vmap_width)
    references = [reference(c, train, val, test) for c in configs]
    singles = [single for single, _ in references]
    assert singles[0]["stopped_early"] and singles[0]["epochs_run"] < 8  # the test bites
    assert len({h["epochs_run"] for h in singles}) > 1  # models end at different epochs
    for k, (history, (single, perturbed)) in enumerate(zip(batched, references)):
        # Which epoch each model stops at, exactly (unless the nudge moves it too), and its
        # losses within the measured bound.
        rounding.assert_follows(history, single, perturbed, len(test), what=k)


def test_a_diverging_model_does_not_stop_the_others(small):
    train, val, test = small
    histories = fit_batched([preset("baseline", epochs=2), preset("baseline", epochs=2,
                                                                  learning_rate=1e8)],
                            train, val, test)
    assert histories[0]["status"] == "completed" and histories[0]["epochs_run"] == 2
    assert histories[1]["status"] == "diverged" and "test_accuracy" not in histories[1]


def test_models_that_differ_in_structure_are_refused():
    with pytest.raises(ValueError, match="must share 'batchnorm'"):
        shared_structure([preset("baseline"), preset("batchnorm")])
    with pytest.raises(ValueError, match="mixup and cutmix each mix"):
        shared_structure([preset("mixup"), preset("cutmix")])


def test_groups_narrow_until_xla_says_they_fit(small, monkeypatch):
    """On an accelerator a device's models start all vmapped together; where XLA's memory
    analysis of the compiled program says that exceeds MEMORY_SHARE of the free memory,
    narrower groups (`narrower`) until it fits or one model runs at a time. Here on a CPU
    posing as an accelerator with less free memory than four models vmapped together need."""
    train, val, _ = small
    configs = [preset("dropout", seed=s, epochs=1) for s in range(4)]

    def compiled(**kwargs):
        engine = Engine(configs, SPEC, **kwargs)
        engine.compile(engine.init_state(), engine.put(train), engine.put(val))
        return engine

    (_, all_four), = compiled(vmap_width=4).tried
    free = int(0.8 * all_four / mapping.MEMORY_SHARE)
    monkeypatch.setattr(mapping, "on_cpu", lambda: False)
    monkeypatch.setattr(devices, "free_bytes", lambda device=None: free)
    tried = compiled().tried
    assert tried[0] == (4, all_four) and len(tried) > 1
    widths = [width for width, _ in tried]
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == len(widths)
    assert all(needed > mapping.MEMORY_SHARE * free for _, needed in tried[:-1])
    assert tried[-1][1] <= mapping.MEMORY_SHARE * free or widths[-1] == 1
    # The next width: the working memory scaled to the room left beside the fixed part.
    assert mapping.narrower(100, needed=500, temporaries=400, free=int(300 / 0.9) + 1) == 50
    assert mapping.narrower(10, needed=101, temporaries=100, free=112) == 9  # narrower
    assert mapping.narrower(10, 10**9, 10**9, 1) == 1


def test_models_start_from_their_single_runs_weights_bit_for_bit():
    """The batched initialiser (vmapped over the seeds) against each single run's: equal in
    every bit, batch-norm statistics and Adam's moments included."""
    configs = [preset("batchnorm", seed=s, dropout=d) for s, d in ((0, 0.0), (7, 0.3),
                                                                    (123456, 0.5))]
    batched_state = Engine(configs, SPEC).init_state()
    for k, config in enumerate(configs):
        single = make_program(config)[1]
        for ours, theirs in zip(jax.tree.leaves(batched_state), jax.tree.leaves(single),
                                strict=True):
            np.testing.assert_array_equal(np.asarray(ours)[k], theirs)


def test_the_weights_average_replaces_the_weights_when_training_ends(small):
    """Keras' use_ema: training and validation see the raw weights (a model with the average
    has the same per-epoch history as one without), the test sees the average; with
    restore_best_weights, Keras restores the best raw weights after the average replaced
    them, so the test sees the best raw weights, as without the average."""
    train, val, test = small
    common = dict(seed=3, epochs=2)
    with_ema, without = fit_batched([preset("weight_ema", **common),
                                     preset("baseline", **common)], train, val, test)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert with_ema[key] == without[key], key
    assert with_ema["test_loss"] != pytest.approx(without["test_loss"], rel=1e-3)
    restore = dict(common, early_stopping=True, patience=5, restore_best_weights=True)
    with_ema, without = fit_batched([preset("weight_ema", **restore),
                                     preset("baseline", **restore)], train, val, test)
    assert with_ema["test_loss"] == without["test_loss"]


def test_the_ensemble_averages_its_members_final_predictions(small):
    """compare.py --ensemble: the seeds' class probabilities averaged. The reference: each
    seed trained alone, its saved model's softmax computed in numpy, averaged there. EMA
    models: the ensemble must use the weights each member ends with (the moving average)."""
    train, val, test = small
    configs = [preset("weight_ema", seed=seed, epochs=2) for seed in (0, 1, 2)]
    histories = fit_batched(configs, train, val, test, ensemble=True)

    def numpy_ensemble(models):
        probabilities = []
        for model in models:
            logits = np.asarray(model(test.images / np.float32(255)), np.float64)
            exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
            probabilities.append(exp / exp.sum(axis=-1, keepdims=True))
        mean = np.mean(probabilities, axis=0)
        return (np.mean(mean.argmax(-1) == test.labels),
                -np.mean(np.log(mean[np.arange(len(test)), test.labels])))

    accuracy, loss = numpy_ensemble([regjax.fit(c, train, val, test, log=quiet)[1]
                                     for c in configs])
    # The bound: the same ensemble of members trained from nudged weights, up and down
    # (tests/rounding.py): the farther of the two.
    nudged = [numpy_ensemble(members) for members in zip(
        *([model for _, model in rounding.perturbed_fits(c, train, val, test)]
          for c in configs))]
    rows = max(2.0, rounding.SAFETY * max(abs(a - accuracy) for a, _ in nudged) * len(test))
    allowed_loss = rounding.bound(max(abs(n / loss - 1) for _, n in nudged))
    for history in histories:
        ensemble = history["ensemble"]
        assert ensemble["members"] == 3
        assert abs(ensemble["test_accuracy"] - accuracy) * len(test) <= rows
        assert abs(ensemble["test_loss"] / loss - 1) <= allowed_loss
    # Averaging helps here, as ensembles do: the test bites only if it differs from members.
    assert ensemble["test_loss"] < min(h["test_loss"] for h in histories)
