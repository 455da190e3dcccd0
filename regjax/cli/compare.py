"""`scripts/compare.py`: techniques over many seeds, each technique's seeds trained at once
(regjax.train.batched), then report.md, plots and results.json; and the pieces regjax.cli.sweep
shares with it."""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from pathlib import Path

from regjax import data
from regjax.cli.common import (
    Parser,
    StopOnSignal,
    add_data_flags,
    directory,
    fail,
    given_twice,
    regime_overrides,
    resume_command,
    stopped_message,
    user_errors,
)
from regjax.config import NOTEBOOK, TECHNIQUES, Config, preset

RESULTS, REPORT, CURVES, SUMMARY, SWEEP_PLOT, CHECKPOINTS = (
    "results.json", "report.md", "curves.png", "summary.png", "sweep.png", "checkpoints")
OUTPUTS = (RESULTS, REPORT, CURVES, SUMMARY, SWEEP_PLOT, CHECKPOINTS)
KEEP = 1  # checkpoints kept per batch (plus the best): a batch resumes from its newest


def common_flags(p: argparse.ArgumentParser, default_output: str) -> None:
    add_data_flags(p)
    p.add_argument("--seeds", type=int, default=5, metavar="N",
                   help="seeds per setting, 0..N-1 (default 5)")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="override every preset's epochs (e.g. 2 for a quick look)")
    p.add_argument("--output-dir", type=directory, default=Path(default_output), metavar="DIR",
                   help=f"where {', '.join(OUTPUTS[:-1])} go (default {default_output}); "
                        "must be empty or absent unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier report in --output-dir (deletes only its files)")
    p.add_argument("--resume", action="store_true",
                   help="continue a run that was stopped (Ctrl-C, SIGTERM, a crash) from its "
                        "checkpoints in --output-dir; give the same flags")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--shard", metavar="I/N",
                   help="train only share I of N of the models (0 <= I < N; models I, I+N, "
                        "I+2N, ...) and write their results.json, for running a command on "
                        "several machines; then --merge the shares' directories")
    p.add_argument("--merge", nargs="+", type=directory, metavar="DIR",
                   help="write the report from the results.json of every share of one "
                        "command (trains nothing; the other flags come from the shares)")
    p.add_argument("--distributed", action="store_true",
                   help="one process of a run over several processes or hosts, joined by "
                        "jax.distributed (SLURM, Open MPI and Kubernetes are detected; else "
                        "give --coordinator, --num-processes, --process-id): each trains its "
                        "share, process 0 writes the report")
    p.add_argument("--coordinator", metavar="HOST:PORT",
                   help="process 0's address (implies --distributed; process 0 listens there)")
    p.add_argument("--num-processes", type=int, metavar="N", help="processes in all")
    p.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="seconds to wait for the other processes (default 120)")


def check_counts(args, parser) -> None:
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    args.distributed = args.distributed or args.coordinator is not None
    if sum(map(bool, (args.shard is not None, args.merge, args.distributed))) > 1:
        parser.error("--shard, --merge and --distributed exclude each other: give one")
    if args.resume and args.merge:
        parser.error("--resume continues a run that trains; --merge trains nothing")
    explicit = (args.coordinator, args.num_processes, args.process_id)
    if any(v is not None for v in explicit) and None in explicit:
        parser.error("--coordinator, --num-processes and --process-id go together")
    if args.num_processes is not None and not 0 <= args.process_id < args.num_processes:
        parser.error(f"--process-id must be in 0..{args.num_processes - 1}, got "
                     f"{args.process_id}")
    if args.shard is not None:
        from regjax.experiment.shards import parse_shard

        try:
            args.shard = parse_shard(args.shard)
        except ValueError as e:
            parser.error(str(e))


def run_report(args, argv: list[str], parser, write, script: str, report, configs=()) -> int:
    """Locks the output directory (checking room for the checkpoints of `configs`); with
    --merge, reports from the shares' results (report(results, how)); otherwise loads the
    data and calls write(dataset). A share resumed after it finished is not run again. A
    problem the user can fix is one line on stderr and exit status 1."""
    from regjax.train.devices import use_cpu_devices

    use_cpu_devices()  # before JAX starts: the models are split between the cores
    errors = user_errors()
    lock = None
    try:
        from regjax.experiment import distributed, shards
        from regjax.files import artifacts

        if args.resume and args.shard is not None and shards.finished_share(
                args.output_dir / RESULTS, shards.share_command(script, argv), args.shard):
            print(f"share {args.shard[0]}/{args.shard[1]} is already finished: "
                  f"{args.output_dir / RESULTS}; nothing to resume")
            return 0
        if args.distributed:  # this process trains its share; process 0 reports
            args.shard = distributed.initialize(args.coordinator, args.num_processes,
                                                args.process_id, args.timeout)
        merged = None
        if args.merge:  # every share read and checked before the output directory is touched
            if any(Path(d).resolve() == args.output_dir.resolve() for d in args.merge):
                raise shards.MergeError(f"--output-dir {args.output_dir} is one of the shares "
                                        "being merged: write the report to another directory")
            merged = shards.merge(args.merge, script)
        if not args.distributed or args.shard[0] == 0:
            # Every batch's checkpoints stay until the report is written (a merge trains
            # nothing and writes no checkpoint).
            needed = 10_000_000 + (0 if args.merge else
                                   sum(artifacts.run_bytes(c, KEEP) for c in configs))
            lock = artifacts.prepare_output_dir(args.output_dir, resume=args.resume,
                                                overwrite=args.overwrite,
                                                needed_bytes=needed, owned=OUTPUTS)
        if args.distributed:  # no process writes its checkpoints before the directory is
            distributed.barrier("output directory prepared")  # checked (or cleared)
        if merged is not None:
            artifacts.write_json(args.output_dir / RESULTS, merged)
            return report(merged, shards.describe(merged["code"], len(args.merge)))
        dataset = data.load_dataset(args.dataset, args.data_dir, download=not args.no_download)
        return write(dataset)
    except (*errors, shards.MergeError, distributed.DistributedError) as e:
        return fail(parser.prog, str(e))
    finally:
        if lock is not None:
            lock.release()


def train_groups(batches: list[tuple[str, list[tuple[str, Config]]]], dataset: data.Dataset,
                 quiet: bool, checkpoints: Path | None = None, resume: bool = False,
                 should_stop=lambda: False, ensemble: bool = False):
    """Trains each batch (label, [(group name, config), ...]) as one vmapped program;
    returns the runs of each group, each group's batch wall time, and whether a stop was
    asked (the batches after it are not started). With `checkpoints`, batch k is
    checkpointed after every epoch in checkpoints/batch-k, and `resume` continues each batch
    from its checkpoints (one that finished is only restored and evaluated)."""
    from regjax.experiment.progress import Progress
    from regjax.files.checkpoint import Checkpoints
    from regjax.train.batched import fit_batched

    progress = Progress(sum(max(c.epochs for _, c in b) for _, b in batches),
                        enabled=None if not quiet else False)
    groups: dict[str, list[dict]] = {}
    wall: dict[str, float] = {}
    interrupted = False
    for k, (label, members) in enumerate(batches):
        configs = [c for _, c in members]
        train, val = map(list, zip(*(data.model_data(c, dataset) for c in configs)))
        saved = None if checkpoints is None else Checkpoints(checkpoints / f"batch-{k}",
                                                             keep=KEEP)
        start, before = time.perf_counter(), progress.done  # the batches before this one
        try:
            histories = fit_batched(
                configs, train, val, dataset.test, checkpoints=saved,
                resume=resume and saved is not None and bool(saved.all_epochs()),
                should_stop=should_stop, ensemble=ensemble,
                on_epoch=lambda done, total: progress.advance(before + done - progress.done,
                                                              label))
        finally:
            if saved is not None:
                saved.close()
        # Early stopping may end the batch before its last epoch: count those as done.
        if not any(h["status"] == "interrupted" for h in histories):
            progress.advance(before + max(c.epochs for c in configs) - progress.done, label)
        seconds = time.perf_counter() - start
        for (name, config), history in zip(members, histories):
            groups.setdefault(name, []).append(history)
            wall[name] = seconds
        if any(h["status"] == "interrupted" for h in histories):
            interrupted = True
            break
    progress.close()
    return groups, wall, interrupted


def failures(groups: dict[str, list[dict]]) -> list[str]:
    return [f"{name} seed {run['config']['seed']}: {run['status']}"
            for name, runs in groups.items() for run in runs if run["status"] != "completed"]


def this_machine() -> str:
    import jax

    return (f"jax {jax.__version__}, {jax.devices()[0].device_kind} ({platform.machine()}, "
            f"{jax.local_device_count()} device(s))")


def header(title: str, results: dict, how: str) -> str:
    """The report's title and where it came from (`how`: the machine, or the shares)."""
    return (f"# {title}\n\nProduced by `{results['command']}` on {results['dataset']} "
            f"({results['data_source']}), {how}.\n")


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


def train_and_report(args, argv: list[str], script: str, batches, dataset: data.Dataset,
                     report, **extra) -> int:
    """Trains `batches` (or --shard's share of them), writes results.json, then (unless a
    share) report(results, how)."""
    from regjax.experiment import distributed, shards
    from regjax.files import artifacts

    mine, numbers = shards.take(batches, args.shard)
    data.check_regime([c for _, members in batches for _, c in members], dataset)
    out = args.output_dir
    prog = Path(script).name
    # Every process of a distributed run keeps its own checkpoints (they may be on its own
    # disk); process 0 alone writes the report.
    checkpoints = out / CHECKPOINTS
    if args.distributed:
        checkpoints = checkpoints / f"process-{args.shard[0]}"
    with StopOnSignal(prog) as stop:
        groups, wall, interrupted = train_groups(mine, dataset, args.quiet, checkpoints,
                                                 args.resume, stop,
                                                 getattr(args, "ensemble", False))
    if interrupted:
        print(stopped_message(prog, checkpoints, resume_command(script, argv)), file=sys.stderr)
        return 128 + stop.signum
    # The command that gives these results: where they went and how they were shown left out.
    results = {"command": shards.share_command(script, argv), "dataset": dataset.name,
               "data_source": dataset.source, "code": shards.code_versions(), **extra,
               "groups": {name: {"wall_seconds": wall[name], "runs": runs}
                          for name, runs in groups.items()}}
    if args.shard is None:  # written, then the checkpoints go: a crash between loses nothing
        artifacts.write_json(out / RESULTS, results)
        code = report(results, this_machine())
        shutil.rmtree(checkpoints, ignore_errors=True)
        return code
    numbered = iter(numbers)
    models: dict[str, list[int]] = {}
    for _, members in mine:
        for name, _ in members:
            models.setdefault(name, []).append(next(numbered))
    share = {**results, "shard": list(args.shard), "models": models}
    index, count = args.shard
    if args.distributed:
        from regjax.experiment.distributed import gather_json

        everyone = gather_json(share)  # a collective: every process takes part
        if index:
            # Its share has reached process 0, which holds it in memory until the report is
            # written; were process 0 to fail before that, this process's checkpoints
            # resume it. It leaves nothing else behind (the directories it made, if empty).
            distributed.barrier("report written")
            shutil.rmtree(checkpoints, ignore_errors=True)
            for directory in (out / CHECKPOINTS, out):
                try:
                    directory.rmdir()
                except OSError:  # not empty: process 0's, on a shared file system
                    break
            print(f"process {index}/{count}: trained {len(numbers)} models; process 0 "
                  "writes the report")
            return 0
        results = shards.merge_results(
            [(f"process {i}", r) for i, r in enumerate(everyone)], script)
        artifacts.write_json(out / RESULTS, results)
        code = report(results, f"{this_machine()} per process, {count} processes")
        distributed.barrier("report written")  # then every process deletes its checkpoints
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        return code
    artifacts.write_json(out / RESULTS, share)  # written, then the checkpoints go
    shutil.rmtree(checkpoints, ignore_errors=True)
    print(f"wrote share {index}/{count} ({len(numbers)} models) to {out / RESULTS}; when "
          f"every share is done: python {script} --merge DIR1 DIR2 ... --output-dir DIR")
    return 0


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
    p.add_argument("--ensemble", action="store_true",
                   help="also report each technique's seeds as one ensemble: their class "
                        "probabilities on the test split averaged (free: the seeds are "
                        "trained together)")
    common_flags(p, "runs/compare")
    return p


def compare_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = compare_parser()
    args = parser.parse_args(argv)
    check_counts(args, parser)
    if args.ensemble and (args.shard is not None or args.distributed):
        parser.error("--ensemble averages all of a technique's seeds, which --shard and "
                     "--distributed split between processes: run it in one process")
    names = list(TECHNIQUES) if args.techniques == "all" else args.techniques.split(",")
    if given_twice(names):
        parser.error(f"--techniques: {', '.join(given_twice(names))} given more than once")
    overrides = {**regime_overrides(args), **({} if args.epochs is None else
                                              {"epochs": args.epochs})}
    try:
        batches = [(name, [(name, preset(name, seed=seed, **overrides))
                           for seed in range(args.seeds)]) for name in names]
    except ValueError as e:
        parser.error(str(e))
    script = "scripts/compare.py"
    report = lambda results, how: write_comparison(args.output_dir, results, how)  # noqa: E731
    return run_report(args, argv, parser, lambda dataset: train_and_report(
        args, argv, script, batches, dataset, report, seeds=args.seeds), script, report,
        [c for _, members in batches for _, c in members])


def write_comparison(out: Path, results: dict, how: str) -> int:
    from regjax.reports import report

    groups = {name: group["runs"] for name, group in results["groups"].items()}
    wall = {name: group["wall_seconds"] for name, group in results["groups"].items()}
    # Part 1 (the notebook's techniques) and Part 2 ranked apart, each against the baseline.
    parts = [(title, {name: runs for name, runs in groups.items()
                      if name in members or name == "baseline"})
             for title, members in (("Part 1: the notebook's techniques", NOTEBOOK),
                                    ("Part 2: the regularizers a reader meets next",
                                     [n for n in groups if n not in NOTEBOOK]))]
    parts = [(title, part) for title, part in parts if set(part) - {"baseline"}] or \
        [("", groups)]
    tables = [(title, report.comparison_table(part, wall, reference="baseline")[1])
              for title, part in parts]
    rows, _ = report.comparison_table(groups, wall, reference="baseline")
    report.plot_curves(groups, out / CURVES)
    report.plot_summary(rows, groups, out / SUMMARY)
    head = header("Regularization techniques compared", results, how)
    text = "\n\n".join(f"## {title}\n\n{table}" if len(tables) > 1 else table
                       for title, table in tables)
    body = (f"\n{results['seeds']} seeds per technique{regime(results)}, ranked by mean test "
            f"accuracy.\n\n" + text + "\n\n" + COLUMNS)
    return write_report(out, head + body, text, groups, (CURVES, SUMMARY))


def regime(results: dict) -> str:
    """The data regime of a comparison's runs, as words (empty for the full, clean data)."""
    config = next(r["config"] for g in results["groups"].values() for r in g["runs"])
    words = []
    if config.get("train_size"):
        words.append(f"each on a random {config['train_size']:,} training rows of its seed "
                     f"(before the validation split)")
    if config.get("label_noise"):
        words.append(f"{config['label_noise']:g} of the training labels replaced by a random "
                     "other class")
    return "" if not words else ", " + " and ".join(words)


def write_report(out: Path, text: str, table: str, groups, images: tuple[str, ...]) -> int:
    """report.md: `text`, the runs that did not complete, then the plots; prints the table."""
    from regjax.files import artifacts

    text += "".join(f"\n- not completed: {f}" for f in failures(groups))
    text += "\n" + "\n\n".join(f"![{name.split('.')[0]}]({name})" for name in images) + "\n"
    artifacts.atomic_write(out / REPORT, lambda f: f.write(text.encode()))
    print(table)
    print(f"wrote {out}/{REPORT}, {', '.join(images)}, {RESULTS}")
    return 0
