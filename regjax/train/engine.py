"""The engine of regjax.train.loop: K models of one program (K = 1 for a single run) trained
as one compiled program, regjax.train.step's epoch and evaluation mapped over a leading
model axis (regjax.train.mapping), each device running its share of the models
(shard_map); or one model whose batches are split between devices (data parallelism).

Each model keeps its own parameters, optimizer state, batch-norm statistics and key tree
(from its own seed, exactly as alone), so a model trains as it would alone: a single run is
this same program for one model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from regjax import models, techniques
from regjax.config import CUSTOM, Config, Knobs
from regjax.data.split import DataSpec, Split
from regjax.nn import layers
from regjax.train import budget, devices, mapping, step


class Engine:
    """The compiled program for `configs` on data of `spec` (`maker`: a user's model, for
    config.model "custom"), as regjax.train.loop drives it. `vmap_width`: how many of a
    device's models run vmapped together; by default, on a CPU one at a time (one model's
    weights and Adam state stay in the core's cache; benchmarks/batched_throughput.py
    compares), elsewhere all of them, in narrower groups where XLA's memory analysis of the
    compiled program says that does not fit (compile). `data_parallel` > 1 (one model
    only): each batch split between that many devices, the arithmetic that of the whole
    batch."""

    def __init__(self, configs: list[Config], spec: DataSpec, *, maker=None,
                 vmap_width: int | None = None, data_parallel: int = 1):
        for config in configs:
            config.validate()
        self.configs = list(configs)
        self.maker = maker
        self.program = checked_program(self.configs, spec, maker)
        structure = self.program.config
        budget.check_models_fit(self.configs, spec, maker)
        if data_parallel > 1:
            self.mesh, devices_here = None, data_devices(structure, data_parallel)
            data_mesh = jax.sharding.Mesh(np.array(devices_here), ("data",))
            self.program = dataclasses.replace(
                self.program, batch_sharding=NamedSharding(data_mesh, P("data")))
            self.per_model = self.shared = NamedSharding(data_mesh, P())
            self.per_device = 1
        else:
            local = jax.local_devices()
            if len(configs) % len(local):
                local = local[:1]
            self.mesh = jax.sharding.Mesh(np.array(local), ("models",))
            self.per_device = len(configs) // len(local)
            self.per_model = NamedSharding(self.mesh, P("models"))
            self.shared = NamedSharding(self.mesh, P())
        self.knobs = jax.device_put(Knobs.of(self.configs), self.per_model)
        self.fixed_width = vmap_width is not None or mapping.on_cpu()
        self.tried: list[tuple[int, int]] = []  # (width, bytes needed) of each compilation
        self._build(vmap_width or (1 if mapping.on_cpu() else self.per_device))

    def _build(self, width: int) -> None:
        """The jitted epoch and evaluation, `width` of a device's models vmapped together."""
        self.width, program = width, self.program
        vmapped = None if width >= self.per_device > 1 else width  # None: vmap all

        alone = len(self.configs) == 1  # the one model trains whenever an epoch runs

        def train_epoch(state, rest, images, labels, epoch, knobs, active):
            def one(m):  # a model that has stopped keeps its state: lax.map runs the cond
                # for real (skipping it); vmapped, the cond becomes a select
                model_state, model_rest, model_knobs, on, data = m
                x, y = mapping.own_data((images, labels), data)
                run = lambda: step.train_epoch(program, model_state, model_rest,  # noqa: E731
                                               x, y, epoch, model_knobs)
                if alone:  # no cond: one that keeps the old state costs a copy of it, and
                    return run()  # the epoch 5-10% of a small MLP's time (measured)
                idle = jax.tree.map(jnp.zeros_like, jax.eval_shape(run))
                return jax.lax.cond(on, run, lambda: (model_state, idle[1]))

            return mapping.over_models(one, (state, rest, knobs, active,
                                             mapping.per_model_data((images, labels))),
                                       vmapped)

        def evaluate(params, batch_stats, rest, images, labels, knobs):
            def one(m):
                model_params, model_stats, model_rest, model_knobs, data = m
                return step.evaluate(program, model_params, model_stats, model_rest,
                                     *mapping.own_data((images, labels), data), model_knobs)

            return mapping.over_models(one, (params, batch_stats, rest, knobs,
                                             mapping.per_model_data((images, labels))),
                                       vmapped)

        def predict(params, batch_stats, rest, images, knobs):
            def one(m):
                model_params, model_stats, model_rest, model_knobs = m
                return step.predict(program, model_params, model_stats, model_rest, images,
                                    model_knobs)

            return mapping.over_models(one, (params, batch_stats, rest, knobs), vmapped)

        models_ = P("models")
        self._train_epoch = jax.jit(self.sharded(
            train_epoch, lambda state, rest, images, labels, *_: (
                models_, models_, *mapping.data_specs(images, labels), P(), models_, models_),
            check_vma=False), donate_argnums=0)
        self._evaluate = jax.jit(self.sharded(
            evaluate, lambda params, stats, rest, images, labels, knobs: (
                models_, models_, models_, *mapping.data_specs(images, labels), models_)))
        self._predict = jax.jit(self.sharded(
            predict, lambda *_: (models_, models_, models_, P(), models_)))

    def sharded(self, fn, in_specs, check_vma: bool = True):
        """`fn` run by each device on its own share of the models, as if alone (shard_map;
        left to the partitioner, per-model random draws were gathered across devices at
        every step); `in_specs(*args)`: how each argument is split, the data shared or
        split with the models where each has its own (mapping.data_specs). No collective
        is used; the training epoch turns off the check of which values vary across
        devices, which rejects its per-model cond that skips stopped models. With data
        parallelism, `fn` itself: the partitioner splits each batch."""
        if self.mesh is None:
            return fn
        return lambda *args: jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs(*args),
                                           out_specs=P("models"), check_vma=check_vma)(*args)

    def init_state(self) -> step.TrainState:
        """Each model initialised from its own seed (its weights depend on its seed and the
        shared structure alone): the initialiser vmapped over the seeds, run op by op. The
        models' other variables (their layers' slots, a user model's rng streams) are kept
        beside it, as `rest`."""
        def init(seed):
            return step.initial_state(self.program, self.program.config, seed, self.maker)

        seeds = np.array([c.seed for c in self.configs], np.int32)
        state, rest = jax.vmap(init)(seeds)
        self.rest = jax.device_put(rest, self.per_model)
        return jax.device_put(state, self.per_model)

    def put(self, split: Split | list[Split]):
        """The images and the labels on the devices: one copy shared by every model, or,
        where the models' splits differ (a data regime: their own rows or labels), one per
        model stacked along a leading model axis."""
        splits = split if isinstance(split, list) else [split]

        def put(arrays: list[np.ndarray]):
            if all(mapping.same_array(a, arrays[0]) for a in arrays[1:]):
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
            self._epoch = self._train_epoch.lower(state, self.rest, *train, jnp.int32(0),
                                                  self.knobs, active).compile()
            self._validate = self._evaluate.lower(state.params, state.batch_stats, self.rest,
                                                  *validation, self.knobs).compile()
            needed, temporaries = max((devices.compiled_bytes(c),
                                       c.memory_analysis().temp_size_in_bytes)
                                      for c in (self._epoch, self._validate))
            self.tried.append((self.width, needed))
            free = devices.free_bytes()
            if self.fixed_width or self.width == 1 or free is None or \
                    needed <= mapping.MEMORY_SHARE * free:
                break
            self._build(mapping.narrower(self.width, needed, temporaries, free))
        budget.check_compiled_fits([self._epoch, self._validate])

    def epoch(self, state, train, epoch, active):
        state, metrics = self._epoch(state, self.rest, *train, jnp.int32(epoch), self.knobs,
                                     self._models(active))
        return state, step.per_model(metrics)

    def validate(self, state, validation):
        return step.per_model(self._validate(state.params, state.batch_stats, self.rest,
                                             *validation, self.knobs))

    def evaluate(self, params, batch_stats, data):
        return step.per_model(self._evaluate(params, batch_stats, self.rest, *data,
                                             self.knobs))

    def select(self, mask, new, old):
        return mapping.where(self._models(mask), new, old)

    def final_weights(self, state) -> list[tuple]:
        """(technique, weights) where an update technique replaces the weights when training
        ends (the moving average), for the models that have it on."""
        return step.final_weights(self.program, state.opt_state)

    def predict(self, params, batch_stats, images) -> np.ndarray:
        """Each model's class probabilities for shared images: [models, rows, classes]."""
        return np.asarray(self._predict(params, batch_stats, self.rest, images, self.knobs))

    def trained_model(self, state, k: int = 0) -> models.TrainedModel:
        """Model k as a TrainedModel: its weights in its module, its layers at its config's
        values."""
        pick = lambda tree: jax.tree.map(lambda a: a[k], tree)  # noqa: E731
        module = nnx.merge(self.program.graphdef, pick(state.params), pick(state.batch_stats),
                           pick(self.rest))
        # Its layers' knobs at its own values (the program's rest holds the structure's),
        # and evaluation mode, as a model is returned.
        layers.prepare(module, train=False, knobs=Knobs.of(self.configs[k]))
        return models.TrainedModel(self.configs[k], module, self.program.spec)


def data_devices(config: Config, count: int) -> list:
    """The first `count` devices, for one model's batches; the batch must split evenly."""
    available = jax.devices()
    if count > len(available):
        raise ValueError(f"--devices {count}: only {len(available)} device(s) here")
    if config.batch_size % count:
        raise ValueError(f"--batch-size {config.batch_size} does not split evenly between "
                         f"{count} devices; choose a multiple of {count}")
    return available[:count]


def checked_program(configs: list[Config], spec: DataSpec, maker=None) -> step.Program:
    """The program of `configs` on data of `spec`, after refusing, before anything is
    allocated, models that cannot share one, and a user's model that returns the wrong
    shape, lacks the layers of a technique it is to train with, or has no kernels for the
    penalties and MaxNorm."""
    structure = mapping.shared_structure(configs)
    program = step.program_of(structure, spec, maker)
    if structure.model != CUSTOM:
        return program
    model = nnx.eval_shape(lambda: models.make_model(structure, spec, maker=maker))
    name = models.model_name(maker)
    active = techniques.active(structure)
    models.check_model(model, spec, name, {t.switch for t in active if t.layers})
    needing = [t.name for t in active if t.penalty or t.project]
    if needing and not program.kernels:
        raise ValueError(f"the model {name} has no kernels for {', '.join(needing)} to act "
                         "on (nnx.Linear or nnx.Conv layers besides the output layer, or a "
                         "regularized_kernels() method)")
    return program
