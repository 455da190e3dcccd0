"""The compiled program's pieces: each epoch's batches cover every row once, the shuffle's
sort, the partial last batch; training steps against Keras' train_on_batch; augmentation,
batch-norm statistics and padding inside the training step."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from keras.src.legacy.preprocessing.image import apply_affine_transform

from regjax import config as cfg
from regjax import presets, rng
from regjax.config import Knobs
from regjax.files.modelfile import named_arrays
from regjax.nn import augment
from regjax.rng import stable_argsort
from regjax.techniques import BY_NAME
from regjax.train import step
from regjax.train.step import epoch_batches
from tests import keras_oracle as oracle
from tests import rounding
from tests.helpers import first_step, make_program, regjax_steps


@pytest.mark.parametrize("n,batch", [(48000, 64), (60000, 64), (100, 64), (64, 64), (5, 8)])
def test_every_training_row_is_seen_exactly_once_per_epoch(n, batch):
    rows, weights = epoch_batches(jax.random.key(0), n, batch)
    rows, weights = np.asarray(rows), np.asarray(weights)
    assert rows.shape == weights.shape == (-(-n // batch), batch)
    np.testing.assert_array_equal(np.sort(rows[weights > 0]), np.arange(n))
    assert weights.sum() == n and set(np.unique(weights)) <= {0.0, 1.0}
    assert not np.array_equal(rows, np.asarray(epoch_batches(jax.random.key(1), n, batch)[0]))


@pytest.mark.parametrize("high", [3, 2**32 - 1])
def test_stable_argsort_matches_numpy_with_many_ties_and_under_vmap(high):
    keys = np.random.default_rng(high).integers(0, high, size=(3, 5000), dtype=np.uint64)
    keys = keys.astype(np.uint32)
    expected = np.argsort(keys, axis=-1, kind="stable")
    np.testing.assert_array_equal(jax.jit(stable_argsort)(keys[0]), expected[0])
    np.testing.assert_array_equal(jax.vmap(stable_argsort)(keys), expected)
    assert stable_argsort(keys[0]).dtype == np.int32



def test_partial_last_batch_counts_every_row_once(small):
    """100 rows, batch 64: the epoch's loss sum is the first batch's 64 losses (initial
    weights) plus the 36 real rows of the padded second one (the weights after the first
    step), each computed alone; the 28 padding slots weigh nothing."""
    train = small[0]
    config = presets.preset("baseline")
    program, state, rest = make_program(config)
    knobs = Knobs.of(config)
    images, labels = jnp.asarray(train.images[:100]), jnp.asarray(train.labels[:100])
    _, metrics = step.train_epoch(program, state, rest, images, labels, 0, knobs)
    assert float(metrics.count) == 100
    epoch_key = rng.epoch_key(config.seed, 0)
    rows, weights = step.epoch_batches(rng.shuffle_key(epoch_key), 100, 64)
    first, _ = step.train_step(program, state, rest, images[rows[0]], labels[rows[0]],
                               weights[0], rng.step_key(epoch_key, 0), knobs)
    real = np.asarray(rows[1])[np.asarray(weights[1]) > 0]
    assert len(real) == 36

    def mean_loss(params, rows):
        value, _ = step.loss(program, params, state.batch_stats, rest,
                             step.normalize(images[rows]), labels[rows], jnp.ones(len(rows)),
                             None, knobs, train=False)
        return float(value)

    expected = 64 * mean_loss(state.params, rows[0]) + 36 * mean_loss(first.params, real)
    assert float(metrics.loss) == pytest.approx(expected, rel=1e-5)


def test_each_epoch_trains_on_the_order_its_key_tree_gives(small):
    """The first step of an epoch trains on the first batch of the permutation drawn from
    shuffle(epoch(seed, e)): its reported loss is the initial model's loss on those rows."""
    train = small[0]
    config = presets.preset("baseline", seed=3)  # no dropout or batch norm: train = eval mode
    program, state, rest = make_program(config)
    knobs = Knobs.of(config)
    images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
    for epoch in (0, 2):
        _, metrics = step.train_epoch(program, state, rest, images, labels, epoch, knobs, 1)
        key = rng.shuffle_key(rng.epoch_key(config.seed, epoch))
        rows = np.asarray(step.epoch_batches(key, len(train), config.batch_size)[0][0])
        expected, _ = step.loss(program, state.params, state.batch_stats, rest,
                                step.normalize(images[rows]), labels[rows],
                                jnp.ones(len(rows)), None, knobs, train=False)
        assert step.per_model(metrics)[0]["loss"] == pytest.approx(float(expected), rel=1e-5)


# ------------------------------------------------------------- against Keras' train_on_batch

def run_both(config: cfg.Config, images, labels, batches: list[np.ndarray]):
    """regjax's training step and Keras' model.train_on_batch from the same initial weights
    over the same batches (each batch padded to config.batch_size slots for regjax, the
    padding filled with other rows of weight 0, as an epoch's partial last batch is);
    returns (regjax's named arrays, Keras' model, regjax's loss of the first step, Keras').
    With a moving average of the weights (weight_ema), the averages of both sides, as they
    replace the weights at the end of training."""
    _, state, _ = make_program(config)
    model = oracle.keras_model(config)
    model.set_weights(oracle.keras_weights(named_arrays(state.params, state.batch_stats), config))
    ours, our_losses = regjax_steps(config, state, images, labels, batches)
    losses = []
    for loss, rows in zip(our_losses, batches):
        keras_loss = model.train_on_batch(oracle.keras_inputs(images[rows], config),
                                          oracle.one_hot(labels[rows]))
        losses.append((loss, float(np.ravel(keras_loss)[0])))
    if config.ema:  # Keras' moving averages of the weights, as training ends
        model.optimizer.finalize_variable_values(model.trainable_variables)
    return ours, model, losses


# Where a preset's knob is too weak to tell apart from its absence in 30 steps, the test
# strengthens it: AdamW's 0.004 moves a weight by 4e-6 of itself a step (1e-7 absolute here,
# within the tolerance after 30 steps), 0.5 by 5e-4; MaxNorm(3) is not reached from Glorot's
# initial column norms (about 1.3), MaxNorm(1) clips from the first step.
STRONGER = {"weight_decay": {"weight_decay": 0.5}, "max_norm": {"max_norm": 1.0},
            "weight_ema": {"max_norm": 1.0}}  # Keras averages before applying constraints


@pytest.mark.parametrize("technique", ["baseline", "l1", "l2", "batchnorm", "label_smoothing",
                                       "weight_decay", "max_norm", "weight_ema",
                                       "activity_l2", "orthogonal"])
def test_training_steps_match_keras_train_on_batch(fashion, technique):
    """30 steps from identical weights on identical batches, the last one partial (36 rows),
    agree with Keras in every weight, bias and batch-norm statistic, and in each step's loss.

    Tolerance: both sides compute in float32 with the same formulas but in different orders
    (XLA fuses and reassociates sums differently on each program and CPU), so each step's
    gradients differ by a few float32 ulps, and Adam carries that further at a rate that
    depends on the technique and the machine: a weight whose gradient is near zero steps by
    up to the learning rate either way. So each array is compared by the relative norm of
    the difference (a few such weights cannot dominate it), within SAFETY times what regjax's
    own 30 steps from weights nudged by one ulp moved it (measured here; tests/rounding.py).
    The guard: a run with a 10% larger learning rate, a small mistake, is GUARD times further
    from regjax's than the bound in every array. One exception: a Dense bias that batch norm
    follows has an analytic gradient of zero wherever its unit is active on every row (the
    normalisation removes any shift), so on both sides it is rounding noise, which Adam turns
    into steps of up to the learning rate; it can only be held to that bound."""
    config = presets.preset(technique, **STRONGER.get(technique, {}))
    images, labels = fashion.train.images[:2000], fashion.train.labels[:2000].astype(np.int32)
    batches = [np.arange(64 * i, 64 * (i + 1)) for i in range(29)] + [np.arange(1856, 1892)]
    ours, model, losses = run_both(config, images, labels, batches)
    initial = make_program(config)[1]
    nudged, nudged_losses = regjax_steps(
        config, initial._replace(params=rounding.nudged(initial.params)), images, labels,
        batches)
    wrong, _ = regjax_steps(dataclasses.replace(config, learning_rate=1.1e-3), initial, images,
                            labels, batches)
    keras_arrays = dict(zip(oracle.keras_order(config), model.get_weights()))
    distance = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)  # noqa: E731
    for name, theirs in keras_arrays.items():
        a, c, w = (np.asarray(arrays[name]).reshape(theirs.shape)
                   for arrays in (ours, nudged, wrong))
        if config.batchnorm and name.startswith("params/head/hidden/") and name.endswith("/bias"):
            np.testing.assert_allclose(a, theirs, atol=config.learning_rate * len(batches),
                                       rtol=0, err_msg=name)
            continue
        allowed = rounding.bound(distance(c, a))
        assert distance(a, theirs) <= allowed, (name, distance(a, theirs), allowed)
        assert distance(w, a) >= rounding.GUARD * allowed, (name, distance(w, a), allowed)
    # Each step's loss, before its update, as Keras reports it (penalty and smoothing in).
    ours, keras = map(np.array, zip(*losses))
    np.testing.assert_array_less(np.abs(ours / keras - 1),
                                 rounding.bound(np.abs(np.array(nudged_losses) / ours - 1)))


def test_a_training_step_trains_on_keras_warped_images(fashion):
    """The augmentation preset's step reports the loss of the batch warped as Keras'
    apply_affine_transform warps it with the parameters drawn from the step's augment key,
    and not that of the unwarped batch. (That evaluation never augments is checked
    against numpy in test_training.py.) The CNN without dropout or batch norm computes the
    same in training and evaluation mode, so the loss can be recomputed. float32 warps agree
    with Keras' float64 to ~1e-5 per pixel, which moves the loss by ~1e-5 relative."""
    reported, images, key, loss_of = first_step(presets.preset("augmentation", hidden=(32,)),
                                                fashion)
    p = augment.sample_affine_params(rng.technique_key(key, BY_NAME["augmentation"].branch),
                                     64, 28, 28, rotation_range=10,
                                     shift_range=0.1, shear_range=0.2, zoom_range=0.2)
    warped = np.stack([apply_affine_transform(
        image.astype(np.float64) / 255, *[float(np.asarray(v)[i]) for v in p],
        row_axis=0, col_axis=1, channel_axis=2, fill_mode="nearest", order=1)
        for i, image in enumerate(images)])

    assert reported["loss"] == pytest.approx(loss_of(warped)[0], rel=1e-4)
    assert reported["loss"] != pytest.approx(loss_of(images / 255)[0], rel=1e-3)


def test_gaussian_noise_draws_as_keras_gaussian_noise_does():
    """regjax's noise (rng.normal scaled by the knob) and keras.layers.GaussianNoise in
    training come from different random streams, so their distributions are compared:
    200,000 draws each, the two-sample Kolmogorov-Smirnov test, both against N(0, 0.3), and
    the standard deviation (its sampling error is 0.16% at this size; 1% allowed). In
    evaluation Keras' layer is the identity, as regjax's evaluation (no noise) is."""
    import keras
    from scipy import stats

    sigma, n = 0.3, 200_000
    ours = np.asarray(sigma * rng.normal(jax.random.key(5), (n,)))
    layer = keras.layers.GaussianNoise(sigma, seed=5)
    theirs = np.asarray(layer(np.zeros((n,), np.float32), training=True))
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    for draws in (ours, theirs):
        assert stats.kstest(draws, "norm", args=(0, sigma)).pvalue > 1e-3
        assert np.std(draws) == pytest.approx(sigma, rel=0.01)
        assert abs(np.mean(draws)) < 5 * sigma / np.sqrt(n)
    assert stats.ks_2samp(ours, 1.1 * theirs).pvalue < 1e-6  # the test tells sigmas apart
    x = np.random.default_rng(0).random((3, 784), np.float32)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


def test_a_training_step_trains_on_the_noisy_inputs(fashion):
    """The gaussian_noise preset's step reports the loss of its batch plus the noise drawn
    from the step's noise key (normalised pixels + 0.1 N(0, 1)), not of the clean batch.
    The MLP without dropout computes the same in training and evaluation mode."""
    reported, images, key, loss_of = first_step(presets.preset("gaussian_noise"), fashion)
    clean = images.astype(np.float32) / 255
    noise_key = rng.technique_key(key, BY_NAME["gaussian_noise"].branch)
    noisy = clean + 0.1 * np.asarray(rng.normal(noise_key, clean.shape))
    assert reported["loss"] == pytest.approx(loss_of(noisy)[0], rel=1e-5)
    assert reported["loss"] != pytest.approx(loss_of(clean)[0], rel=1e-3)


def test_batchnorm_step_statistics_and_gradients_ignore_padded_rows(fashion):
    """A partial batch of 36 rows padded to 64 slots with other real rows of weight 0: the
    moving statistics after the step are numpy's statistics of the 36 rows (mean and biased
    variance of each hidden layer's ReLU output, entering with weight 1 - 0.99), and the
    gradients (Adam's first moment after one step, m = 0.1 g) equal those of the 36 rows
    alone (to float32 rounding of sums over different row counts: 1e-4 of each array's
    largest entry). Statistics, float32 against float64: ~1e-6."""
    config = presets.preset("batchnorm")
    program, state, rest = make_program(config)
    knobs = Knobs.of(config)
    images, labels = fashion.train.images[:64], fashion.train.labels[:64].astype(np.int32)
    weights = (np.arange(64) < 36).astype(np.float32)
    train_step = jax.jit(step.train_step, static_argnums=0)
    key = rng.step_key(rng.epoch_key(config.seed, 0), 0)
    padded, _ = train_step(program, state, rest, images, labels, weights, key, knobs)
    alone, _ = train_step(program, state, rest, images[:36], labels[:36],
                          np.ones(36, np.float32), key, knobs)
    adam = lambda s: s.opt_state[0].m  # noqa: E731  (Keras' Adam: the chain's first)
    for a, b in zip(jax.tree.leaves(adam(padded)), jax.tree.leaves(adam(alone))):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())
    # numpy: each hidden layer's batch statistics over the 36 real rows.
    w = {k: np.asarray(v, np.float64)
         for k, v in named_arrays(state.params, state.batch_stats).items()}
    after = named_arrays(padded.params, padded.batch_stats)
    x = images[:36].reshape(36, -1).astype(np.float64) / 255
    for i in range(2):
        layer = f"params/head/hidden/{i}"
        x = np.maximum(x @ w[f"{layer}/kernel"] + w[f"{layer}/bias"], 0)
        mean, var = x.mean(0), x.var(0)
        norm = f"head/after/{i}/0/norm"
        np.testing.assert_allclose(after[f"batch_stats/{norm}/mean"],
                                   0.99 * 0.0 + 0.01 * mean, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(after[f"batch_stats/{norm}/var"],
                                   0.99 * 1.0 + 0.01 * var, rtol=1e-5)
        x = ((x - mean) / np.sqrt(var + 1e-3) * w[f"params/{norm}/scale"]
             + w[f"params/{norm}/bias"])
