"""`scripts/compare.py`: techniques over many seeds, each technique's seeds trained at once
(regjax.batched), then report.md, plots and results.json; and the pieces regjax.sweep
shares with it."""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

from regjax import data
from regjax.cli_common import Parser, add_data_flags, fail, user_errors
from regjax.config import TECHNIQUES, Config, preset

RESULTS, REPORT, CURVES, SUMMARY, SWEEP_PLOT = (
    "results.json", "report.md", "curves.png", "summary.png", "sweep.png")
OUTPUTS = (RESULTS, REPORT, CURVES, SUMMARY, SWEEP_PLOT)


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


def check_counts(args, parser) -> None:
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")


def run_report(args, parser, write) -> int:
    """Locks the output directory, loads the data and calls write(dataset); a problem the
    user can fix is one line on stderr and exit status 1."""
    from regjax.devices import use_cpu_devices

    use_cpu_devices()  # before JAX starts: the models are split between the cores
    errors = user_errors()
    lock = None
    try:
        from regjax import artifacts

        lock = artifacts.prepare_output_dir(args.output_dir, resume=False,
                                            overwrite=args.overwrite, needed_bytes=10_000_000,
                                            owned=OUTPUTS)
        dataset = data.load_dataset(args.dataset, args.data_dir, download=not args.no_download)
        return write(dataset)
    except errors as e:
        return fail(parser.prog, str(e))
    finally:
        if lock is not None:
            lock.release()


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
        histories = fit_batched(configs, train, val, dataset.test,
                                   on_epoch=lambda done, total: (ran.append(done),
                                                                 progress.advance(1, label)))
        # Early stopping may end the batch before its last epoch: count those as done.
        progress.advance(max(c.epochs for c in configs) - len(ran), label)
        seconds = time.perf_counter() - start
        for (name, config), history in zip(members, histories):
            groups.setdefault(name, []).append(history)
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
of the batched program that trained the setting's seeds together. The difference to baseline
comes with Welch's t-test: its 95% confidence interval, its p-value (the chance of a
difference at least this large between two settings that are equally good), and the seeds
per setting that would detect a difference of this size four times in five.
"""


def write_results(path: Path, artifacts, argv, script, dataset, groups, wall, **extra):
    artifacts.write_json(path, {
        "command": shlex.join(["python", script, *argv]), "dataset": dataset.name,
        "data_source": dataset.source, **extra,
        "groups": {name: {"wall_seconds": wall[name], "runs": runs}
                   for name, runs in groups.items()}})


# ----------------------------------------------------------------------------- compare

def report_parser(prog: str, description: str, epilog: str) -> Parser:
    """A parser for a command that writes a report (its epilogue keeps its line breaks)."""
    return Parser(prog=prog, description=description, epilog=epilog,
                  formatter_class=argparse.RawDescriptionHelpFormatter)


def compare_parser() -> argparse.ArgumentParser:
    p = report_parser(
        "compare.py", "Train techniques over several seeds (each technique's seeds in one "
        "compiled program) and write report.md, curves.png, summary.png and results.json.",
        "example:\n  python scripts/compare.py --techniques all --seeds 5 --dataset "
        "fashion_mnist --output-dir runs/compare")
    p.add_argument("--techniques", default="all", metavar="LIST",
                   help=f"comma-separated, or all: {', '.join(TECHNIQUES)} (default all)")
    common_flags(p, "runs/compare")
    return p


def compare_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = compare_parser()
    args = parser.parse_args(argv)
    check_counts(args, parser)
    names = list(TECHNIQUES) if args.techniques == "all" else args.techniques.split(",")
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    try:
        batches = [(name, [(name, preset(name, seed=seed, **overrides))
                           for seed in range(args.seeds)]) for name in names]
    except ValueError as e:
        parser.error(str(e))
    return run_report(args, parser, lambda dataset: write_comparison(args, argv, batches,
                                                                      dataset))


def write_comparison(args, argv, batches, dataset) -> int:
    from regjax import artifacts, report

    groups, wall = train_groups(batches, dataset, args.quiet)
    out = args.output_dir
    write_results(out / RESULTS, artifacts, argv, "scripts/compare.py", dataset, groups, wall,
                  seeds=args.seeds)
    rows, table = report.comparison_table(groups, wall, reference="baseline")
    report.plot_curves(groups, out / CURVES)
    report.plot_summary(rows, groups, out / SUMMARY)
    head = header("Regularization techniques compared", dataset, argv, "scripts/compare.py")
    body = (f"\n{args.seeds} seeds per technique, ranked by mean test accuracy.\n\n"
            + table + "\n\n" + COLUMNS)
    return write_report(out, head + body, table, groups, (CURVES, SUMMARY))


def write_report(out: Path, text: str, table: str, groups, images: tuple[str, ...]) -> int:
    """report.md: `text`, the runs that did not complete, then the plots; prints the table."""
    from regjax import artifacts

    text += "".join(f"\n- not completed: {f}" for f in failures(groups))
    text += "\n" + "\n\n".join(f"![{name.split('.')[0]}]({name})" for name in images) + "\n"
    artifacts.atomic_write(out / REPORT, lambda f: f.write(text.encode()))
    print(table)
    print(f"wrote {out}/{REPORT}, {', '.join(images)}, {RESULTS}")
    return 0
