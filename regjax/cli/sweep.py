"""`scripts/sweep.py`: one technique over a range of one knob's values and several seeds,
all trained at once in one program; report test accuracy and generalization gap against the
value."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from regjax.cli.common import given_twice, regime_overrides
from regjax.cli.compare import (
    SWEEP_PLOT,
    check_counts,
    common_flags,
    header,
    report_parser,
    run_report,
    train_and_report,
    write_report,
)
from regjax.config import TECHNIQUES, Config, preset

# What `sweep.py --technique T` varies unless --knob says otherwise.
DEFAULT_KNOB = {"l1": "l1", "l2": "l2", "dropout": "dropout",
                "label_smoothing": "label_smoothing", "augmentation": "augment_strength",
                "weight_decay": "weight_decay", "max_norm": "max_norm",
                "gaussian_noise": "gaussian_noise", "spatial_dropout": "spatial_dropout",
                "mixup": "mixup", "cutmix": "cutmix", "random_erasing": "random_erasing",
                "weight_ema": "ema"}
KNOBS = ("l1", "l2", "dropout", "label_smoothing", "learning_rate", "augment_strength",
         "weight_decay", "max_norm", "gaussian_noise", "spatial_dropout", "mixup", "cutmix",
         "random_erasing", "ema", "train_size", "label_noise")
RANGES = ("rotation_range", "shift_range", "shear_range", "zoom_range")


def with_overrides(config: Config, **overrides) -> Config:
    return dataclasses.replace(config, **overrides).validate()


def strength(config: Config, factor: float) -> Config:
    """The augmentation ranges of `config` scaled by `factor` (0: no augmentation)."""
    return with_overrides(config, **{r: getattr(config, r) * factor for r in RANGES})


def value_text(value: float) -> str:
    """A knob's value as short as %g writes it where that is exact (0.001), else in full
    (0.0010000001), so that no two values read the same."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def group_name(knob: str, value: float) -> str:
    """The name of a value's group in results.json: `knob=value` (value_text)."""
    return f"{knob}={value_text(value)}"


def sweep_parser() -> argparse.ArgumentParser:
    p = report_parser(
        "sweep.py", "Train one technique over a range of one knob's values and several "
        "seeds, all at once in one program; report test accuracy and generalization gap "
        "against the value.",
        "knobs: l1, l2, dropout, label_smoothing, learning_rate, weight_decay, max_norm, "
        "gaussian_noise, spatial_dropout, mixup, cutmix, random_erasing, ema, "
        "augment_strength (scales the preset's rotation, shift, shear and zoom ranges; "
        "1 = the notebook's), and the data regime's train_size (one program per value: "
        "models trained together share their number of rows) and label_noise\n\n"
        "examples:\n  python scripts/sweep.py --technique l2 --values 0,1e-5,1e-4,1e-3,1e-2 "
        "--seeds 3\n  python scripts/sweep.py --technique dropout --knob label_noise "
        "--values 0,0.2,0.4 --train-size 2000")
    p.add_argument("--technique", metavar="NAME",
                   help=f"preset to start from: {', '.join(TECHNIQUES)}")
    p.add_argument("--knob", choices=KNOBS,
                   help="what to vary (default: the technique's own knob, e.g. l2 for l2)")
    p.add_argument("--values", metavar="LIST",
                   help="comma-separated values of the knob, e.g. 0,1e-4,1e-3")
    common_flags(p, "runs/sweep")
    p.set_defaults(seeds=3)
    return p


def sweep_members(args, parser) -> tuple[str, list[float], list[tuple[str, Config]]]:
    """(knob, values, [(group name, config)] for every value and seed); exits on bad flags."""
    knob = args.knob or DEFAULT_KNOB.get(args.technique)
    if knob is None:
        parser.error(f"technique {args.technique!r} has no knob of its own; choose one with "
                     f"--knob ({', '.join(KNOBS)})")
    try:
        values = [float(v) for v in args.values.split(",")]
    except ValueError:
        parser.error(f"--values: expected comma-separated numbers, got {args.values!r}")
    if given_twice(values):
        parser.error(f"--values: {', '.join(map(repr, given_twice(values)))} given more than "
                     "once")
    if knob == "train_size":
        if any(v != int(v) for v in values):
            parser.error(f"--values: train_size takes whole numbers of rows, got {args.values}")
        values = [int(v) for v in values]
    overrides = {**regime_overrides(args), **({} if args.epochs is None else
                                              {"epochs": args.epochs})}
    try:
        base = preset(args.technique, **overrides)
        if knob == "augment_strength" and not base.augment:
            raise ValueError(f"augment_strength needs augmentation; {args.technique!r} has "
                             "none (use --technique augmentation)")
        members = [(group_name(knob, v), with_overrides(
            strength(base, v) if knob == "augment_strength" else
            with_overrides(base, **{knob: v}), seed=seed))
            for v in values for seed in range(args.seeds)]
    except ValueError as e:
        parser.error(str(e))
    return knob, values, members


def sweep_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = sweep_parser()
    args = parser.parse_args(argv)
    check_counts(args, parser)
    script = "scripts/sweep.py"
    report = lambda results, how: write_sweep(args.output_dir, results, how)  # noqa: E731
    if args.merge:  # the technique, knob and values come from the shares
        return run_report(args, argv, parser, None, script, report)
    if args.technique is None or args.values is None:
        parser.error("--technique and --values are required (unless --merge)")
    knob, values, members = sweep_members(args, parser)
    label = f"{args.technique}: {knob} in {args.values}"
    batches = [(label, members)]
    if knob == "train_size":  # models trained together share their number of rows
        batches = [(f"{args.technique}: {name}", [m for m in members if m[0] == name])
                   for name in dict.fromkeys(name for name, _ in members)]
    return run_report(args, argv, parser, lambda dataset: train_and_report(
        args, argv, script, batches, dataset, report, technique=args.technique,
        knob=knob, values=values, seeds=args.seeds, programs=len(batches)), script, report,
        [c for _, c in members])


def write_sweep(out: Path, results: dict, how: str) -> int:
    from regjax.reports import report

    knob, values, seeds = results["knob"], results["values"], results["seeds"]
    groups = {name: group["runs"] for name, group in results["groups"].items()}
    rows = [{"value": v, **(report.group_stats(groups.get(group_name(knob, v), [])) or {})}
            for v in values]
    report.plot_sweep(knob, rows, out / SWEEP_PLOT)
    table = report.markdown_table(
        [knob, "test acc % (mean ± std)", "min–max", "gap % (train − val)", "epochs"],
        [[value_text(r["value"]),
          f"{report.pct(r['test_accuracy_mean'])} ± {report.pct(r['test_accuracy_std'])}",
          f"{report.pct(r['test_accuracy_min'])}–{report.pct(r['test_accuracy_max'])}",
          f"{report.pct(r['gap_mean'])} ± {report.pct(r['gap_std'])}",
          f"{r['epochs_mean']:.1f}"] if "runs" in r else
         [value_text(r["value"]), "no run completed", "—", "—", "—"] for r in rows])
    walls = [group["wall_seconds"] for group in results["groups"].values()]
    models = sum(len(runs) for runs in groups.values())
    programs = results.get("programs", 1)
    how_trained = (f"together in one program in {max(walls):.0f} s" if programs == 1 else
                   f"in {programs} programs, one per value, in {sum(walls):.0f} s")
    text = (header(f"Sweep of {knob} for {results['technique']}", results, how)
            + f"\n{len(values)} values x {seeds} seeds = {models} models, trained "
              f"{how_trained}.\n\n" + table + "\n")
    return write_report(out, text, table, groups, (SWEEP_PLOT,))
