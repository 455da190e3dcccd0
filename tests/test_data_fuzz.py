"""Property test: real IDX files, randomly truncated or with random bytes flipped, are either
rejected with a DataError naming the file or (when the damage cannot change the data, e.g. a
flipped gzip timestamp) read back unchanged. Never another exception, never a hang."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regjax import data
from tests.helpers import write_idx_dir

EXAMPLES = 200  # per test; two tests: 400 corrupted files in all


def fuzz(test):
    """EXAMPLES corrupted files; a hang fails after 5 s."""
    return settings(max_examples=EXAMPLES, deadline=5000, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])(
        given(st.data())(test))


class Originals(dict):
    def __repr__(self):  # keeps hypothesis' failure reports short
        return "originals"


@pytest.fixture(scope="module")
def originals(tmp_path_factory, fashion):
    """Small real datasets, gzip-compressed as distributed and raw."""
    train = data.Split(fashion.train.images[:500], fashion.train.labels[:500])
    test = data.Split(fashion.test.images[:100], fashion.test.labels[:100])
    out = Originals()
    for gz in (True, False):
        directory = write_idx_dir(tmp_path_factory.mktemp("gz" if gz else "raw"), train, test, gz)
        files = {p.name: p.read_bytes() for p in sorted(directory.iterdir())}
        out[gz] = (files, data.read_idx_dataset("fashion_mnist", directory))
    return out


def damage(draw, payload: bytes, header_only: bool) -> bytes:
    if draw(st.booleans()):
        return payload[:draw(st.integers(0, len(payload) - 1))]
    damaged = bytearray(payload)
    # An IDX header: magic (2 bytes), type, ndim, then 4 bytes per dimension.
    end = 4 + 4 * payload[3] if header_only else len(payload)
    for position in draw(st.sets(st.integers(0, end - 1), min_size=1, max_size=4)):
        damaged[position] ^= draw(st.integers(1, 255))
    return bytes(damaged)


def load_damaged(directory, files, name, payload):
    for n, content in files.items():
        (directory / n).write_bytes(payload if n == name else content)
    return data.load_dataset("fashion_mnist", directory, download=False)


def same(a: data.Dataset, b: data.Dataset) -> bool:
    return all(np.array_equal(getattr(getattr(a, s), f), getattr(getattr(b, s), f))
               for s in ("train", "test") for f in ("images", "labels"))


@fuzz
def test_damaged_gzip_files_are_rejected_or_read_unchanged(tmp_path, originals, draws):
    files, original = originals[True]
    name = draws.draw(st.sampled_from(sorted(files)))
    payload = damage(draws.draw, files[name], header_only=False)
    try:
        loaded = load_damaged(tmp_path, files, name, payload)
    except data.DataError as e:
        assert name in str(e) and "\n" not in str(e)
    else:  # only damage that gzip's checksum shows to be harmless may pass
        assert same(loaded, original)


@fuzz
def test_truncated_raw_files_and_damaged_headers_are_rejected(tmp_path, originals, draws):
    files, _ = originals[False]
    name = draws.draw(st.sampled_from(sorted(files)))
    payload = damage(draws.draw, files[name], header_only=True)
    with pytest.raises(data.DataError) as error:
        load_damaged(tmp_path, files, name, payload)
    assert name in str(error.value) and "\n" not in str(error.value)
