"""The IDX format: round trips, and damaged or mismatched files rejected with the file named."""

import gzip

import numpy as np
import pytest

from regjax.data import idx
from regjax.data.split import Split
from tests.helpers import write_idx_dir


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), np.uint8)
    path = tmp_path / ("x.idx" + (".gz" if gz else ""))
    idx.write_idx(path, images)
    np.testing.assert_array_equal(idx.read_idx(path, 3), images)


def corrupt(tmp_path, name, payload):
    path = tmp_path / name
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize("payload,message", [
    (b"\x00\x00\x08\x03" + np.array([2, 28, 28], ">u4").tobytes() + bytes(100),
     "truncated or corrupt"),
    (b"\x00\x00\x08\x03" + np.array([2, 28, 28], ">u4").tobytes() + bytes(2 * 784 + 1),
     "truncated or corrupt"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    (b"\x12\x34\x08\x03" + bytes(20), "bad magic number"),
    (b"\x00\x00\x0d\x03" + bytes(20), "type code 0x0d"),
    (b"\x00\x00\x08\x01" + bytes(20), "with 1 dimensions"),
    (b"", "bad magic number"),
    (b"\x1f\x8b\x08\x00garbage", "cannot read IDX file"),
])
def test_corrupt_idx_files_are_rejected_with_the_file_named(tmp_path, payload, message):
    path = corrupt(tmp_path, "train-images-idx3-ubyte", payload)
    with pytest.raises(idx.DataError, match=message) as info:
        idx.read_idx(path, 3)
    assert str(path) in str(info.value)


def test_truncated_gzip_is_rejected(tmp_path, fashion):
    good = gzip.compress(b"\x00\x00\x08\x01" + np.array([100], ">u4").tobytes() + bytes(100))
    path = corrupt(tmp_path, "labels.gz", good[: len(good) // 2])
    with pytest.raises(idx.DataError, match="labels.gz"):
        idx.read_idx(path, 1)


def test_mismatched_counts_and_bad_labels_are_rejected(tmp_path, fashion):
    train = Split(fashion.train.images[:50], fashion.train.labels[:50])
    test = Split(fashion.test.images[:20], fashion.test.labels[:20])
    directory = write_idx_dir(tmp_path / "a", train, test)
    idx.write_idx(directory / "train-labels-idx1-ubyte.gz", train.labels[:49].astype(np.uint8))
    with pytest.raises(idx.DataError, match="50 images but .* 49 labels"):
        idx.read_idx_split(directory, "train")
    labels = train.labels.astype(np.uint8).copy()
    labels[3] = 10
    idx.write_idx(directory / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(idx.DataError, match="label 10 is outside 0-9"):
        idx.read_idx_split(directory, "train")
