import os
import tempfile

# Set before JAX starts; the scripts the tests run as subprocesses inherit them.
# The suite runs in two worker processes (pyproject.toml); on a GPU neither may take most of
# its memory up front, as JAX does by default.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# JAX's persistent compilation cache, for every program however small: the many short
# train.py runs of the suite compile the same programs (a run's start is mostly compilation),
# and a cached executable is the same executable, so results do not change.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "regjax-tests-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# Keras is the tests' oracle (tests/keras_oracle.py), on its JAX backend: no TensorFlow.
os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import pytest  # noqa: E402

from regjax import data  # noqa: E402
from regjax.data import idx
from regjax.data.split import Split
from tests.helpers import FASHION_DIR, write_idx_dir  # noqa: E402

# The tests check the arithmetic in float32. On GPUs JAX's default runs float32 matrix products
# and convolutions in TF32 (10-bit mantissa), far outside these tolerances; CPUs are unaffected.
# Through the environment too, for the scripts the tests run (train.py's model against Keras).
os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def fashion():
    """Real Fashion-MNIST from Debian's dataset-fashion-mnist package."""
    if not idx.has_idx_files(FASHION_DIR):
        pytest.fail(f"Fashion-MNIST is missing from {FASHION_DIR}: "
                    "apt-get install dataset-fashion-mnist")
    return data.read_idx_dataset("fashion_mnist", FASHION_DIR)


@pytest.fixture(scope="session")
def small(fashion):
    """Real rows for quick trainings: 1,500 training, 500 validation (the last rows of the
    training file, as Keras' split takes them) and 500 test rows."""
    train, test = fashion.train, fashion.test
    return (Split(train.images[:1500], train.labels[:1500]),
            Split(train.images[-500:], train.labels[-500:]),
            Split(test.images[:500], test.labels[:500]))


@pytest.fixture
def tiny_idx_dir(tmp_path, fashion):
    """A small real dataset on disk: 300 training rows, 100 test rows."""
    return write_idx_dir(tmp_path / "idx", Split(fashion.train.images[:300],
                                                     fashion.train.labels[:300]),
                         Split(fashion.test.images[:100], fashion.test.labels[:100]))
