"""How much memory and disk a run needs, computed in one place from the shapes of a model's
real training state (weights, batch statistics, Keras' Adam's moments and every update
technique's state, such as the weights' moving average; computed once per structure
without allocating anything), and the refusals when a run would not fit.

- memory per model: its state, its gradients (one more copy of the weights) and, with
  restore_best_weights, the best weights so far;
- disk per run: each checkpoint holds the state and the best weights; `keep` of them plus
  the best one plus one being written, and the final model.
"""

from __future__ import annotations

import functools
import math

import jax

from regjax.config import Config
from regjax.data.split import DataSpec
from regjax.train import devices, step


def nbytes(tree) -> int:
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree))


@functools.lru_cache(maxsize=64)
def _state_shapes(structure: Config, spec: DataSpec, maker) -> tuple[int, int, int]:
    program = step.program_of(structure, spec, maker)
    state, _ = jax.eval_shape(lambda: step.initial_state(program, structure, 0, maker))
    return nbytes(state), nbytes(state.params), nbytes((state.params, state.batch_stats))


def state_bytes(config: Config, spec: DataSpec, maker=None) -> tuple[int, int, int]:
    """(the training state, the weights, the weights and batch statistics) of one model, in
    bytes; models of one structure share one computation."""
    return _state_shapes(config.structure(), spec, maker)


def keeps_best(config: Config) -> bool:
    return bool(config.early_stopping and config.restore_best_weights)


def model_bytes(config: Config, spec: DataSpec, maker=None) -> int:
    """Device memory one model's training holds besides its program's working memory."""
    state, weights, model = state_bytes(config, spec, maker)
    return state + weights + model * keeps_best(config)


def checkpoint_bytes(config: Config, spec: DataSpec, keep: int, maker=None) -> int:
    """Disk a run needs for `keep` checkpoints, the best one, one being written and the
    final model."""
    state, _, model = state_bytes(config, spec, maker)
    return (state + model * keeps_best(config)) * (keep + 2) + model


def check_models_fit(configs: list[Config], spec: DataSpec, maker=None) -> None:
    """Refuses, before anything is allocated, models whose training state would not fit the
    device."""
    needed = sum(model_bytes(c, spec, maker) for c in configs)
    what = "the model" if len(configs) == 1 else f"{len(configs)} models"
    fix = "lower --hidden" if len(configs) == 1 else "train fewer models at once, or lower --hidden"
    devices.check_fits(needed, f"{what} (weights, gradients, Adam's moments)", fix)


def check_compiled_fits(compiled: list) -> None:
    devices.check_fits(max(map(devices.compiled_bytes, compiled)), "one epoch",
                       "lower --batch-size or --hidden")


def check_program_fits(label: str, configs: list[Config], spec: DataSpec, rows: int,
                       maker=None) -> None:
    """Refuses, before anything trains, a program whose models would not fit the device:
    their state and their own rows (their images under a train size, their labels under
    label noise; `rows`: the dataset's training rows), saying how many models would fit."""
    free = devices.free_bytes()
    if free is None or not configs:
        return
    image = math.prod(spec.shape)  # uint8 pixels
    per_model = max(model_bytes(c, spec, maker) + (c.train_size or rows) * (
        image * bool(c.train_size) + bool(c.train_size or c.label_noise)) for c in configs)
    if per_model * len(configs) > free:
        raise devices.OutOfMemory(
            f"the program {label!r} trains {len(configs):,} models, about "
            f"{per_model * len(configs) / 2**30:.1f} GiB, but the device has "
            f"{free / 2**30:.1f} GiB free: about {free // per_model:,} models fit; give "
            "fewer seeds, grid values or regimes")
