"""What a run leaves on disk, written atomically (a temporary file, then a rename), so an
interrupted run never leaves a half-written file: history.json and the trained model.

The model is a plain `.npz` (numpy's standard archive): one array per parameter or
batch-norm statistic, keyed by its path in the model (e.g. `params/head/hidden/0/kernel`),
plus the run's config as JSON, so it can be loaded back without regjax too.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util

from regjax.config import Config
from regjax.models import make_model

CONFIG_KEY = "__config__"


def atomic_write(path: str | os.PathLike, write) -> None:
    """Calls write(file object) on a temporary file beside `path`, then renames it over
    `path`; on any error the temporary file is removed and `path` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    text = json.dumps(obj, indent=2, allow_nan=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def _flat(params: nnx.State, batch_stats: nnx.State) -> dict[tuple, np.ndarray]:
    tree = {"params": nnx.to_pure_dict(params), "batch_stats": nnx.to_pure_dict(batch_stats)}
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def _name(path: tuple) -> str:
    return "/".join(map(str, path))


def save_model(path: str | os.PathLike, config: Config, params: nnx.State,
               batch_stats: nnx.State) -> None:
    arrays = {_name(k): v for k, v in _flat(params, batch_stats).items()}
    arrays[CONFIG_KEY] = np.asarray(json.dumps(config.to_dict()))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_model(path: str | os.PathLike):
    """Returns (config, model) for a file written by save_model."""
    with np.load(path, allow_pickle=False) as archive:
        stored = {k: archive[k] for k in archive.files}
    if CONFIG_KEY not in stored:
        raise ValueError(f"{path}: not a regjax model file (no config inside)")
    config = Config.from_dict(json.loads(str(stored.pop(CONFIG_KEY))))
    model = make_model(config)
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    expected = _flat(params, batch_stats)
    if {_name(k) for k in expected} != set(stored) or any(
            v.shape != stored[_name(k)].shape for k, v in expected.items()):
        raise ValueError(f"{path}: its arrays do not match the model its config describes")
    tree = traverse_util.unflatten_dict({k: jnp.asarray(stored[_name(k)]) for k in expected})
    nnx.replace_by_pure_dict(params, tree["params"])
    nnx.replace_by_pure_dict(batch_stats, tree.get("batch_stats", {}))  # none without BN
    return config, nnx.merge(graphdef, params, batch_stats)
