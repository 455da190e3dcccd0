"""The data: MNIST-style datasets and where they come from (regjax.data.sources), the IDX
format (regjax.data.idx), the split type (regjax.data.split) and TFDS preparation
(regjax.data.tfds_builder).

`regjax.data.load_dataset`, `.model_data` and the rest of regjax.data.sources are reachable
from here; they are imported on first use, so that the command line answers --help and bad
flags without starting JAX.
"""

import importlib

DATASETS = ("mnist", "fashion_mnist")


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module("regjax.data.sources"), name)
