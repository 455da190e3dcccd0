"""Many models trained at once: K configs that differ in their seed and in the values of
`Knobs` (penalties, dropout rate, label smoothing, learning rate, augmentation ranges) run as
one compiled program: the single-model epoch mapped over a leading model axis, `vmap_width`
models vmapped together and the groups one after another (`lax.map`; on a CPU one model at
a time is fastest, on an accelerator all at once).

Each model keeps its own parameters, optimizer state, batch-norm statistics, shuffling order
and dropout and augmentation keys (all derived from its own seed, exactly as in a single
run), so model k follows the run `fit(configs[k])` would give, up to floating-point
rounding (batched or threaded matrix products may sum in another order). The dataset and
its on-device pipeline are shared. Early stopping is per model: a model that stops is masked
out of the updates (it stops changing) and its history ends at its own epoch, while the
others go on.

With several devices (on a CPU, e.g. `XLA_FLAGS=--xla_force_host_platform_device_count=2`,
which `scripts/compare.py` and `scripts/sweep.py` set to the number of cores), the models are
split between them: the models never exchange data, so each device trains its share alone.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from regjax.config import Config
from regjax.data import Split
from regjax.train import (HISTORY_KEYS, EarlyStopping, Knobs, Trainer, is_finite,
                          record_epoch, summarize_each, summarize_history, to_device)

# Settings the host loop applies per model; they may differ between models too.
HOST_SIDE = ("epochs", "early_stopping", "patience", "min_delta", "restore_best_weights")


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
            if name not in Knobs._fields and name not in HOST_SIDE and \
                    getattr(config, name) != getattr(first, name):
                raise ValueError(f"models trained together must share {name!r}: "
                                 f"{getattr(first, name)!r} vs {getattr(config, name)!r}")
    return dataclasses.replace(first, **{
        name: max(getattr(c, name) for c in configs) for name in Knobs._fields},
        epochs=max(c.epochs for c in configs))


def stacked_knobs(configs: list[Config]) -> Knobs:
    return Knobs(*(jnp.asarray([getattr(c, name) for c in configs],
                               jnp.int32 if name == "seed" else jnp.float32)
                   for name in Knobs._fields))


def _where(mask: jax.Array, new, old):
    """Per model: `new` where mask, else `old` (leading axis = model)."""
    return jax.tree.map(lambda n, o: jnp.where(mask.reshape(-1, *(1,) * (n.ndim - 1)), n, o),
                        new, old)


def _over_models(fn, xs, width: int | None):
    """fn applied to each model's slice of xs (leading axis = model): `width` models
    vmapped together, the groups one after another (lax.map); None: all vmapped at once."""
    if width is None:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=width if width > 1 else None)


def default_vmap_width() -> int | None:
    """How many of a device's models run vmapped together: on a CPU one at a time (measured
    6-14% faster than vmapping them all: one model's weights and Adam state stay in the
    core's cache), elsewhere all at once (None)."""
    return 1 if jax.default_backend() == "cpu" else None


class BatchedTrainer:
    def __init__(self, configs: list[Config], vmap_width: int | None = None):
        """`vmap_width`: how many of a device's models are vmapped together, the groups
        running one after another inside the program (`lax.map`); default:
        default_vmap_width(). A width of at least the models per device is a plain vmap."""
        for config in configs:
            config.validate()
        self.configs = list(configs)
        self.trainer = Trainer(shared_structure(self.configs))
        trainer = self.trainer
        width = default_vmap_width() if vmap_width is None else vmap_width

        def train_epoch(state, images, labels, epoch_index, knobs, active):
            new, metrics = _over_models(
                lambda m: trainer._epoch(m[0], images, labels, epoch_index, m[1]),
                (state, knobs), width)
            return _where(active, new, state), metrics

        def evaluate(params, batch_stats, images, labels, knobs):
            return _over_models(
                lambda m: trainer._evaluate_impl(m[0], m[1], images, labels, m[2]),
                (params, batch_stats, knobs), width)

        devices = jax.local_devices()
        mesh = jax.sharding.Mesh(np.array(devices), ("models",))
        if len(configs) % len(devices):
            mesh = jax.sharding.Mesh(np.array(devices[:1]), ("models",))
        self.per_model = jax.sharding.NamedSharding(mesh, P("models"))
        self.shared = jax.sharding.NamedSharding(mesh, P())
        # shard_map: each device runs the program on its own share of the models,
        # as if alone (left to the partitioner, the per-model random draws were gathered
        # across devices at every step, at half the speed).
        self._train_epoch = jax.jit(jax.shard_map(
            train_epoch, mesh=mesh, in_specs=(P("models"), P(), P(), P(), P("models"),
                                              P("models")),
            out_specs=P("models")), donate_argnums=0)
        self._evaluate = jax.jit(jax.shard_map(
            evaluate, mesh=mesh, in_specs=(P("models"), P("models"), P(), P(), P("models")),
            out_specs=P("models")))
        self.knobs = jax.device_put(stacked_knobs(self.configs), self.per_model)

    def __len__(self) -> int:
        return len(self.configs)

    def init_state(self):
        """Each model initialised from its own seed, exactly as a single run is."""
        states = [Trainer(c).init_state() for c in self.configs]
        return jax.device_put(jax.tree.map(lambda *leaves: jnp.stack(leaves), *states),
                              self.per_model)

    def evaluate(self, params, batch_stats, images, labels) -> list[dict]:
        return summarize_each(self._evaluate(params, batch_stats, images, labels, self.knobs))


def fit_batched(configs: list[Config], train: Split, validation: Split,
                test: Split | None = None, *,
                on_epoch: Callable[[int, int], None] = lambda done, total: None,
                vmap_width: int | None = None) -> tuple[list[dict], float]:
    """Trains every config at once; returns (one history per config, as `fit` writes it,
    wall seconds of training). `on_epoch(epochs done, most epochs)` reports progress."""
    n = len(configs)
    devices = jax.local_device_count()
    if n > 1 and n % devices:  # pad with copies of the last model, to split evenly
        configs = [*configs, *[configs[-1]] * (devices - n % devices)]
    batched = BatchedTrainer(configs, vmap_width)
    k = len(batched)
    x_train, y_train, x_val, y_val = jax.device_put(
        (*to_device(train), *to_device(validation)), batched.shared)
    state = batched.init_state()
    knobs = batched.knobs
    active = np.ones(k, bool)

    def models(mask: np.ndarray) -> jax.Array:
        return jax.device_put(mask, batched.per_model)

    start = time.perf_counter()
    run_epoch = batched._train_epoch.lower(state, x_train, y_train, jnp.int32(0), knobs,
                                           models(active)).compile()
    run_eval = batched._evaluate.lower(state.params, state.batch_stats, x_val, y_val,
                                       knobs).compile()
    compile_seconds = time.perf_counter() - start

    histories = [{key: [] for key in HISTORY_KEYS} for _ in configs]
    stoppers = [EarlyStopping(c.patience, c.min_delta) if c.early_stopping else None
                for c in configs]
    keep_best = np.array([c.early_stopping and c.restore_best_weights for c in configs])
    best = jax.tree.map(jnp.copy, (state.params, state.batch_stats)) if keep_best.any() else None
    status = ["completed"] * k
    diverged_epoch: dict[int, int] = {}
    stopped_early = [False] * k
    total_epochs = max(c.epochs for c in configs)
    steps = batched.trainer.steps_per_epoch(len(train))
    start = time.perf_counter()
    for epoch in range(total_epochs):
        t0 = time.perf_counter()
        state, metrics = run_epoch(state, x_train, y_train, jnp.int32(epoch), knobs,
                                   models(active))
        train_metrics = summarize_each(metrics)
        val = summarize_each(run_eval(state.params, state.batch_stats, x_val, y_val, knobs))
        seconds = time.perf_counter() - t0
        improved = np.zeros(k, bool)
        for i in np.flatnonzero(active):
            if not is_finite(train_metrics[i], val[i]):
                status[i], active[i] = "diverged", False  # its update was masked from here on
                diverged_epoch[i] = epoch + 1
                continue
            record_epoch(histories[i], train_metrics[i], val[i], seconds)
            if stoppers[i] is not None:
                improved[i], stopped_early[i] = stoppers[i].update(epoch, val[i]["loss"])
            if stopped_early[i] or epoch + 1 == configs[i].epochs:
                active[i] = False
        if best is not None and (improved & keep_best).any():
            best = _where(models(improved & keep_best), (state.params, state.batch_stats), best)
        on_epoch(epoch + 1, total_epochs)
        if not active.any():
            break
    wall = time.perf_counter() - start

    params, batch_stats = state.params, state.batch_stats
    if best is not None:  # as Keras 3: the best weights at the end, for models that ask
        params, batch_stats = _where(models(keep_best), best, (params, batch_stats))
    histories, stoppers = histories[:n], stoppers[:n]
    results = [summarize_history(h, status[i], stopped_early[i], stoppers[i],
                                 compile_seconds, steps) for i, h in enumerate(histories)]
    for i, epoch in diverged_epoch.items():
        if i < n:
            results[i]["diverged_epoch"] = epoch
    if test is not None:
        test_data = jax.device_put(to_device(test), batched.shared)
        for result, metrics in zip(results, batched.evaluate(params, batch_stats, *test_data)):
            if result["status"] == "completed":
                result.update(test_loss=metrics["loss"], test_accuracy=metrics["accuracy"])
    return results, wall
