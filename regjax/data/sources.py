"""Datasets: where they come from (an IDX directory, a prepared TFDS directory, Debian's
package, a download; or arrays the user hands over, as Keras' load_data() returns them) and
the shape they carry (their images' height, width and channels and their number of classes).
The notebook's splits and the data regimes are regjax.data.regimes.

Sources are tried in a fixed order and every failure is reported; a dataset is never
silently replaced by another one.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import os
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from regjax.data import DATASETS
from regjax.data.idx import IDX_STEMS, DataError, find_file, has_idx_files, read_idx_split
from regjax.data.split import DataSpec, Split, as_split

# Debian's `dataset-fashion-mnist` package installs the IDX files here.
DEBIAN_DIRS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}
# Where the original files are published (used only for the download source).
DOWNLOAD_URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset's training and test rows, with where they came from; its `spec` (image
    shape and number of classes) is what a model is built for."""

    name: str
    source: str  # where the data came from, for logs and history.json
    train: Split
    test: Split

    @property
    def spec(self) -> DataSpec:
        return self.train.spec


def as_dataset(data, name: str = "arrays") -> Dataset:
    """`data` as a Dataset: a Dataset as it is, a dataset's name (load_dataset), or arrays as
    Keras' load_data() returns them, ((x_train, y_train), (x_test, y_test)): uint8 pixels or
    floats in [0, 1], with or without a channel axis. Raises ValueError (TypeError for
    what is none of these) naming the problem."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        return load_dataset(os.fspath(data))
    try:
        (x_train, y_train), (x_test, y_test) = data
    except (TypeError, ValueError):
        raise TypeError(f"data must be a dataset's name, a regjax Dataset, or "
                        f"((x_train, y_train), (x_test, y_test)) as Keras' load_data() returns "
                        f"them, got {type(data).__name__}") from None
    train = as_split((x_train, y_train), "data: training rows")
    test = as_split((x_test, y_test), "data: test rows")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise ValueError(f"data: the training images are {list(train.images.shape[1:])} but "
                         f"the test images {list(test.images.shape[1:])}")
    classes = int(max(train.labels.max(), test.labels.max())) + 1
    return Dataset(name, "arrays given in Python", dataclasses.replace(train, classes=classes),
                   dataclasses.replace(test, classes=classes))


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
    classes = sources["train"].dataset_info.features["label"].num_classes
    splits = {}
    for split in ("train", "test"):
        records = sources[split].__getitems__(range(len(sources[split])))
        images = np.stack([r["image"] for r in records]).astype(np.uint8)
        labels = np.asarray([r["label"] for r in records], np.int32)
        splits[split] = as_split(Split(images, labels, classes), f"{data_dir} {split}")
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
