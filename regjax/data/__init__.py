"""The data: datasets and where they come from (regjax.data.sources), the notebook's splits
and the data regimes (regjax.data.regimes), the IDX format (regjax.data.idx), the split
type and the data's shape (regjax.data.split) and TFDS preparation
(regjax.data.tfds_builder).

`regjax.data.load_dataset`, `.model_data`, `.Split` and the rest of those modules are
reachable from here; they are imported on first use, so that the command line answers
--help and bad flags without starting JAX.
"""

import importlib

DATASETS = ("mnist", "fashion_mnist")
MODULES = ("sources", "regimes", "split")  # where the names reached from here live


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    for module in MODULES:
        found = importlib.import_module(f"regjax.data.{module}")
        if hasattr(found, name):
            return getattr(found, name)
    raise AttributeError(f"module 'regjax.data' has no attribute {name!r}")
