#!/usr/bin/env python3
"""What a change to regjax's code must not move: every preset trained for a few epochs on a
few real rows at seed 0, its val_loss per epoch and its test metrics, written as JSON; given
a second file, the two compared (the largest relative val_loss difference per preset, the
test accuracy difference in points, and which presets are bitwise equal).

    python benchmarks/same_results.py --out before.json          # on the old code
    python benchmarks/same_results.py --out after.json --against before.json

Both runs on the same machine: another CPU's kernels round differently (docs/tests.md).
"""

from __future__ import annotations

import argparse
import json
import sys

import regjax


def run(techniques: list[str], epochs: int, rows: int) -> dict:
    dataset = regjax.load_dataset("fashion_mnist")
    results = {}
    for technique in techniques:
        config = regjax.preset(technique, epochs=epochs, train_size=rows, seed=0)
        train, validation = regjax.model_data(config, dataset)
        history, _ = regjax.fit(config, train, validation, dataset.test, log=lambda _: None)
        results[technique] = {k: history[k] for k in ("val_loss", "loss", "test_loss",
                                                      "test_accuracy")}
        print(f"{technique:16s} val_loss {history['val_loss']} test_accuracy "
              f"{history['test_accuracy']:.4f}", flush=True)
    return results


def compare(after: dict, before: dict) -> int:
    worst = 0.0
    print(f"{'technique':16s} {'val_loss rel':>12s} {'test acc pp':>11s}  bitwise")
    for technique, new in after.items():
        old = before.get(technique)
        if old is None:
            print(f"{technique:16s} (not in the earlier file)")
            continue
        relative = max(abs(a - b) / abs(b) for a, b in zip(new["val_loss"], old["val_loss"]))
        points = 100 * (new["test_accuracy"] - old["test_accuracy"])
        worst = max(worst, relative)
        print(f"{technique:16s} {relative:12.2e} {points:+11.2f}  {new == old}")
    print(f"# largest relative val_loss difference {worst:.2e}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--techniques", default=",".join(regjax.TECHNIQUES))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--out", required=True, help="write the results here (JSON)")
    p.add_argument("--against", help="an earlier file of this script to compare with")
    args = p.parse_args(argv)
    results = run(args.techniques.split(","), args.epochs, args.rows)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    if args.against:
        with open(args.against) as f:
            return compare(results, json.load(f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
