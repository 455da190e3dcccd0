"""A model state's arrays by their path in the model (("head", "hidden", 0, "kernel"), as
nnx names them): read in a given order, or changed where a function applies."""

from __future__ import annotations

import jax


def path_of(keypath) -> tuple:
    """The nnx path of a leaf of an nnx.State (its key path without the Variable's value)."""
    return tuple(k.key for k in keypath if isinstance(k, jax.tree_util.DictKey))


def arrays_at(state, paths) -> list[jax.Array]:
    """The arrays of `state` at `paths`, in that order."""
    flat = {path_of(k): x for k, x in jax.tree_util.tree_flatten_with_path(state)[0]}
    return [flat[path] for path in paths]


def map_at(state, paths, fn):
    """`state` with fn(array) in place of the arrays at `paths`."""
    paths = set(paths)
    return jax.tree_util.tree_map_with_path(
        lambda k, x: fn(x) if path_of(k) in paths else x, state)
