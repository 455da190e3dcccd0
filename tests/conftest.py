import jax
import numpy as np
import pytest

from regjax import data

# The tests check the arithmetic in float32. On GPUs JAX's default runs float32 matrix products
# and convolutions in TF32 (10-bit mantissa), far outside these tolerances; CPUs are unaffected.
jax.config.update("jax_default_matmul_precision", "highest")

FASHION_DIR = data.DEBIAN_DIRS["fashion_mnist"]


@pytest.fixture(scope="session")
def fashion():
    """Real Fashion-MNIST from Debian's dataset-fashion-mnist package."""
    if not data.has_idx_files(FASHION_DIR):
        pytest.fail(f"Fashion-MNIST is missing from {FASHION_DIR}: "
                    "apt-get install dataset-fashion-mnist")
    return data.read_idx_dataset("fashion_mnist", FASHION_DIR)


def write_idx_dir(directory, train: data.Split, test: data.Split, gz: bool = True):
    """Writes the four IDX files of a dataset into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, (images_stem, labels_stem) in data.IDX_FILES.items():
        s = train if split == "train" else test
        data.write_idx(directory / (images_stem + suffix), s.images)
        data.write_idx(directory / (labels_stem + suffix), s.labels.astype(np.uint8))
    return directory


@pytest.fixture
def tiny_idx_dir(tmp_path, fashion):
    """A small real dataset on disk: 300 training rows, 100 test rows."""
    return write_idx_dir(tmp_path / "idx", data.Split(fashion.train.images[:300],
                                                      fashion.train.labels[:300]),
                         data.Split(fashion.test.images[:100], fashion.test.labels[:100]))
