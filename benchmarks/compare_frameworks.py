#!/usr/bin/env python3
"""regjax side by side with the notebook's Keras code (Keras 3 on TensorFlow, the original,
and on JAX) and idiomatic PyTorch: the same techniques, data, architecture, batch size,
optimizer settings and epochs; every run in its own process, the frameworks alternating
(A B C D A B C D ...) so a drift of the machine's speed hits all of them.

Reports per technique and framework: the median epoch time after the first epoch (training
plus validation) and the training steps/s it gives, the first epoch (or regjax's
compilation) separately, peak memory (max RSS of the process), and regjax's speed-up.

    pip install -e '.[bench]'        # the peers: tensorflow-cpu, keras, torch (CPU build)
    python benchmarks/compare_frameworks.py                          # the full table
    python benchmarks/compare_frameworks.py --techniques baseline --epochs 2 --repeats 1
    python benchmarks/compare_frameworks.py --smoke                  # a tiny check

A peer that is not installed is skipped with a one-line notice.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
from pathlib import Path

from common import available, load, machine, run_worker, versions  # benchmarks/common.py

DEFAULT_TECHNIQUES = "baseline,l2,dropout,batchnorm,label_smoothing,augmentation"
FRAMEWORKS = ("regjax", "keras-tensorflow", "keras-jax", "pytorch")


def worker(args) -> int:
    """Runs one framework on one technique in this process; writes its result as JSON."""
    import peers

    dataset = load(args.dataset, args.data_dir, args.rows)
    result = peers.RUNNERS[args.worker](args.technique, dataset, args.epochs, args.seed)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    # The kernel's share of the CPU time: page faults and thread wake-ups show up here.
    result["sys_share"] = usage.ru_stime / max(usage.ru_utime + usage.ru_stime, 1e-9)
    Path(args.out).write_text(json.dumps(result))
    return 0


def summary(results: list[dict]) -> dict:
    """Medians over repeats of: epoch time after the first epoch, first-epoch time, memory;
    and the best run's steps/s (its median epoch after the first)."""
    later = [statistics.median(r["epoch_seconds"][1:] or r["epoch_seconds"]) for r in results]
    epoch = statistics.median(later)
    return {"steps_per_epoch": results[0]["steps_per_epoch"], "epoch_seconds": epoch,
            "steps_per_second": results[0]["steps_per_epoch"] / epoch,
            "best_steps_per_second": results[0]["steps_per_epoch"] / min(later),
            "sys_share": statistics.median(r.get("sys_share", 0.0) for r in results),
            "first_seconds": statistics.median(r["first_call_seconds"] for r in results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "test_accuracy": statistics.median(r["test_accuracy"] for r in results),
            "runs": len(results)}


def main(argv=None) -> int:  # long: the flags, then one table's rows, read top to bottom
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--techniques", default=DEFAULT_TECHNIQUES,
                   help=f"comma-separated (default {DEFAULT_TECHNIQUES})")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                   help=f"comma-separated subset of {', '.join(FRAMEWORKS)}")
    p.add_argument("--epochs", type=int,
                   help="epochs per run; the first is reported separately (default 3; a "
                        "worker without it trains the notebook's epochs)")
    p.add_argument("--repeats", type=int, default=2, help="alternating rounds (default 2)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir")
    p.add_argument("--rows", type=int, help="train on the first ROWS rows only")
    p.add_argument("--smoke", action="store_true",
                   help="a tiny check: 600 rows, 2 epochs, 1 round")
    p.add_argument("--json", help="also write the table to this file")
    p.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    p.add_argument("--technique", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    args.epochs = args.epochs or 3
    if args.smoke:
        args.rows, args.epochs, args.repeats = args.rows or 600, 2, 1

    frameworks = []
    for framework in args.frameworks.split(","):
        why = available(framework)
        if why:
            print(f"# skipping {framework}: {why}")
        else:
            frameworks.append(framework)
    print(f"# {machine()}; {versions(frameworks)}; {args.epochs} epochs per run, "
          f"{args.repeats} alternating round(s); dataset {args.dataset}"
          + (f", first {args.rows} rows" if args.rows else ""))
    print(f"{'technique':16s} {'framework':17s} {'steps/ep':>8s} {'epoch s':>8s} "
          f"{'steps/s':>8s} {'best':>8s} {'first s':>8s} {'peak MB':>8s} {'sys %':>6s} "
          f"{'test acc':>8s} {'regjax x':>8s} {'x, best':>8s}")
    table = []
    for technique in args.techniques.split(","):
        runs = {f: [] for f in frameworks}
        for _ in range(args.repeats):
            for framework in frameworks:
                result = run_worker(framework, technique, args)
                if result is not None:
                    runs[framework].append(result)
        rows = {f: summary(r) for f, r in runs.items() if r}
        for framework, row in rows.items():
            ratio = best = None
            if "regjax" in rows:  # regjax's speed-up: medians, and best run against best run
                ratio = rows["regjax"]["steps_per_second"] / row["steps_per_second"]
                best = rows["regjax"]["best_steps_per_second"] / row["best_steps_per_second"]
            row.update(technique=technique, framework=framework, regjax_speedup=ratio,
                       regjax_speedup_best=best)
            table.append(row)
            print(f"{technique:16s} {framework:17s} {row['steps_per_epoch']:8d} "
                  f"{row['epoch_seconds']:8.2f} {row['steps_per_second']:8.0f} "
                  f"{row['best_steps_per_second']:8.0f} "
                  f"{row['first_seconds']:8.2f} {row['peak_rss_mb']:8.0f} "
                  f"{row['sys_share']:6.0%} {row['test_accuracy']:8.4f} "
                  f"{'' if ratio is None else f'{ratio:7.2f}x':>8s} "
                  f"{'' if best is None else f'{best:7.2f}x':>8s}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": machine(), "versions": versions(frameworks),
                                               "rows": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
