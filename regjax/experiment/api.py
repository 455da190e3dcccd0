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


def call_text(function: str, *args, **kwargs) -> str:
    """How the call reads, for the report's "Produced by" line."""
    given = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items() if v is not None]
    return f"regjax.{function}({', '.join(given)})"


def run_plan(plan) -> Results:
    from regjax.experiment.runner import run
    from regjax.train.devices import use_cpu_devices

    use_cpu_devices()  # the models split between the cores, if JAX has not started yet
    return run(plan)


def compare(techniques="all", seeds: int = 5, epochs: int | None = None, *,
            progress: bool = True, **settings) -> Results:
    """Trains every technique (a preset name, a list of them, or "all") over seeds
    0..seeds-1, each technique's seeds as one compiled program; returns their Results."""
    names = [techniques] if isinstance(techniques, str) and techniques != "all" else techniques
    command = call_text("compare", names, seeds=seeds, epochs=epochs, **settings)
    return run_plan(compare_plan(names, seeds, command=command, epochs=epochs,
                                 progress=progress, **settings))


def sweep(technique: str, values, knob: str | None = None, seeds: int = 3,
          epochs: int | None = None, *, progress: bool = True, **settings) -> Results:
    """Trains `technique` with `knob` (default: the technique's own, e.g. l2 for "l2") at
    each of `values`, over seeds 0..seeds-1, all in one compiled program; returns Results."""
    values = as_list("values", values)  # a single value is a list of one
    command = call_text("sweep", technique, values, knob=knob, seeds=seeds, epochs=epochs,
                        **settings)
    return run_plan(sweep_plan(technique, values, knob, seeds, command=command, epochs=epochs,
                               progress=progress, **settings))


def study(techniques="all", grid: dict | None = None, train_sizes=(0,), label_noises=(0.0,),
          seeds: int = 5, epochs: int | None = None, *, progress: bool = True,
          **settings) -> Results:
    """Trains every technique ("all", "mlp", "cnn" or a list) at every point of `grid`
    ({knob: values}, a full product) in every regime (train_sizes x label_noises; 0: all
    rows) over seeds 0..seeds-1, one compiled program per structure and number of rows;
    returns Results whose table has a row per cell and whose plots are the map, the
    learning curves and (with a grid) the knobs' response curves."""
    # A single number is a list of one, for the regimes and for each knob of the grid.
    train_sizes = as_list("train_sizes", train_sizes)
    label_noises = as_list("label_noises", label_noises)
    command = call_text("study", techniques, grid=grid, train_sizes=train_sizes,
                        label_noises=label_noises, seeds=seeds, epochs=epochs, **settings)
    return run_plan(study_plan(techniques, grid, train_sizes, label_noises, seeds,
                               command=command, epochs=epochs, progress=progress, **settings))
