"""The reports of an experiment's results (the results.json record): report.md with its
tables, and its plots, for a comparison of techniques, a sweep of one knob or a study (its
numbers: regjax.reports.study; its pictures: regjax.reports.maps). Everything is
computed from the record, so a report can be rebuilt from its results.json."""

from __future__ import annotations

from pathlib import Path

from regjax.files.atomic import atomic_write
from regjax.files.outdir import CURVES, MAP, REPORT, RESPONSE, SUMMARY, SWEEP_PLOT
from regjax.presets import NOTEBOOK
from regjax.reports import maps, plots, study, tables
from regjax.reports.names import group_name
from regjax.reports.stats import group_stats

COLUMNS = """\
Columns: test accuracy over the seeds (mean ± sample std, and the range); with --ensemble,
the test accuracy of the seeds' averaged class probabilities (and how many seeds); the best
validation accuracy of each run, averaged; the generalization gap, training minus validation
accuracy at the last epoch; epochs run (early stopping ends some runs sooner); the wall time
of the batched program that trained the setting's seeds together. The difference to baseline
comes with Welch's t-test: its 95% confidence interval, its p-value (the chance of a
difference at least this large between two settings that are equally good), and the seeds
per setting that would detect a difference of this size four times in five.
"""


def kind(record: dict) -> str:
    return "study" if "study" in record else "sweep" if "knob" in record else "compare"


def groups_of(record: dict) -> dict[str, list[dict]]:
    return {name: group["runs"] for name, group in record["groups"].items()}


def walls_of(record: dict) -> dict[str, float]:
    """Each setting's wall time: that of the program that trained it."""
    return {name: group["wall_seconds"] for name, group in record["groups"].items()}


def rows(record: dict) -> list[dict]:
    """One row of statistics per setting: ranked by test accuracy for a comparison (with the
    difference to the baseline), in order of the values for a sweep."""
    groups = groups_of(record)
    if kind(record) == "study":
        return study.cell_rows(record)
    if kind(record) == "sweep":
        return [{"value": v, **(group_stats(groups.get(group_name(record["knob"], v), []))
                                or {})} for v in record["values"]]
    return tables.comparison_table(groups, walls_of(record), reference="baseline")[0]


def table_text(record: dict) -> str:
    """The report's table(s) in markdown: a comparison's Part 1 (the notebook's techniques)
    and Part 2 ranked apart, each against the baseline; a sweep's row per value."""
    if kind(record) == "study":
        return study_text(record)
    if kind(record) == "sweep":
        return tables.sweep_table(record["knob"], rows(record))
    groups, wall = groups_of(record), walls_of(record)
    parts = [(title, {name: runs for name, runs in groups.items()
                      if name in members or name == "baseline"})
             for title, members in (("Part 1: the notebook's techniques", NOTEBOOK),
                                    ("Part 2: the regularizers a reader meets next",
                                     [n for n in groups if n not in NOTEBOOK]))]
    parts = [(title, part) for title, part in parts if set(part) - {"baseline"}]
    if len(parts) < 2:
        return tables.comparison_table(groups, wall, reference="baseline")[1]
    return "\n\n".join(f"## {title}\n\n{tables.comparison_table(part, wall, 'baseline')[1]}"
                       for title, part in parts)


def figures(record: dict) -> dict:
    """The report's plots as matplotlib Figures, by file name."""
    groups = groups_of(record)
    if kind(record) == "study":
        cells = rows(record)
        images = {MAP: maps.map_figure(record, cells), CURVES: maps.curves_figure(record, cells)}
        response = maps.response_figure(record, cells)
        if response is not None:
            images[RESPONSE] = response
        return images
    if kind(record) == "sweep":
        return {SWEEP_PLOT: plots.sweep_figure(record["knob"], rows(record))}
    return {CURVES: plots.curves_figure(groups), SUMMARY: plots.summary_figure(rows(record),
                                                                             groups)}


def study_text(record: dict) -> str:
    """A study's tables: the map of differences, the generalization gap, the best grid
    points, the sentences, and what was left out."""
    cells = rows(record)
    text = ("## The map: Δ test accuracy vs the plain network (points)\n\n"
            "Each cell: the difference of mean test accuracy from the plain network (the "
            "baseline) in the same regime, with Welch's 95% interval; * where it survives "
            "Holm's correction over the whole map (family-wise error 5%).\n\n"
            + study.map_table(record, cells)
            + "\n\n## Generalization gap (train − val accuracy at the last epoch, points)\n\n"
            + study.gap_table(record, cells))
    best = study.best_points(record, cells)
    if best:
        text += ("\n\n## Best grid point per technique and regime\n\nPicked after seeing the "
                 "test accuracy, so its difference is optimistic.\n\n" + study.best_table(best))
    said = study.sentences(record, cells)
    if said:
        text += "\n\n## What the map says\n\n" + "\n".join(f"- {s}" for s in said)
    left_out = record["study"]["left_out"]
    if left_out:
        text += "\n\n## Left out\n\n" + "\n".join(
            f"- {item['technique']} {' '.join(f'{k}={v}' for k, v in item['point'].items())}"
            f": {item['why']}" for item in left_out)
    return text


def header(title: str, record: dict, how: str) -> str:
    """The report's title and where it came from (`how`: the machine, or the shares)."""
    return (f"# {title}\n\nProduced by `{record['command']}` on {record['dataset']} "
            f"({record['data_source']}), {how}.\n")


def regime(record: dict) -> str:
    """The data regime of the runs, as words (empty for the full, clean data)."""
    config = next(r["config"] for g in record["groups"].values() for r in g["runs"])
    words = []
    if config.get("train_size"):
        words.append(f"each on a random {config['train_size']:,} training rows of its seed "
                     f"(before the validation split)")
    if config.get("label_noise"):
        words.append(f"{config['label_noise']:g} of the training labels replaced by a random "
                     "other class")
    return "" if not words else ", " + " and ".join(words)


def introduction(record: dict, how: str) -> str:
    """What report.md says above its table."""
    if kind(record) == "study":
        s = record["study"]
        models = sum(len(group["runs"]) for group in record["groups"].values())
        return (header("When does regularization help? A study", record, how)
                + f"\n{len(s['settings'])} settings x {len(s['train_sizes'])} training sizes x "
                  f"{len(s['label_noises'])} label-noise levels x {record['seeds']} seeds = "
                  f"{models} models, trained as {s['programs']} compiled programs in "
                  # each program's wall time once: its cells all record it
                  f"{sum(set(walls_of(record).values())):.0f} s.\n\n")
    if kind(record) == "compare":
        return (header("Regularization techniques compared", record, how)
                + f"\n{record['seeds']} seeds per technique{regime(record)}, ranked by mean "
                  "test accuracy.\n\n")
    walls = list(walls_of(record).values())
    models = sum(len(group["runs"]) for group in record["groups"].values())
    programs = record.get("programs", 1)
    trained = (f"together in one program in {max(walls):.0f} s" if programs == 1 else
               f"in {programs} programs, one per value, in {sum(walls):.0f} s")
    return (header(f"Sweep of {record['knob']} for {record['technique']}", record, how)
            + f"\n{len(record['values'])} values x {record['seeds']} seeds = {models} models, "
              f"trained {trained}.\n\n")


def failures(record: dict) -> list[str]:
    return [f"{name} seed {run['config']['seed']}: {run['status']}"
            for name, runs in groups_of(record).items() for run in runs
            if run["status"] != "completed"]


def write(record: dict, out: Path, how: str) -> list[str]:
    """report.md and the plots in `out`; returns the names of the files written."""
    images = figures(record)
    for name, figure in images.items():
        plots.save_figure(figure, out / name)
    text = introduction(record, how) + table_text(record) + "\n"
    if kind(record) == "compare":
        text += "\n" + COLUMNS
    text += "".join(f"\n- not completed: {f}" for f in failures(record))
    text += "\n" + "\n\n".join(f"![{name.split('.')[0]}]({name})" for name in images) + "\n"
    atomic_write(out / REPORT, lambda f: f.write(text.encode()))
    return [REPORT, *images]

