"""One model trained as Keras' model.fit does (`fit`) and evaluated (`evaluate`): the host loop
is regjax.train.loop's and the engine regjax.train.engine's, for one model.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from regjax import data as datasets
from regjax.config import CUSTOM, Config, Knobs, as_config
from regjax.data.split import Split, as_split
from regjax.files.checkpoint import Checkpoints
from regjax.models import TrainedModel, regularized_kernels
from regjax.train import step
from regjax.train.engine import Engine
from regjax.train.loop import RunIO, train_loop

_evaluate = jax.jit(step.evaluate, static_argnums=0)


def with_model(config: Config, model) -> Config:
    """`config` for a user's `model` (Config.model "custom"), or as it is without one."""
    return config if model is None else dataclasses.replace(config, model=CUSTOM)


def fit(config: Config, train: Split | None = None, validation: Split | None = None,
        test: Split | None = None, *, data=None, model=None,
        log: Callable[[str], None] = print, checkpoints: Checkpoints | None = None,
        resume: bool = False, should_stop: Callable[[], bool] = lambda: False,
        on_epoch: Callable[[dict], None] = lambda history: None, data_parallel: int = 1,
        ) -> tuple[dict, TrainedModel]:
    """Trains one model as Keras' model.fit does, then evaluates it on `test`.

    The rows: `train` and `validation`, the config's splits (regjax.model_data(config,
    dataset), which also applies its data regime), and `test`; or `data`, a dataset (its
    name, a Dataset, or arrays as Keras' load_data() returns them), split here the same way.
    `model`: a model of your own (a function rngs -> nnx.Module, or a module class; see
    docs/models.md) instead of the config's registered one.

    Returns (history, trained model). The history (regjax.train.history.RunRecord.summary) holds
    per-epoch loss, accuracy, val_loss, val_accuracy and epoch_seconds (training plus
    validation; compilation happens first and is compile_seconds), the test metrics, and
    `status`: "completed" (all epochs, or stopped early), "interrupted" (`should_stop()` was
    true before an epoch) or "diverged" (an epoch's loss was not finite; that epoch is
    neither recorded nor checkpointed). With `checkpoints`, a checkpoint is written after
    every epoch; with `resume`, training continues from the newest intact one and ends
    exactly as an uninterrupted run would. `on_epoch(history so far)` follows each epoch.
    `data_parallel` > 1 splits each batch between that many devices (the same arithmetic as
    one device, up to the order of the sums; it pays only for large batches).
    """
    config = with_model(as_config(config), model).validate()
    if data is not None:
        dataset = datasets.as_dataset(data)
        train, validation = datasets.model_data(config, dataset)
        test = dataset.test if test is None else test
    elif train is None or validation is None:
        raise TypeError("fit needs the rows: train and validation splits, or data=")
    train, validation = as_split(train, "train"), as_split(validation, "validation")
    spec = train.spec
    validation = as_split(validation, "validation", spec)
    test = None if test is None else as_split(test, "test", spec)
    rows = len(train) + (len(validation) if config.validation == "split" else 0)
    if config.train_size and rows != config.train_size:
        raise ValueError(f"train_size {config.train_size}, but the splits hold {rows} rows: "
                         "pass the splits regjax.model_data(config, dataset) gives")
    engine = Engine([config], spec, maker=model, data_parallel=data_parallel)
    records, state = train_loop(engine, train, validation, test, RunIO(
        log, checkpoints, resume, should_stop,
        on_epoch=lambda records: on_epoch(records[0].summary())))
    return records[0].summary(), engine.trained_model(state)


def evaluate(model: TrainedModel, split: Split) -> dict:
    """{"loss", "accuracy"} of a trained model on a split, in evaluation mode; the loss
    includes the config's penalties and smoothing, as Keras reports it."""
    if not isinstance(model, TrainedModel):
        raise TypeError(f"model must be a regjax.TrainedModel (what regjax.fit returns; "
                        f"regjax.load_model(path) reads a model.npz), got "
                        f"{type(model).__name__} {model!r:.80}")
    graphdef, params, batch_stats, rest = step.split_model(model.module)
    program = step.Program(model.config.structure(), model.spec, graphdef,
                           regularized_kernels(model.module))
    split = as_split(split, spec=model.spec)
    return step.per_model(_evaluate(program, params, batch_stats, rest,
                                    jnp.asarray(split.images), jnp.asarray(split.labels),
                                    jax.device_put(Knobs.of(model.config))))[0]
