"""MNIST-style datasets: IDX files read with numpy, prepared TFDS directories, and the
Keras train/validation split semantics of the original notebook.

Sources are tried in a fixed order and every failure is reported; a dataset is never
silently replaced by another one.
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import os
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "fashion_mnist")
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)

# The four standard files of an MNIST-style dataset (each may also be gzipped).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_STEMS = tuple(stem for stems in IDX_FILES.values() for stem in stems)
# Debian's `dataset-fashion-mnist` package installs the IDX files here.
DEBIAN_DIRS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}
# Where the original files are published (used only for the download source).
DOWNLOAD_URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
IDX_UBYTE = 0x08


class DataError(Exception):
    """A dataset could not be found or one of its files is invalid."""


@dataclasses.dataclass(frozen=True)
class Split:
    """Images as uint8 [N, 28, 28] and integer labels [N], in file order."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    source: str  # where the data came from, for logs and history.json
    train: Split
    test: Split


# ---------------------------------------------------------------------------- IDX files


def _open_idx(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: cannot read IDX file ({e})") from None


def read_idx(path: str | os.PathLike, expected_ndim: int) -> np.ndarray:
    """Reads one IDX file of unsigned bytes (gzip or raw), checking its header and length."""
    path = Path(path)
    data = _open_idx(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if data[2] != IDX_UBYTE or data[3] != expected_ndim:
        raise DataError(
            f"{path}: expected an IDX file of unsigned bytes with {expected_ndim} dimensions, "
            f"found type code 0x{data[2]:02x} with {data[3]} dimensions"
        )
    header = 4 + 4 * expected_ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", expected_ndim, offset=4))
    size = int(np.prod(shape))
    if len(data) - header != size:
        raise DataError(
            f"{path}: header says shape {shape} ({size} bytes) but the file holds "
            f"{len(data) - header} bytes of data (truncated or corrupt)"
        )
    return np.frombuffer(data, np.uint8, size, offset=header).reshape(shape)


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def read_idx_split(directory: Path, split: str) -> Split:
    image_stem, label_stem = IDX_FILES[split]
    image_path, label_path = _find_file(directory, image_stem), _find_file(directory, label_stem)
    for stem, path in ((image_stem, image_path), (label_stem, label_path)):
        if path is None:
            raise DataError(f"{directory}: missing {stem} (or {stem}.gz)")
    images = read_idx(image_path, 3)
    labels = read_idx(label_path, 1)
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{image_path}: images are {images.shape[1:]}, expected {IMAGE_SHAPE}")
    if len(images) != len(labels):
        raise DataError(
            f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels"
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataError(f"{label_path}: label {labels.max()} is outside 0-{NUM_CLASSES - 1}")
    return Split(images, labels.astype(np.int32))


def has_idx_files(directory: Path) -> bool:
    return all(_find_file(directory, stem) is not None for stem in IDX_STEMS)


def read_idx_dataset(name: str, directory: str | os.PathLike) -> Dataset:
    directory = Path(directory)
    return Dataset(
        name, f"IDX files in {directory}", read_idx_split(directory, "train"),
        read_idx_split(directory, "test"),
    )


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes uint8 data as an IDX file (gzipped if the name ends in .gz)."""
    array = np.ascontiguousarray(array, np.uint8)
    header = bytes([0, 0, IDX_UBYTE, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.tobytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload)
    Path(path).write_bytes(payload)


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
    from regjax import tfds_builder

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
    package, then a download prepared into the TFDS data dir.
    """
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"unknown dataset {name!r}{hint}; choose one of {', '.join(DATASETS)}")
    if data_dir is not None:
        directory = Path(data_dir).expanduser()
        if not directory.is_dir():
            raise DataError(f"data directory {directory} does not exist")
        if has_idx_files(directory):
            return read_idx_dataset(name, directory)
        if has_tfds_dataset(name, directory):
            return read_tfds_dataset(name, directory)
        missing = [s for s in IDX_STEMS if _find_file(directory, s) is None]
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
