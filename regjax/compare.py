"""`scripts/compare.py` and `scripts/sweep.py`: many seeds and settings trained at once
(`regjax.batched`), then report.md, plots and results.json."""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import sys
import time
from pathlib import Path

from regjax import data
from regjax.cli import Parser, add_data_flags
from regjax.config import TECHNIQUES, Config, preset

RESULTS, REPORT, CURVES, SUMMARY, SWEEP_PLOT = (
    "results.json", "report.md", "curves.png", "summary.png", "sweep.png")
OUTPUTS = (RESULTS, REPORT, CURVES, SUMMARY, SWEEP_PLOT)

# What `sweep.py --technique T` varies unless --knob says otherwise.
DEFAULT_KNOB = {"l1": "l1", "l2": "l2", "dropout": "dropout",
                "label_smoothing": "label_smoothing", "augmentation": "augment_strength"}
KNOBS = ("l1", "l2", "dropout", "label_smoothing", "learning_rate", "augment_strength")
RANGES = ("rotation_range", "shift_range", "shear_range", "zoom_range")


def common_flags(p: argparse.ArgumentParser, default_output: str) -> None:
    add_data_flags(p)
    p.add_argument("--seeds", type=int, default=5, metavar="N",
                   help="seeds per setting, 0..N-1 (default 5)")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="override every preset's epochs (e.g. 2 for a quick look)")
    p.add_argument("--output-dir", type=Path, default=Path(default_output), metavar="DIR",
                   help=f"where {', '.join(OUTPUTS[:-1])} go (default {default_output}); "
                        "must be empty or absent unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier report in --output-dir (deletes only its files)")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def with_overrides(config: Config, **overrides) -> Config:
    return dataclasses.replace(config, **overrides).validate()


def strength(config: Config, factor: float) -> Config:
    """The augmentation ranges of `config` scaled by `factor` (0: no augmentation)."""
    return with_overrides(config, **{r: getattr(config, r) * factor for r in RANGES})


def prepare(args, parser) -> tuple[data.Dataset, object]:
    """Checks the flags, the output directory and loads the data; exits on a problem."""
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    from regjax import artifacts  # starts JAX

    try:
        artifacts.prepare_output_dir(args.output_dir, resume=False, overwrite=args.overwrite,
                                     needed_bytes=10_000_000, owned=OUTPUTS)
        dataset = data.load_dataset(args.dataset, args.data_dir, download=not args.no_download)
    except (artifacts.OutputDirError, data.DataError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        raise SystemExit(1)
    return dataset, artifacts


def train_groups(batches: list[tuple[str, list[tuple[str, Config]]]], dataset: data.Dataset,
                 quiet: bool) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """Trains each batch (label, [(group name, config), ...]) as one vmapped program;
    returns the runs of each group and each group's batch wall time."""
    from regjax.batched import fit_batched
    from regjax.progress import Progress

    progress = Progress(sum(max(c.epochs for _, c in b) for _, b in batches),
                        enabled=None if not quiet else False)
    groups: dict[str, list[dict]] = {}
    wall: dict[str, float] = {}
    for label, members in batches:
        configs = [c for _, c in members]
        train, val = data.train_and_validation(dataset, configs[0].validation)
        start, ran = time.perf_counter(), []
        histories, _ = fit_batched(configs, train, val, dataset.test,
                                   on_epoch=lambda done, total: (ran.append(done),
                                                                 progress.advance(1, label)))
        # Early stopping may end the batch before its last epoch: count those as done.
        progress.advance(max(c.epochs for c in configs) - len(ran), label)
        seconds = time.perf_counter() - start
        for (name, config), history in zip(members, histories):
            groups.setdefault(name, []).append({"config": config.to_dict(), **history})
            wall[name] = seconds
    progress.close()
    return groups, wall


def failures(groups: dict[str, list[dict]]) -> list[str]:
    return [f"{name} seed {run['config']['seed']}: {run['status']}"
            for name, runs in groups.items() for run in runs if run["status"] != "completed"]


def header(title: str, dataset: data.Dataset, argv: list[str], script: str) -> str:
    import jax

    return (f"# {title}\n\n"
            f"Produced by `{shlex.join(['python', script, *argv])}` on {dataset.name} "
            f"({dataset.source}), jax {jax.__version__}, {jax.devices()[0].device_kind} "
            f"({platform.machine()}, {jax.local_device_count()} device(s)).\n")


COLUMNS = """\
Columns: test accuracy over the seeds (mean ± sample std, and the range); the best
validation accuracy of each run, averaged; the generalization gap, training minus validation
accuracy at the last epoch; epochs run (early stopping ends some runs sooner); the wall time
of the batched program that trained the setting's seeds together. "Beyond seed spread" is
yes when the difference of means exceeds two standard errors of that difference.
"""


def write_results(path: Path, artifacts, argv, script, dataset, groups, wall, **extra):
    artifacts.write_json(path, {
        "command": shlex.join(["python", script, *argv]), "dataset": dataset.name,
        "data_source": dataset.source, **extra,
        "groups": {name: {"wall_seconds": wall[name], "runs": runs}
                   for name, runs in groups.items()}})


# ----------------------------------------------------------------------------- compare

def compare_parser() -> argparse.ArgumentParser:
    p = Parser(prog="compare.py", formatter_class=argparse.RawDescriptionHelpFormatter,
               description="Train techniques over several seeds (each technique's seeds in "
                           "one vmapped program) and write report.md, curves.png, "
                           "summary.png and results.json.",
               epilog="example:\n  python scripts/compare.py --techniques all --seeds 5 "
                      "--dataset fashion_mnist --output-dir runs/compare")
    p.add_argument("--techniques", default="all", metavar="LIST",
                   help=f"comma-separated, or all: {', '.join(TECHNIQUES)} (default all)")
    common_flags(p, "runs/compare")
    return p


def compare_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = compare_parser()
    args = parser.parse_args(argv)
    names = list(TECHNIQUES) if args.techniques == "all" else args.techniques.split(",")
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    try:
        batches = [(name, [(name, preset(name, seed=seed, **overrides))
                           for seed in range(args.seeds)]) for name in names]
    except ValueError as e:
        parser.error(str(e))
    dataset, artifacts = prepare(args, parser)
    from regjax import report

    groups, wall = train_groups(batches, dataset, args.quiet)
    out = args.output_dir
    write_results(out / RESULTS, artifacts, argv, "scripts/compare.py", dataset, groups, wall,
                  seeds=args.seeds)
    rows, table = report.comparison_table(groups, wall, reference="baseline")
    report.plot_curves(groups, out / CURVES)
    report.plot_summary(rows, groups, out / SUMMARY)
    text = (header("Regularization techniques compared", dataset, argv, "scripts/compare.py")
            + f"\n{args.seeds} seeds per technique, ranked by mean test accuracy.\n\n"
            + table + "\n\n" + COLUMNS
            + "".join(f"\n- not completed: {f}" for f in failures(groups))
            + f"\n![curves]({CURVES})\n\n![summary]({SUMMARY})\n")
    artifacts.atomic_write(out / REPORT, lambda f: f.write(text.encode()))
    print(table)
    print(f"wrote {out}/{REPORT}, {CURVES}, {SUMMARY}, {RESULTS}")
    return 0


# ------------------------------------------------------------------------------- sweep

def sweep_parser() -> argparse.ArgumentParser:
    p = Parser(prog="sweep.py", formatter_class=argparse.RawDescriptionHelpFormatter,
               description="Train one technique over a range of one knob's values and "
                           "several seeds, all at once in one vmapped program; report test "
                           "accuracy and generalization gap against the value.",
               epilog="knobs: l1, l2, dropout, label_smoothing, learning_rate, "
                      "augment_strength (scales the preset's rotation, shift, shear and zoom "
                      "ranges; 1 = the notebook's)\n\nexample:\n  python scripts/sweep.py "
                      "--technique l2 --values 0,1e-5,1e-4,1e-3,1e-2 --seeds 3")
    p.add_argument("--technique", required=True, metavar="NAME",
                   help=f"preset to start from: {', '.join(TECHNIQUES)}")
    p.add_argument("--knob", choices=KNOBS,
                   help="what to vary (default: the technique's own knob, e.g. l2 for l2)")
    p.add_argument("--values", required=True, metavar="LIST",
                   help="comma-separated values of the knob, e.g. 0,1e-4,1e-3")
    common_flags(p, "runs/sweep")
    p.set_defaults(seeds=3)
    return p


def sweep_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = sweep_parser()
    args = parser.parse_args(argv)
    knob = args.knob or DEFAULT_KNOB.get(args.technique)
    if knob is None:
        parser.error(f"technique {args.technique!r} has no knob of its own; choose one with "
                     f"--knob ({', '.join(KNOBS)})")
    try:
        values = [float(v) for v in args.values.split(",")]
    except ValueError:
        parser.error(f"--values: expected comma-separated numbers, got {args.values!r}")
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    try:
        base = preset(args.technique, **overrides)
        if knob == "augment_strength" and not base.augment:
            raise ValueError(f"augment_strength needs augmentation; {args.technique!r} has "
                             "none (use --technique augmentation)")
        members = [(f"{knob}={v:g}",
                    strength(base, v) if knob == "augment_strength" else
                    with_overrides(base, **{knob: v}))
                   for v in values for _ in range(args.seeds)]
        members = [(name, with_overrides(c, seed=i % args.seeds))
                   for i, (name, c) in enumerate(members)]
    except ValueError as e:
        parser.error(str(e))
    dataset, artifacts = prepare(args, parser)
    from regjax import report

    label = f"{args.technique}: {knob} in {args.values}"
    groups, wall = train_groups([(label, members)], dataset, args.quiet)
    out = args.output_dir
    write_results(out / RESULTS, artifacts, argv, "scripts/sweep.py", dataset, groups, wall,
                  technique=args.technique, knob=knob, values=values, seeds=args.seeds)
    rows = [{"value": v, **report.group_stats(groups[f"{knob}={v:g}"])} for v in values]
    report.plot_sweep(knob, rows, out / SWEEP_PLOT)
    table = report.markdown_table(
        [knob, "test acc % (mean ± std)", "min–max", "gap % (train − val)", "epochs"],
        [[f"{r['value']:g}",
          f"{report.pct(r['test_accuracy_mean'])} ± {report.pct(r['test_accuracy_std'])}",
          f"{report.pct(r['test_accuracy_min'])}–{report.pct(r['test_accuracy_max'])}",
          f"{report.pct(r['gap_mean'])} ± {report.pct(r['gap_std'])}",
          f"{r['epochs_mean']:.1f}"] for r in rows])
    seconds = next(iter(wall.values()))
    text = (header(f"Sweep of {knob} for {args.technique}", dataset, argv, "scripts/sweep.py")
            + f"\n{len(values)} values x {args.seeds} seeds = {len(members)} models, trained "
              f"together in one program in {seconds:.0f} s.\n\n" + table + "\n"
            + "".join(f"\n- not completed: {f}" for f in failures(groups))
            + f"\n![sweep]({SWEEP_PLOT})\n")
    artifacts.atomic_write(out / REPORT, lambda f: f.write(text.encode()))
    print(table)
    print(f"wrote {out}/{REPORT}, {SWEEP_PLOT}, {RESULTS}")
    return 0
