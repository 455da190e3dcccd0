"""One model trained as Keras' model.fit does (`fit`) and evaluated (`evaluate`): the host
loop is regjax.train.loop's, and this module's engine, `OneModel`, jits the pure functions of
regjax.train.step for one config.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from regjax.config import Config, as_config
from regjax.data.split import Split, as_split
from regjax.files.checkpoint import Checkpoints
from regjax.nn.models import TrainedModel
from regjax.train import step
from regjax.train.loop import check_compiled_fits, check_models_fit, train_loop

_train_epoch = jax.jit(step.train_epoch, static_argnums=0, static_argnames="num_steps",
                       donate_argnums=1)
_evaluate = jax.jit(step.evaluate, static_argnums=0)


class OneModel:
    """One model: regjax.train.step's functions jitted, the state donated to each epoch. With
    `data_parallel` > 1, the weights and the data replicated on that many devices, each
    training batch split between them."""

    def __init__(self, config: Config, data_parallel: int = 1):
        self.configs = [config]
        check_models_fit(self.configs)
        self.program, self._initial = step.make_program(config)
        self.replicated = None
        if data_parallel > 1:
            mesh = data_mesh(config, data_parallel)
            self.replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
            self.program = dataclasses.replace(self.program, batch_sharding=batch)
        self.knobs = jax.device_put(step.Knobs.of(config), self.replicated)

    def init_state(self) -> step.TrainState:
        # A copy: training consumes the state it is given.
        return jax.device_put(jax.tree.map(jnp.copy, self._initial), self.replicated)

    def put(self, split: Split):
        return jax.device_put((jnp.asarray(split.images), jnp.asarray(split.labels)),
                              self.replicated)

    def compile(self, state, train, validation) -> None:
        self._epoch = _train_epoch.lower(self.program, state, *train, jnp.int32(0),
                                         self.knobs).compile()
        self._validate = _evaluate.lower(self.program, state.params, state.batch_stats,
                                         *validation, self.knobs).compile()
        check_compiled_fits([self._epoch, self._validate])

    def epoch(self, state, train, epoch, active):
        state, metrics = self._epoch(state, *train, jnp.int32(epoch), self.knobs)
        return state, step.per_model(metrics)

    def validate(self, state, validation):
        return step.per_model(self._validate(state.params, state.batch_stats, *validation,
                                             self.knobs))

    def evaluate(self, params, batch_stats, data):
        return step.per_model(_evaluate(self.program, params, batch_stats, *data, self.knobs))

    def select(self, mask, new, old):
        return jax.tree.map(jnp.copy, new) if mask[0] else old


def data_mesh(config: Config, count: int) -> jax.sharding.Mesh:
    """The first `count` devices as a "data" axis; the batch must split evenly."""
    available = jax.devices()
    if count > len(available):
        raise ValueError(f"--devices {count}: only {len(available)} device(s) here")
    if config.batch_size % count:
        raise ValueError(f"--batch-size {config.batch_size} does not split evenly between "
                         f"{count} devices; choose a multiple of {count}")
    return jax.sharding.Mesh(np.array(available[:count]), ("data",))


def fit(config: Config, train: Split, validation: Split, test: Split | None = None, *,
        log: Callable[[str], None] = print, checkpoints: Checkpoints | None = None,
        resume: bool = False, should_stop: Callable[[], bool] = lambda: False,
        on_epoch: Callable[[dict], None] = lambda history: None, data_parallel: int = 1,
        ) -> tuple[dict, TrainedModel]:
    """Trains one model as Keras' model.fit does, then evaluates it on `test`.

    Returns (history, trained model). The history (regjax.train.history.RunRecord.summary) holds
    per-epoch loss, accuracy, val_loss, val_accuracy and epoch_seconds (training plus
    validation; compilation happens first and is compile_seconds), the test metrics, and
    `status`: "completed" (all epochs, or stopped early), "interrupted" (`should_stop()` was
    true before an epoch) or "diverged" (an epoch's loss was not finite; that epoch is
    neither recorded nor checkpointed). With `checkpoints`, a checkpoint is written after
    every epoch; with `resume`, training continues from the newest intact one and ends
    exactly as an uninterrupted run would. `on_epoch(history so far)` follows each epoch.
    `data_parallel` > 1 splits each batch between that many devices (the same arithmetic as
    one device, up to the order of the sums; it pays only for large batches). `train` and
    `validation` are the config's splits: regjax.data.model_data(config, dataset), which
    also applies its data regime (train_size, label_noise).
    """
    as_config(config).validate()
    train, validation = as_split(train, "train"), as_split(validation, "validation")
    test = None if test is None else as_split(test, "test")
    rows = len(train) + (len(validation) if config.validation == "split" else 0)
    if config.train_size and rows != config.train_size:
        raise ValueError(f"train_size {config.train_size}, but the splits hold {rows} rows: "
                         "pass the splits regjax.model_data(config, dataset) gives")
    engine = OneModel(config, data_parallel)
    records, state = train_loop(
        engine, train, validation, test, log=log, checkpoints=checkpoints, resume=resume,
        should_stop=should_stop, on_epoch=lambda records: on_epoch(records[0].summary()))
    return records[0].summary(), TrainedModel(config, nnx.merge(
        engine.program.graphdef, state.params, state.batch_stats))


def evaluate(model: TrainedModel, split: Split) -> dict:
    """{"loss", "accuracy"} of a trained model on a split, in evaluation mode; the loss
    includes the config's penalties and smoothing, as Keras reports it."""
    if not isinstance(model, TrainedModel):
        raise TypeError(f"model must be a regjax.TrainedModel (what regjax.fit returns; "
                        f"regjax.load_model(path) reads a model.npz), got "
                        f"{type(model).__name__} {model!r:.80}")
    split = as_split(split)
    _, params, batch_stats = nnx.split(model.module, nnx.Param, nnx.BatchStat)
    program = step.program_of(model.config)
    return step.per_model(_evaluate(program, params, batch_stats, jnp.asarray(split.images),
                                    jnp.asarray(split.labels),
                                    jax.device_put(step.Knobs.of(model.config))))[0]
