"""regjax.rng draws exactly what jax.random draws for threefry keys, alone and under vmap."""

import jax
import numpy as np
import pytest

from regjax import rng
from regjax.techniques import BY_NAME, TECHNIQUES

SHAPES = [(), (7,), (64, 128), (3, 4, 5)]


@pytest.mark.parametrize("shape", SHAPES)
def test_bits_equal_jax_random_bits(shape):
    for key in (jax.random.key(0), jax.random.fold_in(jax.random.key(12345), 7)):
        np.testing.assert_array_equal(jax.jit(rng.bits, static_argnums=1)(key, shape),
                                      jax.random.bits(key, shape))


def test_uniform_and_bernoulli_equal_jax_random():
    key = jax.random.key(3)
    ours = jax.jit(lambda k: rng.uniform(k, (1000,), -2.0, 5.0))
    theirs = jax.jit(lambda k: jax.random.uniform(k, (1000,), minval=-2.0, maxval=5.0))
    np.testing.assert_array_equal(ours(key), theirs(key))
    np.testing.assert_array_equal(rng.bernoulli(key, 0.3, (64, 64)),
                                  jax.random.bernoulli(key, 0.3, (64, 64)))
    np.testing.assert_array_equal(jax.jit(lambda k: rng.normal(k, (1000,)))(key),
                                  jax.jit(lambda k: jax.random.normal(k, (1000,)))(key))


def test_bits_are_exact_under_vmap():
    keys = jax.random.split(jax.random.key(1), 5)
    batched = jax.jit(jax.vmap(lambda k: rng.bits(k, (64, 32))))(keys)
    for k in range(5):
        np.testing.assert_array_equal(batched[k], jax.random.bits(keys[k], (64, 32)))


def test_too_many_values_at_once_is_refused():
    with pytest.raises(ValueError, match="at most 2\\*\\*32"):
        rng.bits(jax.random.key(0), (2**16, 2**16))


def tree_keys(seeds=(0, 1), epochs=(0, 1, 2), steps=(0, 1, 2, 3), layers=(0, 1)):
    """Every key a run derives, as (leaves, parents) of key data, through regjax.rng's
    branch functions and the way the layers and the techniques use their keys: every branch
    of the tree in rng's docstring (each technique's at the branch its module declares),
    the feature maps' position under the layers' key, and the data branch."""
    from regjax.models.cnn import MAPS

    branches = sorted({t.branch for t in TECHNIQUES if t.branch is not None})
    leaves, parents = [], []
    for seed in seeds:
        parents += [rng.root_key(seed), rng.data_key(seed), rng.labels_key(seed)]
        leaves += [rng.init_key(seed), rng.subset_key(seed),
                   *(jax.random.fold_in(rng.labels_key(seed), b) for b in (rng.FLIP, rng.CLASS))]
        for e in epochs:
            epoch = rng.epoch_key(seed, e)
            parents.append(epoch)
            leaves.append(rng.shuffle_key(epoch))
            for i in steps:
                step = rng.step_key(epoch, i)
                layer_keys = rng.layers_key(step)
                parents += [step, layer_keys]
                leaves += [jax.random.fold_in(layer_keys, p) for p in (*layers, MAPS)]
                augment = rng.technique_key(step, BY_NAME["augmentation"].branch)
                parents.append(augment)
                leaves += list(jax.random.split(augment, 6))  # augment.sample_affine_params
                leaves += [rng.technique_key(step, b) for b in branches
                           if b != BY_NAME["augmentation"].branch]

    def data(keys):
        return [tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in keys]

    return data(leaves), data(parents)


def test_sibling_branches_have_different_numbers():
    """The branch numbers of each node of the tree in rng's docstring, as rng defines them,
    and the techniques' own under a step (their modules declare them): two siblings with one
    number would be one key drawn for two purposes, unless the two techniques exclude each
    other (MixUp and CutMix)."""
    for siblings in ((rng.INIT, rng.TRAIN, rng.DATA), (rng.SUBSET, rng.LABELS),
                     (rng.FLIP, rng.CLASS), (rng.SHUFFLE, rng.STEPS)):
        assert len(set(siblings)) == len(siblings), siblings
    drawing = [t for t in TECHNIQUES if t.branch is not None]
    assert drawing and all(t.branch != rng.LAYERS for t in drawing)
    for a in drawing:
        for b in drawing:
            if a is not b and a.branch == b.branch:
                assert b.name in a.excludes or a.name in b.excludes, (a.name, b.name)


def test_the_key_tree_never_reuses_a_key():
    """No key is drawn from twice, none is both drawn from and derived from, and the model's
    initialisation shares no key with training (it once equalled epoch 0's key)."""
    leaves, parents = tree_keys()
    assert len(set(leaves)) == len(leaves)
    assert len(set(parents)) == len(parents)
    assert not set(leaves) & set(parents)
    init = {tuple(np.asarray(jax.random.key_data(rng.init_key(s))).tolist()) for s in (0, 1)}
    assert init.isdisjoint({tuple(np.asarray(jax.random.key_data(rng.epoch_key(s, e))).tolist())
                            for s in (0, 1) for e in range(3)})
