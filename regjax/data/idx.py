"""The IDX file format of MNIST-style datasets: the four standard files, read with numpy and
validated (magic number, type, dimensions, length, labels), and written back.

A damaged or mismatched file raises DataError naming the file."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from regjax.data.split import Split

# The four standard files of an MNIST-style dataset (each may also be gzipped).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_STEMS = tuple(stem for stems in IDX_FILES.values() for stem in stems)
IDX_UBYTE = 0x08
MNIST_CLASSES = 10  # the IDX datasets regjax reads: MNIST and Fashion-MNIST, grayscale


class DataError(Exception):
    """A dataset could not be found or one of its files is invalid."""


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


def find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def read_idx_split(directory: Path, split: str) -> Split:
    image_stem, label_stem = IDX_FILES[split]
    image_path, label_path = find_file(directory, image_stem), find_file(directory, label_stem)
    for stem, path in ((image_stem, image_path), (label_stem, label_path)):
        if path is None:
            raise DataError(f"{directory}: missing {stem} (or {stem}.gz)")
    images = read_idx(image_path, 3)
    labels = read_idx(label_path, 1)
    if len(images) != len(labels):
        raise DataError(
            f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels"
        )
    if not len(images):
        raise DataError(f"{image_path}: holds no images (0 rows)")
    if labels.size and labels.max() >= MNIST_CLASSES:
        raise DataError(f"{label_path}: label {labels.max()} is outside 0-{MNIST_CLASSES - 1}")
    return Split(images[..., None], labels.astype(np.int32), MNIST_CLASSES)


def has_idx_files(directory: Path) -> bool:
    return all(find_file(directory, stem) is not None for stem in IDX_STEMS)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes uint8 data as an IDX file (gzipped if the name ends in .gz); one-channel images
    [N, H, W, 1] as [N, H, W]."""
    array = np.ascontiguousarray(array, np.uint8)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    header = bytes([0, 0, IDX_UBYTE, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.tobytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload)
    Path(path).write_bytes(payload)
