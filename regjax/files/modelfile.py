"""The trained model's file: a plain `.npz` (numpy's standard archive), one array per
parameter or batch-norm statistic, keyed by its path in the model (e.g.
`params/head/hidden/0/kernel`), plus the run's config and the data's shape as JSON, so it can
be loaded back without regjax too. Written atomically."""

from __future__ import annotations

import json
import os
import zipfile

import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util

from regjax.config import Config, Knobs
from regjax.data.split import DataSpec
from regjax.files.atomic import atomic_write
from regjax.models import TrainedModel, make_model
from regjax.nn import layers

CONFIG_KEY = "__config__"
SPEC_KEY = "__data__"  # the data the model was built for: {"shape": [H, W, C], "classes": K}


def _flat(params: nnx.State, batch_stats: nnx.State) -> dict[tuple, np.ndarray]:
    tree = {"params": nnx.to_pure_dict(params), "batch_stats": nnx.to_pure_dict(batch_stats)}
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def _name(path: tuple) -> str:
    return "/".join(map(str, path))


def named_arrays(params: nnx.State, batch_stats: nnx.State) -> dict[str, np.ndarray]:
    """A model's arrays under the names model.npz gives them: "params/head/hidden/0/kernel",
    "batch_stats/head/norms/0/mean", ..."""
    return {_name(k): v for k, v in _flat(params, batch_stats).items()}


def save_model(path: str | os.PathLike, model: TrainedModel) -> None:
    """Writes `model` (a TrainedModel) to the file `path` (model.npz), atomically."""
    if not isinstance(model, TrainedModel):
        order = " (the path comes first: save_model(path, model))" \
            if isinstance(path, TrainedModel) else ""
        raise TypeError(f"model must be a regjax.TrainedModel, got {type(model).__name__}"
                        f"{order}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory: give the file to write, e.g. "
                         f"{os.path.join(path, 'model.npz')}")
    _, params, batch_stats, _ = nnx.split(model.module, nnx.Param, nnx.BatchStat, ...)
    arrays = named_arrays(params, batch_stats)
    arrays[CONFIG_KEY] = np.asarray(json.dumps(model.config.to_dict()))
    arrays[SPEC_KEY] = np.asarray(json.dumps(model.spec._asdict()))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_model(path: str | os.PathLike, model=None) -> TrainedModel:
    """The model a run saved (its config, weights and data shape), from a file written by
    save_model (`model`: the function that builds a user's model, for a config whose model
    is "custom"); raises ValueError naming the file if it is not one (truncated, another
    format, a config regjax cannot use, arrays that do not fit that config)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored = {k: archive[k] for k in archive.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a model file written by regjax (a .npz archive; "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                         ) from None
    if not isinstance(stored, dict) or CONFIG_KEY not in stored or SPEC_KEY not in stored:
        raise ValueError(f"{path}: not a regjax model file (no config and data shape inside)")
    try:
        config = Config.from_dict(json.loads(str(stored.pop(CONFIG_KEY)))).validate()
        spec = json.loads(str(stored.pop(SPEC_KEY)))
        spec = DataSpec(tuple(spec["shape"]), int(spec["classes"]))
        module = make_model(config, spec, maker=model)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: its config cannot be used ({type(e).__name__}: {e})") from None
    graphdef, params, batch_stats, rest = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
    expected = _flat(params, batch_stats)
    if {_name(k) for k in expected} != set(stored) or any(
            (v.shape, v.dtype) != (stored[_name(k)].shape, stored[_name(k)].dtype)
            for k, v in expected.items()):
        raise ValueError(f"{path}: its arrays (names, shapes or dtypes) do not match the model "
                         "its config describes")
    tree = traverse_util.unflatten_dict({k: jnp.asarray(stored[_name(k)]) for k in expected})
    nnx.replace_by_pure_dict(params, tree["params"])
    nnx.replace_by_pure_dict(batch_stats, tree.get("batch_stats", {}))  # none without BN
    module = nnx.merge(graphdef, params, batch_stats, rest)
    layers.prepare(module, train=False, knobs=Knobs.of(config))
    return TrainedModel(config, module, spec)
