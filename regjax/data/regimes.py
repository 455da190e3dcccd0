"""The rows a model trains and validates on: the notebook's two set-ups (Keras'
validation_split, or validation on the test split) and the data regimes (fewer training
rows, noisy labels), drawn from each config's seed."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from regjax import rng
from regjax.config import Config
from regjax.data.idx import DataError
from regjax.data.sources import Dataset
from regjax.data.split import Split


def validation_split(split: Split, fraction: float = 0.2) -> tuple[Split, Split]:
    """Keras' `validation_split`: the LAST `fraction` of the rows, taken before shuffling."""
    n_train = int(len(split) * (1.0 - fraction))
    return (Split(split.images[:n_train], split.labels[:n_train], split.classes),
            Split(split.images[n_train:], split.labels[n_train:], split.classes))


def train_and_validation(dataset: Dataset, validation: str) -> tuple[Split, Split]:
    """The notebook's two set-ups: `split` (last 20% of train) or `test` (all train rows,
    validated on the test split)."""
    if validation == "split":
        return validation_split(dataset.train)
    if validation == "test":
        return dataset.train, dataset.test
    raise ValueError(f"validation must be 'split' or 'test', got {validation!r}")


# ------------------------------------------------------------------------ data regimes


def model_data(config: Config, dataset: Dataset) -> tuple[Split, Split]:
    """The rows `config`'s model trains and validates on: the notebook's split of `dataset`
    (train_and_validation) under the config's data regime, both drawn from its seed's key
    tree (regjax.rng), so each seed of a comparison has its own subset and its own noise:

    - train_size > 0: that many training rows drawn at random without replacement (kept in
      the files' order) BEFORE the validation split, as a Keras user would pass
      `x_train[rows]` to fit(validation_split=0.2): the last 20% of the subset validates.
    - label_noise p > 0: each training label (not the validation or test labels) replaced,
      with probability p, by one of the other nine classes, each equally likely.

    Without a regime the splits are train_and_validation's, whatever the seed."""
    check_regime([config], dataset)
    pool = dataset.train
    if config.train_size:
        rows = np.sort(np.asarray(_subset(config.seed, len(pool), config.train_size)))
        pool = Split(pool.images[rows], pool.labels[rows], pool.classes)
    train, validation = train_and_validation(dataclasses.replace(dataset, train=pool),
                                             config.validation)
    for rows, what in ((train, "training"), (validation, "validation")):
        if not len(rows):
            fix = ("use --train-size 2 or more" if config.train_size else
                   f"{dataset.name}'s training file must hold at least 2 rows")
            raise DataError(f"{len(pool)} rows leave no {what} row after the validation split "
                            f"(the last 20% validates): {fix}")
    if config.label_noise:
        train = Split(train.images, noisy_labels(config.seed, train.labels,
                                                 config.label_noise, train.spec.classes),
                      train.classes)
    return train, validation


def check_regime(configs: list[Config], dataset: Dataset) -> None:
    """Raises DataError if a config asks for more training rows than `dataset` has."""
    largest = max(c.train_size for c in configs)
    if largest > len(dataset.train):
        raise DataError(f"--train-size {largest}: {dataset.name} has only "
                        f"{len(dataset.train)} training rows")


def noisy_labels(seed: int, labels: np.ndarray, p: float, classes: int) -> np.ndarray:
    """`labels` with each replaced, with probability p, by a uniformly random other class:
    (label + k) mod classes with k uniform in 1..classes-1, drawn from the seed's labels
    branch."""
    flip, shift = map(np.asarray, _label_draws(seed, np.float32(p), labels.shape, classes))
    return np.where(flip, (labels + shift) % classes, labels).astype(labels.dtype)


# Jitted: run op by op, the unrolled threefry hash takes seconds per draw.
@functools.partial(jax.jit, static_argnums=(1, 2))
def _subset(seed, n: int, size: int) -> jax.Array:
    return rng.permutation(rng.subset_key(seed), n)[:size]


@functools.partial(jax.jit, static_argnums=(2, 3))
def _label_draws(seed, p, shape: tuple[int, ...], classes: int) -> tuple[jax.Array, jax.Array]:
    key = rng.labels_key(seed)
    return (rng.bernoulli(jax.random.fold_in(key, rng.FLIP), p, shape),
            jax.random.randint(jax.random.fold_in(key, rng.CLASS), shape, 1, classes))
