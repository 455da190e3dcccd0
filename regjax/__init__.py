"""regjax: the classic regularization techniques of a well-known Keras notebook (L1 and L2
penalties, dropout, batch normalization, early stopping, data augmentation, label smoothing)
in pure JAX, with Keras' semantics.

    import regjax

    config = regjax.preset("dropout", epochs=5)          # a technique, any knob overridden
    data = regjax.load_dataset("fashion_mnist")
    train, validation = regjax.model_data(config, data)  # the config's split (and regime)
    history, model = regjax.fit(config, train, validation, data.test)
    regjax.evaluate(model, data.test)                     # {"loss": ..., "accuracy": ...}
    model = regjax.load_model("runs/dropout/model.npz")   # what scripts/train.py saved

    history.history                                       # Keras' keys: loss, accuracy, ...
    regjax.plot(history)                                  # its curves, a matplotlib Figure

    results = regjax.compare(["baseline", "dropout"], seeds=5, epochs=5)
    results.table(), results.plot(), results.save("runs/compare")
    regjax.sweep("l2", [0, 1e-4, 1e-3], seeds=3)
    regjax.study("mlp", train_sizes=[500, 2000, 0], label_noises=[0, 0.2], seeds=5)

The compiled program itself (loss, train_step, train_epoch, evaluate as pure functions) is
regjax.train.step; many models at once are regjax.train.batched.fit_batched.
"""

import importlib

# Where each public name lives. They are imported on first use, so that the command line
# answers --help and bad flags without loading JAX.
_PUBLIC = {
    "Config": "config", "PRESETS": "presets", "TECHNIQUES": "presets", "preset": "presets",
    "load_dataset": "data", "train_and_validation": "data", "model_data": "data",
    "fit": "train.fit", "evaluate": "train.fit",
    "load_model": "files.modelfile", "save_model": "files.modelfile",
    "NOTEBOOK": "presets", "TrainedModel": "models", "History": "train.history",
    "compare": "experiment.api", "sweep": "experiment.api", "study": "experiment.api",
    "Results": "experiment.results",
    "plot": "reports.plots",
}
__all__ = sorted(_PUBLIC)
__version__ = "0.2.0"


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"regjax.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'regjax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
