"""IDX reading, the sources, and the notebook's split semantics."""

import gzip

import jax
import numpy as np
import pytest

from regjax import data
from regjax.train import epoch_batches, stable_argsort
from tests.conftest import write_idx_dir


def test_debian_fashion_mnist_is_complete_and_sane(fashion):
    assert fashion.train.images.shape == (60000, 28, 28)
    assert fashion.test.images.shape == (10000, 28, 28)
    assert np.bincount(fashion.train.labels).tolist() == [6000] * 10
    assert fashion.train.images.dtype == np.uint8


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), np.uint8)
    path = tmp_path / ("x.idx" + (".gz" if gz else ""))
    data.write_idx(path, images)
    np.testing.assert_array_equal(data.read_idx(path, 3), images)


def corrupt(tmp_path, name, payload):
    path = tmp_path / name
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize("payload,message", [
    (b"\x00\x00\x08\x03" + np.array([2, 28, 28], ">u4").tobytes() + bytes(100), "truncated or corrupt"),
    (b"\x00\x00\x08\x03" + np.array([2, 28, 28], ">u4").tobytes() + bytes(2 * 784 + 1), "truncated or corrupt"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    (b"\x12\x34\x08\x03" + bytes(20), "bad magic number"),
    (b"\x00\x00\x0d\x03" + bytes(20), "type code 0x0d"),
    (b"\x00\x00\x08\x01" + bytes(20), "with 1 dimensions"),
    (b"", "bad magic number"),
    (b"\x1f\x8b\x08\x00garbage", "cannot read IDX file"),
])
def test_corrupt_idx_files_are_rejected_with_the_file_named(tmp_path, payload, message):
    path = corrupt(tmp_path, "train-images-idx3-ubyte", payload)
    with pytest.raises(data.DataError, match=message) as info:
        data.read_idx(path, 3)
    assert str(path) in str(info.value)


def test_truncated_gzip_is_rejected(tmp_path, fashion):
    good = gzip.compress(b"\x00\x00\x08\x01" + np.array([100], ">u4").tobytes() + bytes(100))
    path = corrupt(tmp_path, "labels.gz", good[: len(good) // 2])
    with pytest.raises(data.DataError, match="labels.gz"):
        data.read_idx(path, 1)


def test_mismatched_counts_and_bad_labels_are_rejected(tmp_path, fashion):
    train = data.Split(fashion.train.images[:50], fashion.train.labels[:50])
    test = data.Split(fashion.test.images[:20], fashion.test.labels[:20])
    directory = write_idx_dir(tmp_path / "a", train, test)
    data.write_idx(directory / "train-labels-idx1-ubyte.gz", train.labels[:49].astype(np.uint8))
    with pytest.raises(data.DataError, match="50 images but .* 49 labels"):
        data.read_idx_dataset("fashion_mnist", directory)
    labels = train.labels.astype(np.uint8).copy()
    labels[3] = 10
    data.write_idx(directory / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(data.DataError, match="label 10 is outside 0-9"):
        data.read_idx_dataset("fashion_mnist", directory)


def test_data_dir_without_files_names_what_is_missing(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(data.DataError, match="missing: train-labels-idx1-ubyte, t10k"):
        data.load_dataset("mnist", tmp_path)
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_dataset("mnist", tmp_path / "nope")
    with pytest.raises(data.DataError, match="unknown dataset 'cifar'"):
        data.load_dataset("cifar")


def test_unavailable_dataset_lists_the_sources_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(data.DataError) as info:
        data.load_dataset("mnist", download=False)
    message = str(info.value)
    assert f"no prepared TFDS dataset in {tmp_path / 'mnist'}" in message
    assert "download disabled" in message and "--data-dir" in message


def test_tfds_preparation_without_tensorflow_round_trips(tmp_path, tiny_idx_dir, monkeypatch):
    """IDX -> array_record TFDS data (no TensorFlow) -> tfds.data_source: same rows, same order."""
    data.prepare_tfds_dataset("fashion_mnist", tmp_path / "tfds", tiny_idx_dir)
    from_idx = data.read_idx_dataset("fashion_mnist", tiny_idx_dir)
    for loaded in (data.load_dataset("fashion_mnist", tmp_path / "tfds"),
                   _load_from_env(monkeypatch, tmp_path / "tfds")):
        assert loaded.source.startswith("TFDS data dir")
        for split in ("train", "test"):
            np.testing.assert_array_equal(getattr(loaded, split).images,
                                          getattr(from_idx, split).images)
            np.testing.assert_array_equal(getattr(loaded, split).labels,
                                          getattr(from_idx, split).labels)


def _load_from_env(monkeypatch, tfds_dir):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    return data.load_dataset("fashion_mnist", download=False)


def test_validation_split_is_the_last_20_percent(fashion):
    train, val = data.validation_split(fashion.train)
    assert len(train) == 48000 and len(val) == 12000
    np.testing.assert_array_equal(val.images, fashion.train.images[48000:])
    np.testing.assert_array_equal(train.labels, fashion.train.labels[:48000])
    full, test = data.train_and_validation(fashion, "test")
    assert len(full) == 60000 and test is fashion.test


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
