"""MNIST-style datasets: where they come from (an IDX directory, a prepared TFDS directory,
Debian's package, a download) and the Keras train/validation split of the original notebook.

Sources are tried in a fixed order and every failure is reported; a dataset is never
silently replaced by another one.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import functools
import os
import tempfile
import urllib.request
from pathlib import Path

import jax
import numpy as np

from regjax import rng
from regjax.config import IMAGE_SHAPE, NUM_CLASSES, Config
from regjax.data import DATASETS
from regjax.data.idx import IDX_STEMS, DataError, find_file, has_idx_files, read_idx_split
from regjax.data.split import Split

# Debian's `dataset-fashion-mnist` package installs the IDX files here.
DEBIAN_DIRS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}
# Where the original files are published (used only for the download source).
DOWNLOAD_URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    source: str  # where the data came from, for logs and history.json
    train: Split
    test: Split


def read_idx_dataset(name: str, directory: str | os.PathLike) -> Dataset:
    directory = Path(directory)
    return Dataset(name, f"IDX files in {directory}", read_idx_split(directory, "train"),
                   read_idx_split(directory, "test"))


# ------------------------------------------------------------------------ TFDS directories


def tfds_data_dir() -> Path:
    return Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()


def has_tfds_dataset(name: str, data_dir: Path) -> bool:
    return any((data_dir / name).glob("*/dataset_info.json"))


def read_tfds_dataset(name: str, data_dir: str | os.PathLike) -> Dataset:
    """Reads a prepared array_record TFDS dataset; needs no TensorFlow."""
    import tensorflow_datasets as tfds

    sources = tfds.data_source(name, data_dir=os.fspath(data_dir), download=False)
    splits = {}
    for split in ("train", "test"):
        records = sources[split].__getitems__(range(len(sources[split])))
        images = np.stack([r["image"].reshape(IMAGE_SHAPE) for r in records]).astype(np.uint8)
        labels = np.asarray([r["label"] for r in records], np.int32)
        splits[split] = Split(images, labels)
    return Dataset(name, f"TFDS data dir {data_dir}", splits["train"], splits["test"])


def prepare_tfds_dataset(name: str, data_dir: str | os.PathLike,
                         idx_dir: str | os.PathLike) -> None:
    """Prepares `name` as array_record TFDS data in `data_dir` from the IDX files in
    `idx_dir`. Works without TensorFlow (TFDS' own mnist builders need it) and keeps the
    files' row order, so the Keras validation split is the same rows as with the files."""
    from regjax.data import tfds_builder

    tfds_builder.make_builder(name, data_dir, idx_dir).download_and_prepare()


def download_idx_files(name: str, directory: Path, timeout: float = 30.0) -> None:
    """Downloads the four gzipped IDX files of `name` into `directory` (one try each, with a
    timeout, so an offline machine fails in seconds)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem in IDX_STEMS:
        url = DOWNLOAD_URLS[name] + stem + ".gz"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            (directory / (stem + ".gz")).write_bytes(response.read())


# ------------------------------------------------------------------------------- loading


def load_dataset(name: str, data_dir: str | os.PathLike | None = None,
                 download: bool = True) -> Dataset:
    """Loads `name` from the first source that has it.

    With `data_dir`, only that directory is used: it must hold the four IDX files or a
    prepared TFDS dataset. Without it: the TFDS data dir, then (Fashion-MNIST) Debian's
    package, then a download prepared into the TFDS data dir. A directory or file that
    cannot be read is a DataError naming it.
    """
    try:
        return _load_dataset(name, data_dir, download)
    except OSError as e:  # e.g. a directory without read permission, or a name too long
        check = "check its permissions, or " if e.errno in (errno.EACCES, errno.EPERM) else ""
        raise DataError(f"cannot read {e.filename or 'the dataset'}: {e.strerror or e}; "
                        f"{check}give another --data-dir") from None


def _load_dataset(name: str, data_dir, download: bool) -> Dataset:
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"unknown dataset {name!r}{hint}; choose one of {', '.join(DATASETS)}")
    if data_dir is not None:
        directory = Path(data_dir).expanduser()
        if not directory.exists():
            raise DataError(f"data directory {directory} does not exist")
        if not directory.is_dir():
            raise DataError(f"data directory {directory} is a file, not a directory: give "
                            "the directory that holds the four IDX files")
        if has_idx_files(directory):
            return read_idx_dataset(name, directory)
        if has_tfds_dataset(name, directory):
            return read_tfds_dataset(name, directory)
        missing = [s for s in IDX_STEMS if find_file(directory, s) is None]
        raise DataError(
            f"{directory} holds neither the IDX files of {name} (missing: {', '.join(missing)}, "
            f"each may end in .gz) nor a prepared TFDS dataset {directory / name}"
        )

    tried = []
    tfds_dir = tfds_data_dir()
    if has_tfds_dataset(name, tfds_dir):
        return read_tfds_dataset(name, tfds_dir)
    tried.append(f"no prepared TFDS dataset in {tfds_dir / name}")
    debian_dir = DEBIAN_DIRS.get(name)
    if debian_dir is not None:
        if has_idx_files(debian_dir):
            return read_idx_dataset(name, debian_dir)
        tried.append(f"no IDX files in {debian_dir} (apt-get install dataset-fashion-mnist)")
    if download:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                download_idx_files(name, Path(tmp))
                read_idx_dataset(name, tmp)  # reject corrupt downloads before preparing
                prepare_tfds_dataset(name, tfds_dir, tmp)
            return read_tfds_dataset(name, tfds_dir)
        except (OSError, DataError) as e:  # urllib's errors are OSErrors
            tried.append(f"download from {DOWNLOAD_URLS[name]} failed ({e})")
    else:
        tried.append("download disabled")
    raise DataError(
        f"dataset {name} is not available; tried: " + "; ".join(tried)
        + ". Supply it with --data-dir DIR holding the four IDX files "
        + ", ".join(IDX_STEMS)
        + " (optionally .gz)"
    )


# ------------------------------------------------------------------ the notebook's splits


def validation_split(split: Split, fraction: float = 0.2) -> tuple[Split, Split]:
    """Keras' `validation_split`: the LAST `fraction` of the rows, taken before shuffling."""
    n_train = int(len(split) * (1.0 - fraction))
    return (Split(split.images[:n_train], split.labels[:n_train]),
            Split(split.images[n_train:], split.labels[n_train:]))


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
        pool = Split(pool.images[rows], pool.labels[rows])
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
                                                 config.label_noise))
    return train, validation


def check_regime(configs: list[Config], dataset: Dataset) -> None:
    """Raises DataError if a config asks for more training rows than `dataset` has."""
    largest = max(c.train_size for c in configs)
    if largest > len(dataset.train):
        raise DataError(f"--train-size {largest}: {dataset.name} has only "
                        f"{len(dataset.train)} training rows")


def noisy_labels(seed: int, labels: np.ndarray, p: float) -> np.ndarray:
    """`labels` with each replaced, with probability p, by a uniformly random other class:
    (label + k) mod 10 with k uniform in 1..9, drawn from the seed's labels branch."""
    flip, shift = map(np.asarray, _label_draws(seed, np.float32(p), labels.shape))
    return np.where(flip, (labels + shift) % NUM_CLASSES, labels).astype(labels.dtype)


# Jitted: run op by op, the unrolled threefry hash takes seconds per draw.
@functools.partial(jax.jit, static_argnums=(1, 2))
def _subset(seed, n: int, size: int) -> jax.Array:
    return rng.permutation(rng.subset_key(seed), n)[:size]


@functools.partial(jax.jit, static_argnums=2)
def _label_draws(seed, p, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    key = rng.labels_key(seed)
    return (rng.bernoulli(jax.random.fold_in(key, rng.FLIP), p, shape),
            jax.random.randint(jax.random.fold_in(key, rng.CLASS), shape, 1, NUM_CLASSES))
