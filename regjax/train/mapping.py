"""What the engine (regjax.train.engine) maps over a leading model axis with: the structure the
models of one program share, per-model selection, the mapping itself (`vmap_width` models
vmapped together, the groups one after another), where each model's data lives, and how
narrow a group must be to fit a device's memory."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from regjax.config import HOST_SIDE, KNOBS, Config


def shared_structure(configs: list[Config]) -> Config:
    """The config whose program all models run: every setting but the knobs and the host-side
    ones must agree; a knob's term exists if any model uses it (a zero value makes it exact
    identity for that model: no penalty, no dropout, unsmoothed targets)."""
    if not configs:
        raise ValueError("no models to train")
    first = configs[0]
    for config in configs[1:]:
        for field in dataclasses.fields(Config):
            name = field.name
            if name not in KNOBS and name not in HOST_SIDE and \
                    getattr(config, name) != getattr(first, name):
                raise ValueError(f"models trained together must share {name!r}: "
                                 f"{getattr(first, name)!r} vs {getattr(config, name)!r}")
    # Validated: knobs that exclude each other (MixUp and CutMix) cannot share a program.
    return dataclasses.replace(first, **{name: max(getattr(c, name) for c in configs)
                                         for name in KNOBS}).validate()


def where(mask, new, old):
    """Per model: `new` where mask, else `old` (leading axis = model)."""
    return jax.tree.map(lambda n, o: jnp.where(mask.reshape(-1, *(1,) * (n.ndim - 1)), n, o),
                        new, old)


def over_models(fn, xs, width: int | None):
    """fn applied to each model's slice of xs (leading axis = model): `width` models
    vmapped together, the groups one after another (lax.map); None: all vmapped at once."""
    if width is None:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=width if width > 1 else None)


# Images are [rows, H, W, C] and labels [rows]; with a leading model axis, each model has its
# own.
DATA_RANKS = (4, 1)


def data_specs(images, labels) -> tuple[P, P]:
    """How the data is split between devices: with the models where each has its own."""
    return tuple(P("models") if a.ndim > rank else P()
                 for a, rank in zip((images, labels), DATA_RANKS))


def per_model_data(data: tuple) -> tuple:
    """The arrays of `data` that hold one entry per model (to map over with the models);
    None in place of a shared one."""
    return tuple(a if a.ndim > rank else None for a, rank in zip(data, DATA_RANKS))


def own_data(shared: tuple, mine: tuple) -> tuple:
    """A model's data: its own arrays where it has them (`mine`), else the shared ones."""
    return tuple(s if m is None else m for s, m in zip(shared, mine))


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays are views of the same memory with the same layout (so, equal)."""
    return a is b or (a.__array_interface__["data"] == b.__array_interface__["data"]
                      and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype)


MEMORY_SHARE = 0.9  # of a device's free memory, what one compiled epoch may use


def on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def narrower(width: int, needed: int, temporaries: int, free: int) -> int:
    """The group width to try after `width` models vmapped together needed `needed` bytes,
    `temporaries` of them the program's working memory (XLA's memory analysis of the
    compiled program; the rest, the models' state and the data, does not depend on the
    width), on a device with `free` bytes: the working memory scaled to what fits beside the
    rest in MEMORY_SHARE of the free memory, and narrower than `width` in any case."""
    room = int(MEMORY_SHARE * free) - (needed - temporaries)
    return max(1, min(width - 1, width * room // max(temporaries, 1)))
