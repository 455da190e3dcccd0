"""Many models trained at once: K configs that differ in their seed, in the values of the
knobs (config.KNOBS: penalties, dropout rate, label smoothing, learning rate, augmentation
ranges) and in the host-side settings (epochs, early stopping) run as one compiled program:
regjax.step's epoch mapped over a leading model axis, `vmap_width` models vmapped together
and the groups one after another (`lax.map`). On a CPU one model at a time is fastest; on
an accelerator as many as fit its memory (group_width, from XLA's memory analysis of one
model: thousands of MLPs on one GPU). The host loop is regjax.training's.

Each model keeps its own parameters, optimizer state, batch-norm statistics and key tree
(from its own seed, exactly as in a single run), so model k follows the run
`fit(configs[k])` would give, up to floating-point rounding (the batched program may sum
products in another order). Early stopping is per model: a model that stops is masked out
of the updates (on a CPU, where a device's models run one after another, it is skipped
and costs nothing) and its history ends at its own epoch, while the others go on.

With several devices (`regjax.devices.use_cpu_devices` on a CPU, which scripts/compare.py
and scripts/sweep.py call), the models are split between them: they never exchange data,
so each device trains its share alone.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec as P

from regjax import devices, step
from regjax.checkpoint import Checkpoints
from regjax.config import HOST_SIDE, IMAGE_SHAPE, KNOBS, Config
from regjax.models import make_model, weights_bytes
from regjax.optim import adam_init
from regjax.training import check_compiled_fits, check_models_fit, train_loop
from regjax.idx import Split


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
    return dataclasses.replace(first, **{name: max(getattr(c, name) for c in configs)
                                         for name in KNOBS})


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


MEMORY_SHARE = 0.5  # of a device's free memory, what a group of vmapped models may use


@functools.lru_cache(maxsize=64)
def model_bytes(config: Config, train_rows: int) -> tuple[int, int]:
    """Device memory of one model of a batched run: (kept, working). Kept for the whole run:
    its weights seven times (parameters and Adam's two moments twice, as an epoch reads one
    copy and writes the next; the best weights). Working, while its group computes: the larger of the temporaries
    of its training epoch over `train_rows` rows and of one evaluation chunk, as XLA's
    memory analysis gives them for the model compiled alone (shapes only: nothing is
    allocated or run)."""
    graphdef, params, batch_stats = nnx.split(nnx.eval_shape(lambda: make_model(config)),
                                              nnx.Param, nnx.BatchStat)
    program = step.Program(config, graphdef)
    state = step.TrainState(params, batch_stats, jax.eval_shape(adam_init, params))
    knobs = step.Knobs.of(config)

    def data(rows: int):
        return (jax.ShapeDtypeStruct((rows, *IMAGE_SHAPE), jnp.uint8),
                jax.ShapeDtypeStruct((rows,), jnp.int32))

    epoch = jax.jit(step.train_epoch, static_argnums=0).lower(
        program, state, *data(train_rows), 0, knobs)
    evaluation = jax.jit(step.evaluate, static_argnums=0).lower(
        program, params, batch_stats, *data(step.EVAL_CHUNK), knobs)
    working = max(c.compile().memory_analysis().temp_size_in_bytes
                  for c in (epoch, evaluation))
    return 7 * weights_bytes(config), working


def estimated_bytes(config: Config, train_rows: int, models: int, width: int) -> int:
    """A device's memory for `models` models vmapped `width` at a time (data excluded)."""
    kept, working = model_bytes(config, train_rows)
    return models * kept + min(width, models) * working


def group_width(config: Config, train_rows: int, models: int, backend: str,
                free: int | None) -> int | None:
    """How many of a device's `models` run vmapped together (None: all at once). On a CPU
    one at a time: one model's weights and Adam state stay in the core's cache
    (benchmarks/batched_throughput.py compares). Elsewhere as many as fit in MEMORY_SHARE of
    the device's `free` bytes beside every model's kept state (estimated_bytes); the groups
    run one after another."""
    if backend == "cpu":
        return 1
    if free is None:
        return None
    kept, working = model_bytes(config, train_rows)
    width = max(1, (int(MEMORY_SHARE * free) - models * kept) // working)
    return None if width >= models else width


class ManyModels:
    """The engine of regjax.training.train_loop for K models: the epoch and the evaluation mapped
    over the model axis, each device running its share (shard_map)."""

    def __init__(self, configs: list[Config], train_rows: int, vmap_width: int | None = None):
        for config in configs:
            config.validate()
        self.configs = list(configs)
        structure = shared_structure(self.configs)
        check_models_fit([structure] * len(configs))
        self.program = step.program_of(structure)  # each model's weights: init_state
        per_device = len(configs) // min(len(configs), jax.local_device_count())
        width = self.width = vmap_width if vmap_width is not None else group_width(
            structure, train_rows, per_device, jax.default_backend(), devices.free_bytes())
        program = self.program

        def train_epoch(state, images, labels, epoch, knobs, active):
            def one(m):  # a model that has stopped is skipped (lax.map runs the cond for
                # real; vmapped, it becomes a select and the masking below decides)
                model_state, model_knobs, on = m
                run = lambda: step.train_epoch(program, model_state, images, labels,  # noqa: E731
                                               epoch, model_knobs)
                idle = jax.tree.map(jnp.zeros_like, jax.eval_shape(run))
                return jax.lax.cond(on, run, lambda: (model_state, idle[1]))

            new, metrics = over_models(one, (state, knobs, active), width)
            return where(active, new, state), metrics

        def evaluate(params, batch_stats, images, labels, knobs):
            return over_models(
                lambda m: step.evaluate(program, m[0], m[1], images, labels, m[2]),
                (params, batch_stats, knobs), width)

        local = jax.local_devices()
        if len(configs) % len(local):
            local = local[:1]
        mesh = jax.sharding.Mesh(np.array(local), ("models",))
        self.per_model = jax.sharding.NamedSharding(mesh, P("models"))
        self.shared = jax.sharding.NamedSharding(mesh, P())
        # shard_map: each device runs the program on its own share of the models, as if
        # alone (left to the partitioner, per-model random draws were gathered across
        # devices at every step). No collective is used, so the check of which values vary
        # across devices is off: it rejects the per-model cond that skips stopped models.
        self._train_epoch = jax.jit(jax.shard_map(
            train_epoch, mesh=mesh, in_specs=(P("models"), P(), P(), P(), P("models"),
                                              P("models")),
            out_specs=P("models"), check_vma=False), donate_argnums=0)
        self._evaluate = jax.jit(jax.shard_map(
            evaluate, mesh=mesh, in_specs=(P("models"), P("models"), P(), P(), P("models")),
            out_specs=P("models")))
        self.knobs = jax.device_put(step.Knobs.of(self.configs), self.per_model)

    def init_state(self) -> step.TrainState:
        """Each model initialised from its own seed, bit for bit as a single run is: the
        single run's initialiser vmapped over the seeds (a model's weights depend on its
        seed and the shared structure alone), run op by op as a single run's is."""
        def init(seed):
            _, params, batch_stats = nnx.split(make_model(self.program.config, seed),
                                               nnx.Param, nnx.BatchStat)
            return step.TrainState(params, batch_stats, adam_init(params))

        seeds = np.array([c.seed for c in self.configs], np.int32)
        return jax.device_put(jax.vmap(init)(seeds), self.per_model)

    def put(self, split: Split):
        return jax.device_put((jnp.asarray(split.images), jnp.asarray(split.labels)),
                              self.shared)

    def _models(self, mask: np.ndarray) -> jax.Array:
        return jax.device_put(np.asarray(mask), self.per_model)

    def compile(self, state, train, validation) -> None:
        active = self._models(np.ones(len(self.configs), bool))
        self._epoch = self._train_epoch.lower(state, *train, jnp.int32(0), self.knobs,
                                              active).compile()
        self._validate = self._evaluate.lower(state.params, state.batch_stats, *validation,
                                              self.knobs).compile()
        check_compiled_fits([self._epoch, self._validate])

    def epoch(self, state, train, epoch, active):
        state, metrics = self._epoch(state, *train, jnp.int32(epoch), self.knobs,
                                     self._models(active))
        return state, step.per_model(metrics)

    def validate(self, state, validation):
        return step.per_model(self._validate(state.params, state.batch_stats, *validation,
                                             self.knobs))

    def evaluate(self, params, batch_stats, data):
        return step.per_model(self._evaluate(params, batch_stats, *data, self.knobs))

    def select(self, mask, new, old):
        return where(self._models(mask), new, old)


def fit_batched(configs: list[Config], train: Split, validation: Split,
                test: Split | None = None, *,
                on_epoch: Callable[[int, int], None] = lambda done, total: None,
                vmap_width: int | None = None, checkpoints: Checkpoints | None = None,
                resume: bool = False,
                should_stop: Callable[[], bool] = lambda: False) -> list[dict]:
    """Trains every config at once; returns one history per config, as `fit` writes it.
    `on_epoch(epochs done, most epochs)` reports progress. With `checkpoints`, every model's
    state is checkpointed after every epoch; with `resume`, training continues from the
    newest intact checkpoint and ends exactly as an uninterrupted run; `should_stop()` true
    before an epoch ends the run as "interrupted", as in `fit`. `vmap_width`: how many of a
    device's models run vmapped together (default: group_width's choice)."""
    n = len(configs)
    count = jax.local_device_count()
    if n > 1 and n % count:  # pad with copies of the last model, to split evenly
        configs = [*configs, *[configs[-1]] * (count - n % count)]
    engine = ManyModels(configs, len(train), vmap_width)
    total = max(c.epochs for c in configs)
    done = iter(range(1, total + 1))
    records, _ = train_loop(engine, train, validation, test, log=lambda _: None,
                            checkpoints=checkpoints, resume=resume, should_stop=should_stop,
                            on_epoch=lambda records: on_epoch(next(done, total), total))
    return [r.summary() for r in records[:n]]
