"""The data sources and the notebook's split semantics."""

import numpy as np
import pytest

from regjax import data


def test_debian_fashion_mnist_is_complete_and_sane(fashion):
    assert fashion.train.images.shape == (60000, 28, 28)
    assert fashion.test.images.shape == (10000, 28, 28)
    assert np.bincount(fashion.train.labels).tolist() == [6000] * 10
    assert fashion.train.images.dtype == np.uint8


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
