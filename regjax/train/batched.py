"""Many models trained at once: K configs that differ in their seed, in the values of the
knobs (config.KNOBS: penalties, dropout rate, label smoothing, learning rate, augmentation
ranges) and in the host-side settings (epochs, early stopping) run as one compiled program
(regjax.train.engine): regjax.train.step's epoch mapped over a leading model axis,
`vmap_width` models vmapped together and the groups one after another (`lax.map`). On a CPU
one model at a time is fastest; on an accelerator all of a device's models at once, in
narrower groups where XLA's memory analysis of the compiled program says they do not fit
(thousands of MLPs on one GPU). The host loop is regjax.train.loop's.

Each model keeps its own parameters, optimizer state, batch-norm statistics and key tree
(from its own seed, exactly as in a single run), so model k follows the run
`fit(configs[k])` would give, up to floating-point rounding (the batched program may sum
products in another order). Early stopping is per model: a model that stops is masked out
of the updates (on a CPU, where a device's models run one after another, it is skipped
and costs nothing) and its history ends at its own epoch, while the others go on.

With several devices (`regjax.train.devices.use_cpu_devices` on a CPU, which scripts/compare.py
and scripts/sweep.py call), the models are split between them: they never exchange data,
so each device trains its share alone.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from regjax.config import Config
from regjax.data.split import Split
from regjax.files.checkpoint import Checkpoints
from regjax.train.engine import Engine
from regjax.train.loop import RunIO, train_loop

KERAS_EPSILON = 1e-7  # keras.backend.epsilon(): Keras clips probabilities to it


def ensemble_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Test loss and accuracy of an ensemble: its members' class probabilities [members,
    rows, classes] averaged over the members, the loss the categorical cross-entropy of those
    probabilities (clipped to [1e-7, 1 - 1e-7], as Keras' is)."""
    mean = np.clip(probabilities.astype(np.float64).mean(axis=0), KERAS_EPSILON,
                   1 - KERAS_EPSILON)
    return {"loss": float(-np.mean(np.log(mean[np.arange(len(labels)), labels]))),
            "accuracy": float(np.mean(mean.argmax(axis=-1) == labels))}


def fit_batched(configs: list[Config], train: Split | list[Split],
                validation: Split | list[Split], test: Split | None = None, *,
                on_epoch: Callable[[int, int], None] = lambda done, total: None,
                vmap_width: int | None = None, checkpoints: Checkpoints | None = None,
                resume: bool = False,
                should_stop: Callable[[], bool] = lambda: False,
                ensemble: bool = False, model=None) -> list[dict]:
    """Trains every config at once; returns one history per config, as `fit` writes it.
    `on_epoch(epochs done, most epochs)` reports progress (on resume, first the epochs the
    checkpoint holds). With `checkpoints`, every model's
    state is checkpointed after every epoch; with `resume`, training continues from the
    newest intact checkpoint and ends exactly as an uninterrupted run; `should_stop()` true
    before an epoch ends the run as "interrupted", as in `fit`. With `ensemble`, the
    completed models' test predictions are averaged (their class probabilities, after EMA and
    best weights as each model's own test metrics) and each of them records the ensemble's
    test metrics as history["ensemble"]. `vmap_width`: how many of a
    device's models run vmapped together (default: the Engine's). `train` and `validation`:
    one split for every model, or one per model (regjax.data.model_data of each config).
    `model`: a user's model for configs whose model is "custom" (docs/models.md)."""
    n = len(configs)
    count = jax.local_device_count()
    if n > 1 and n % count:  # pad with copies of the last model, to split evenly
        pad = lambda items: [*items, *[items[-1]] * (count - n % count)]  # noqa: E731
        configs = pad(configs)
        train, validation = (pad(s) if isinstance(s, list) else s for s in (train, validation))
    spec = (train[0] if isinstance(train, list) else train).spec
    engine = Engine(configs, spec, maker=model, vmap_width=vmap_width)
    total = max(c.epochs for c in configs)
    # The loop's epoch is the most any model has run (one that trains runs every epoch; on
    # resume, the first call says where the checkpoint stands).
    records, state = train_loop(engine, train, validation, test, RunIO(
        checkpoints=checkpoints, resume=resume, should_stop=should_stop,
        on_epoch=lambda records: on_epoch(max(r.epochs_run for r in records), total)))
    histories = [r.summary() for r in records[:n]]
    members = [k for k, r in enumerate(records[:n]) if r.status == "completed"]
    if ensemble and test is not None and members:
        probabilities = engine.predict(state.params, state.batch_stats,
                                       engine.put(test)[0])[members]
        result = {"members": len(members), **{f"test_{k}": v for k, v in ensemble_metrics(
            probabilities, test.labels).items()}}
        for k in members:
            histories[k]["ensemble"] = result
    return histories
