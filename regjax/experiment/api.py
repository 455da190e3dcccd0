"""The Python API of an experiment, as a notebook user expects it:

    results = regjax.compare(["baseline", "dropout"], seeds=5, epochs=5)
    results.table()                  # a row per technique, ranked
    results.plot()                   # the report's figures, shown inline
    results.save("runs/compare")     # results.json, report.md and the plots
    regjax.sweep("l2", [0, 1e-4, 1e-3], seeds=3).table()
    regjax.study("mlp", grid={"dropout": [0, 0.25]}, train_sizes=[500, 0], seeds=5).plot()

Each builds the plan the command line would (regjax.experiment.plan) and runs it
(regjax.experiment.runner) in this process; keyword arguments are Config fields applied to
every run (epochs, train_size, label_noise, batch_size, ...) or the plan's own settings
(dataset, data_dir, output_dir, resume, ensemble, progress). A wrong argument is a TypeError
or ValueError naming it before anything trains; a single number where a list is expected
(values, train_sizes, label_noises, a knob's values in grid) is a list of one.
"""

from __future__ import annotations

from regjax.experiment.plan import as_list, compare_plan, sweep_plan
from regjax.experiment.results import Results
from regjax.experiment.study import study_plan


def shown(value) -> str:
    """An argument as the report's "Produced by" line shows it: a function or class by its
    name, a dataset by its name, arrays as arrays."""
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], tuple):
        return "arrays"  # Keras' ((x_train, y_train), (x_test, y_test))
    return value.name if hasattr(value, "train") and hasattr(value, "name") else repr(value)


def call_text(function: str, *args, **kwargs) -> str:
    """How the call reads, for the report's "Produced by" line."""
    given = [shown(a) for a in args] + [f"{k}={shown(v)}" for k, v in kwargs.items()
                                        if v is not None]
    return f"regjax.{function}({', '.join(given)})"


def with_model_and_data(settings: dict, model, data) -> dict:
    """`settings` with the model and the data given: a registered model's name is the
    Config field; a function or a module class the plan's model (its configs' model
    "custom"); `data` a dataset's name, or a Dataset, or arrays as Keras' load_data()
    returns them."""
    from regjax.config import CUSTOM

    settings = dict(settings)
    if isinstance(model, str):
        settings["model"] = model
    elif model is not None:
        settings.update(model=CUSTOM, maker=model)
    if isinstance(data, str):
        settings["dataset"] = data
    elif data is not None:
        from regjax.data import as_dataset

        dataset = as_dataset(data)
        settings.update(data=dataset, dataset=dataset.name)
    return settings


def run_plan(plan) -> Results:
    from regjax.experiment.runner import run
    from regjax.train.devices import use_cpu_devices

    use_cpu_devices()  # the models split between the cores, if JAX has not started yet
    return run(plan)


def compare(techniques="all", seeds: int = 5, epochs: int | None = None, *, model=None,
            data=None, progress: bool = True, **settings) -> Results:
    """Trains every technique (a preset name, a list of them, or "all") over seeds
    0..seeds-1, each technique's seeds as one compiled program; returns their Results.
    `model`: a registered model's name, or a model of your own (a function rngs ->
    nnx.Module, or a module class; docs/models.md); `data`: a dataset's name, a Dataset, or
    arrays as Keras' load_data() returns them."""
    names = [techniques] if isinstance(techniques, str) and techniques != "all" else techniques
    command = call_text("compare", names, seeds=seeds, epochs=epochs, model=model, data=data,
                        **settings)
    return run_plan(compare_plan(names, seeds, command=command, epochs=epochs,
                                 progress=progress,
                                 **with_model_and_data(settings, model, data)))


def sweep(technique: str, values, knob: str | None = None, seeds: int = 3,
          epochs: int | None = None, *, model=None, data=None, progress: bool = True,
          **settings) -> Results:
    """Trains `technique` with `knob` (default: the technique's own, e.g. l2 for "l2") at
    each of `values`, over seeds 0..seeds-1, all in one compiled program; returns Results.
    `model` and `data` as in compare."""
    values = as_list("values", values)  # a single value is a list of one
    command = call_text("sweep", technique, values, knob=knob, seeds=seeds, epochs=epochs,
                        model=model, data=data, **settings)
    return run_plan(sweep_plan(technique, values, knob, seeds, command=command, epochs=epochs,
                               progress=progress,
                               **with_model_and_data(settings, model, data)))


def study(techniques="all", grid: dict | None = None, train_sizes=(0,), label_noises=(0.0,),
          seeds: int = 5, epochs: int | None = None, *, model=None, data=None,
          progress: bool = True, **settings) -> Results:
    """Trains every technique ("all", "mlp", "cnn" or a list) at every point of `grid`
    ({knob: values}, a full product) in every regime (train_sizes x label_noises; 0: all
    rows) over seeds 0..seeds-1, one compiled program per structure and number of rows;
    returns Results whose table has a row per cell and whose plots are the map, the
    learning curves and (with a grid) the knobs' response curves. `model` and `data` as in
    compare."""
    # A single number is a list of one, for the regimes and for each knob of the grid.
    train_sizes = as_list("train_sizes", train_sizes)
    label_noises = as_list("label_noises", label_noises)
    command = call_text("study", techniques, grid=grid, train_sizes=train_sizes,
                        label_noises=label_noises, seeds=seeds, epochs=epochs, model=model,
                        data=data, **settings)
    return run_plan(study_plan(techniques, grid, train_sizes, label_noises, seeds,
                               command=command, epochs=epochs, progress=progress,
                               **with_model_and_data(settings, model, data)))
