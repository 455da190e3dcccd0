#!/usr/bin/env python3
"""Accuracy parity: each technique's final test accuracy (and epochs run, which matters for
early stopping) in regjax next to the notebook's own Keras code, on the same data with the
same settings, over several seeds: mean and spread, the difference with Welch's t-test
(p-value, 95% confidence interval), and a flag where regjax is more than 1 percentage point
below. Every run is its own process, regjax and the reference alternating.

The Keras reference reshuffles the training rows every epoch, as the notebook's unseeded
fit does (peers.reshuffled_batches), with the weights and dropout seeded per run.

    python benchmarks/parity.py --seeds 5                         # 8 techniques x 5 seeds
    python benchmarks/parity.py --techniques dropout,l2 --seeds 5
    python benchmarks/parity.py --reference keras-jax             # without TensorFlow
    python benchmarks/parity.py --smoke                           # a tiny check
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from common import available, run_worker  # benchmarks/common.py

from regjax.files.atomic import atomic_write
from regjax.presets import TECHNIQUES
from regjax.reports.stats import versus

THRESHOLD = 0.01  # one percentage point


def stats(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--techniques", default=",".join(TECHNIQUES), help="default: all of them")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--reference", default="keras-tensorflow",
                   choices=("keras-tensorflow", "keras-jax"),
                   help="the original code's backend (default keras-tensorflow, the notebook's)")
    p.add_argument("--epochs", type=int, help="override the notebook's epochs (for a quick look)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir")
    p.add_argument("--rows", type=int, help="train on the first ROWS rows only")
    p.add_argument("--smoke", action="store_true", help="600 rows, 1 epoch, 2 seeds")
    p.add_argument("--json", help="also write the table to this file")
    args = p.parse_args(argv)
    if args.smoke:
        args.rows, args.epochs, args.seeds = args.rows or 600, 1, 2
    why = available(args.reference)
    if why:
        print(f"# skipping {args.reference}: {why}; showing regjax alone")
    print(f"# {args.seeds} seeds; reference: the notebook's code on {args.reference}; "
          f"dataset {args.dataset}" + (f", first {args.rows} rows" if args.rows else ""))
    print(f"{'technique':16s} {'regjax acc':>15s} {'reference acc':>15s} {'diff pp':>8s} "
          f"{'95% CI pp':>15s} {'p':>6s} {'epochs':>11s}  flag")
    table, flagged = [], []
    for technique in args.techniques.split(","):
        ours, theirs = [], []
        for seed in range(args.seeds):
            ours.append(run_worker("regjax", technique, args, seed))
            if not why:
                theirs.append(run_worker(args.reference, technique, args, seed))
        ours, theirs = [r for r in ours if r], [r for r in theirs if r]
        if not ours:
            continue
        row = {"technique": technique,
               "regjax": [r["test_accuracy"] for r in ours],
               "regjax_epochs": [r["epochs_run"] for r in ours],
               "reference": [r["test_accuracy"] for r in theirs],
               "reference_epochs": [r["epochs_run"] for r in theirs]}
        mean, std = stats(row["regjax"])
        line = f"{technique:16s} {100 * mean:7.2f} ± {100 * std:4.2f}"
        epochs = f"{statistics.mean(row['regjax_epochs']):.1f}"
        if theirs:
            ref_mean, ref_std = stats(row["reference"])
            test = versus(*([{"status": "completed", "test_accuracy": a} for a in row[side]]
                            for side in ("regjax", "reference")))
            row.update(difference=test["difference"], p_value=test["p_value"],
                       ci=[test["ci_low"], test["ci_high"]],
                       flag=test["difference"] < -THRESHOLD)
            epochs += f"/{statistics.mean(row['reference_epochs']):.1f}"
            ci = "-" if test["ci_low"] is None else \
                f"[{100 * test['ci_low']:+.2f}, {100 * test['ci_high']:+.2f}]"
            p_value = "-" if test["p_value"] is None else f"{test['p_value']:.3f}"
            line += (f" {100 * ref_mean:7.2f} ± {100 * ref_std:4.2f} "
                     f"{100 * row['difference']:+8.2f} {ci:>15s} {p_value:>6s} {epochs:>11s}  "
                     f"{'BELOW by more than 1 pp' if row['flag'] else 'ok'}")
            if row["flag"]:
                flagged.append(technique)
        else:
            line += f" {'-':>15s} {'-':>8s} {'-':>15s} {'-':>6s} {epochs:>11s}"
        table.append(row)
        print(line, flush=True)
        if args.json:  # after every technique: a long run stopped early keeps what it did
            atomic_write(args.json, lambda f: f.write(json.dumps(table, indent=2).encode()))
    if flagged:
        print(f"# regjax is more than 1 pp below the reference on: {', '.join(flagged)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
