"""The data sources and the notebook's split semantics."""

import numpy as np
import pytest
import scipy.stats

from regjax import data
from regjax.presets import preset


def test_debian_fashion_mnist_is_complete_and_sane(fashion):
    assert fashion.train.images.shape == (60000, 28, 28, 1)
    assert fashion.test.images.shape == (10000, 28, 28, 1)
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


def numbered_dataset(n_train: int = 5000, n_test: int = 100) -> data.Dataset:
    """A dataset whose images spell out their row number (in the first two pixels), so that
    the rows a regime picks can be read back; labels are row % 10."""
    def split(n, offset):
        rows = np.arange(offset, offset + n)
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 0, 0], images[:, 0, 1] = rows // 256, rows % 256
        return data.Split(images, (rows % 10).astype(np.int32))
    return data.Dataset("fashion_mnist", "numbered rows", split(n_train, 0), split(n_test, 50000))


def row_numbers(split: data.Split) -> np.ndarray:
    return split.images[:, 0, 0].astype(int) * 256 + split.images[:, 0, 1]


def test_train_size_draws_distinct_rows_per_seed_before_the_validation_split():
    dataset = numbered_dataset()
    subsets = []
    for seed in range(40):
        train, val = data.model_data(preset("baseline", seed=seed, train_size=1000), dataset)
        rows = np.concatenate([row_numbers(train), row_numbers(val)])
        assert (len(train), len(val)) == (800, 200)  # Keras' split of the 1,000 rows
        assert np.all(np.diff(rows) > 0)  # distinct rows in file order: the last 200 validate
        np.testing.assert_array_equal(np.concatenate([train.labels, val.labels]), rows % 10)
        subsets.append(rows)
    assert len({tuple(r) for r in subsets}) == 40  # each seed its own subset
    again, _ = data.model_data(preset("baseline", seed=3, train_size=1000), dataset)
    np.testing.assert_array_equal(row_numbers(again), subsets[3][:800])
    # Uniform without replacement: every row is picked with probability 1000/5000. Over 40
    # seeds a row is picked Binomial(40, 0.2) times; the counts of the 5,000 rows must look
    # like that (a subset biased to the first rows, or drawn with replacement, does not).
    counts = np.bincount(np.concatenate(subsets), minlength=5000)
    assert abs(counts.mean() - 8.0) < 1e-9 and abs(counts.var() - 40 * 0.2 * 0.8) < 0.6
    assert abs(counts[:2500].sum() - counts[2500:].sum()) < 5 * np.sqrt(40 * 1000 / 2)
    _, test_val = data.model_data(preset("label_smoothing", train_size=1000), dataset)
    assert test_val is dataset.test  # validated on the test split: untouched


def test_label_noise_replaces_training_labels_by_other_classes_uniformly():
    dataset = numbered_dataset(n_train=50000)
    clean_train, clean_val = data.model_data(preset("baseline"), dataset)
    p = 0.3
    train, val = data.model_data(preset("baseline", seed=1, label_noise=p), dataset)
    np.testing.assert_array_equal(train.images, clean_train.images)
    np.testing.assert_array_equal(val.labels, clean_val.labels)  # validation stays clean
    flipped = train.labels != clean_train.labels
    n = len(train)
    assert abs(flipped.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    shift = (train.labels[flipped] - clean_train.labels[flipped]) % 10
    assert shift.min() >= 1  # a flipped label is always another class
    _, pvalue = scipy.stats.chisquare(np.bincount(shift, minlength=10)[1:])  # uniform in 1..9
    assert pvalue > 1e-4
    other, _ = data.model_data(preset("baseline", seed=2, label_noise=p), dataset)
    assert np.mean(other.labels != train.labels) > 0.3  # each seed its own noise
    everything, _ = data.model_data(preset("baseline", seed=1, label_noise=1.0), dataset)
    assert np.all(everything.labels != clean_train.labels)
    # Both regimes at once: the noise falls on the subset's training rows only.
    both, both_val = data.model_data(preset("baseline", train_size=1000, label_noise=p), dataset)
    assert 0 < np.mean(both.labels != row_numbers(both) % 10) < 0.5
    np.testing.assert_array_equal(both_val.labels, row_numbers(both_val) % 10)
