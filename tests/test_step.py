"""The compiled program's pieces: each epoch's batches cover every row once, the shuffle's
sort, the partial last batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from regjax import config as cfg
from regjax import rng, step
from regjax.step import epoch_batches, stable_argsort


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
    train = small[0]
    config = cfg.preset("baseline")
    program, state = step.make_program(config)
    images, labels = jax.numpy.asarray(train.images[:100]), jax.numpy.asarray(train.labels[:100])
    _, metrics = step.train_epoch(program, state, images, labels, 0, step.Knobs.of(config))
    assert float(metrics.count) == 100  # 64 + 36 rows, the padded 28 slots weigh nothing


def test_each_epoch_trains_on_the_order_its_key_tree_gives(small):
    """The first step of an epoch trains on the first batch of the permutation drawn from
    shuffle(epoch(seed, e)): its reported loss is the initial model's loss on those rows."""
    train = small[0]
    config = cfg.preset("baseline", seed=3)  # no dropout or batch norm: train = eval mode
    program, state = step.make_program(config)
    knobs = step.Knobs.of(config)
    images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
    for epoch in (0, 2):
        _, metrics = step.train_epoch(program, state, images, labels, epoch, knobs, 1)
        key = rng.shuffle_key(rng.epoch_key(config.seed, epoch))
        rows = np.asarray(step.epoch_batches(key, len(train), config.batch_size)[0][0])
        expected, _ = step.loss(program, state.params, state.batch_stats,
                                step.normalize(images[rows]), labels[rows],
                                jnp.ones(len(rows)), None, knobs, train=False)
        assert step.per_model(metrics)[0]["loss"] == pytest.approx(float(expected), rel=1e-5)
