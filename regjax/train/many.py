"""The engine of regjax.train.loop for K models (`ManyModels`): regjax.train.step's epoch and
evaluation mapped over a leading model axis, `vmap_width` models vmapped together and the
groups one after another (`lax.map`), each device running its share of the models
(shard_map), and what the models of one program must share (`shared_structure`). The
function that trains them, `fit_batched`, is regjax.train.batched's.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec as P

from regjax.config import HOST_SIDE, KNOBS, Config
from regjax.data.split import Split
from regjax.nn.models import make_model
from regjax.nn.optim import adam_init
from regjax.train import devices, step
from regjax.train.loop import check_compiled_fits, check_models_fit


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


# Images are [rows, 28, 28] and labels [rows]; with a leading model axis, each model has its own.
DATA_RANKS = (3, 1)


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


class ManyModels:
    """The engine of regjax.train.loop.train_loop for K models: the epoch and the evaluation mapped
    over the model axis, each device running its share (shard_map). `vmap_width`: how many
    of a device's models run vmapped together. By default, on a CPU one at a time (one
    model's weights and Adam state stay in the core's cache; benchmarks/batched_throughput.py
    compares); elsewhere all of them, in narrower groups where XLA's memory analysis of the
    compiled program says that does not fit (compile)."""

    def __init__(self, configs: list[Config], vmap_width: int | None = None):
        for config in configs:
            config.validate()
        self.configs = list(configs)
        structure = shared_structure(self.configs)
        check_models_fit([structure] * len(configs))
        self.program = step.program_of(structure)  # each model's weights: init_state
        local = jax.local_devices()
        if len(configs) % len(local):
            local = local[:1]
        self.mesh = jax.sharding.Mesh(np.array(local), ("models",))
        self.per_device = len(configs) // len(local)
        self.per_model = jax.sharding.NamedSharding(self.mesh, P("models"))
        self.shared = jax.sharding.NamedSharding(self.mesh, P())
        self.knobs = jax.device_put(step.Knobs.of(self.configs), self.per_model)
        self.fixed_width = vmap_width is not None or on_cpu()
        self.tried: list[tuple[int, int]] = []  # (width, bytes needed) of each compilation
        self._build(vmap_width or (1 if on_cpu() else self.per_device))

    def _build(self, width: int) -> None:
        """The jitted epoch and evaluation, `width` of a device's models vmapped together."""
        self.width, program = width, self.program
        vmapped = None if width >= self.per_device > 1 else width  # None: vmap all

        def train_epoch(state, images, labels, epoch, knobs, active):
            def one(m):  # a model that has stopped is skipped (lax.map runs the cond for
                # real; vmapped, it becomes a select and the masking below decides)
                model_state, model_knobs, on, data = m
                x, y = own_data((images, labels), data)
                run = lambda: step.train_epoch(program, model_state, x, y,  # noqa: E731
                                               epoch, model_knobs)
                idle = jax.tree.map(jnp.zeros_like, jax.eval_shape(run))
                return jax.lax.cond(on, run, lambda: (model_state, idle[1]))

            new, metrics = over_models(one, (state, knobs, active,
                                             per_model_data((images, labels))), vmapped)
            return where(active, new, state), metrics

        def evaluate(params, batch_stats, images, labels, knobs):
            def one(m):
                model_params, model_stats, model_knobs, data = m
                return step.evaluate(program, model_params, model_stats,
                                     *own_data((images, labels), data), model_knobs)

            return over_models(one, (params, batch_stats, knobs,
                                     per_model_data((images, labels))), vmapped)

        # shard_map: each device runs the program on its own share of the models, as if
        # alone (left to the partitioner, per-model random draws were gathered across
        # devices at every step). No collective is used, so the check of which values vary
        # across devices is off: it rejects the per-model cond that skips stopped models.
        # The data is shared, or split with the models where each has its own (data_specs).
        def sharded_epoch(state, images, labels, epoch, knobs, active):
            return jax.shard_map(
                train_epoch, mesh=self.mesh, in_specs=(
                    P("models"), *data_specs(images, labels), P(), P("models"), P("models")),
                out_specs=P("models"), check_vma=False)(state, images, labels, epoch, knobs,
                                                        active)

        def sharded_evaluate(params, batch_stats, images, labels, knobs):
            return jax.shard_map(
                evaluate, mesh=self.mesh, in_specs=(
                    P("models"), P("models"), *data_specs(images, labels), P("models")),
                out_specs=P("models"))(params, batch_stats, images, labels, knobs)

        self._train_epoch = jax.jit(sharded_epoch, donate_argnums=0)
        self._evaluate = jax.jit(sharded_evaluate)
        self._predict = jax.jit(jax.shard_map(
            lambda params, batch_stats, images: over_models(
                lambda m: step.predict(program, *m, images), (params, batch_stats), vmapped),
            mesh=self.mesh, in_specs=(P("models"), P("models"), P()), out_specs=P("models")))

    def init_state(self) -> step.TrainState:
        """Each model initialised from its own seed, bit for bit as a single run is: the
        single run's initialiser vmapped over the seeds (a model's weights depend on its
        seed and the shared structure alone), run op by op as a single run's is."""
        def init(seed):
            _, params, batch_stats = nnx.split(make_model(self.program.config, seed),
                                               nnx.Param, nnx.BatchStat)
            return step.TrainState(params, batch_stats,
                                   adam_init(params, ema=bool(self.program.config.ema)))

        seeds = np.array([c.seed for c in self.configs], np.int32)
        return jax.device_put(jax.vmap(init)(seeds), self.per_model)

    def put(self, split: Split | list[Split]):
        """The images and the labels on the devices: one copy shared by every model, or,
        where the models' splits differ (a data regime: their own rows or labels), one per
        model stacked along a leading model axis."""
        splits = split if isinstance(split, list) else [split]

        def put(arrays: list[np.ndarray]):
            if all(same_array(a, arrays[0]) for a in arrays[1:]):
                return jax.device_put(jnp.asarray(arrays[0]), self.shared)
            return jax.device_put(np.stack(arrays), self.per_model)

        return put([s.images for s in splits]), put([s.labels for s in splits])

    def _models(self, mask: np.ndarray) -> jax.Array:
        return jax.device_put(np.asarray(mask), self.per_model)

    def compile(self, state, train, validation) -> None:
        """Compiles the epoch and the evaluation. Unless the group width is fixed, narrower
        groups while XLA's memory analysis says the device cannot hold them (down to one
        model at a time, which the memory check then judges)."""
        active = self._models(np.ones(len(self.configs), bool))
        while True:
            self._epoch = self._train_epoch.lower(state, *train, jnp.int32(0), self.knobs,
                                                  active).compile()
            self._validate = self._evaluate.lower(state.params, state.batch_stats,
                                                  *validation, self.knobs).compile()
            needed, temporaries = max((devices.compiled_bytes(c),
                                       c.memory_analysis().temp_size_in_bytes)
                                      for c in (self._epoch, self._validate))
            self.tried.append((self.width, needed))
            free = devices.free_bytes()
            if self.fixed_width or self.width == 1 or free is None or \
                    needed <= MEMORY_SHARE * free:
                break
            self._build(narrower(self.width, needed, temporaries, free))
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

    def predict(self, params, batch_stats, images) -> np.ndarray:
        """Each model's class probabilities for shared images: [models, rows, 10]."""
        return np.asarray(self._predict(params, batch_stats, images))
