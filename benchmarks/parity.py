#!/usr/bin/env python3
"""Accuracy parity: each technique's final test accuracy (and epochs run, which matters for
early stopping) in regjax next to the notebook's own Keras code, on the same data with the
same settings, over several seeds: mean and spread, the difference with Welch's t-test
(p-value, 95% confidence interval), and a flag where regjax is more than 1 percentage point
below. Every run is its own process, regjax and the reference alternating.

The Keras reference reshuffles the training rows every epoch, as the notebook's unseeded
fit does (peers.reshuffled_batches), with the weights and dropout seeded per run.

Every finished run is kept in the runs file (benchmarks/parity.json unless --runs says
otherwise) as soon as it ends, one record per technique, seed and side, with the code it ran
(a digest of regjax's and the benchmarks' sources), the versions, the machine and the
commit. Started again, the script trains only the runs the file lacks, so a table can be
completed over several sittings; a run whose code, versions or machine differ from the
runs already in its row is refused unless --allow-mixed, and the table then says so.
(Over 250 lines on purpose: the runs file, its checks and the table are one record's life.)

    python benchmarks/parity.py --seeds 5                         # all 16 techniques
    python benchmarks/parity.py --techniques dropout,l2 --seeds 5
    python benchmarks/parity.py --seeds 5 --readme README.md      # also rewrite its table
    python benchmarks/parity.py --seeds 5 --dry-run --readme README.md  # train nothing
    python benchmarks/parity.py --reference keras-jax             # without TensorFlow
    python benchmarks/parity.py --smoke --runs /tmp/smoke.json    # a tiny check
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

from common import HERE, available, machine, run_worker, versions  # benchmarks/common.py

from regjax.files.atomic import atomic_write
from regjax.presets import TECHNIQUES
from regjax.reports.stats import versus

THRESHOLD = 0.01  # one percentage point
RUNS = HERE / "parity.json"
# What a run's figure depends on: regjax itself and the benchmarks' runners.
SOURCES = sorted((HERE.parent / "regjax").rglob("*.py")) + [
    HERE / name for name in ("peers.py", "common.py", "compare_frameworks.py")]
BEGIN, END = "<!-- parity table: begin -->", "<!-- parity table: end -->"
NAMES = {"keras-tensorflow": "Keras on TensorFlow", "keras-jax": "Keras on JAX"}
PROVENANCE = ("code", "versions", "machine")  # what may not differ within a row unsaid


def code_digest() -> str:
    digest = hashlib.sha256()
    for path in SOURCES:
        digest.update(path.relative_to(HERE.parent).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def commit() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE,
                          capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def setting(args) -> dict:
    """What makes two runs of a technique and seed the same run."""
    return {"dataset": args.dataset, "epochs": args.epochs, "rows": args.rows}


def same_run(run: dict, technique: str, framework: str, seed: int, where: dict) -> bool:
    return (run["technique"], run["framework"], run["seed"]) == (technique, framework, seed) \
        and all(run[k] == v for k, v in where.items())


class RunsFileError(Exception):
    """The runs file cannot be read as one this script wrote."""


def load_runs(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        runs = json.loads(path.read_text())["runs"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunsFileError(f"{path}: not a runs file of parity.py ({type(e).__name__}: {e}); "
                            "give another --runs, or move it away to start a new one") from None
    if not isinstance(runs, list):
        raise RunsFileError(f"{path}: its runs are not a list; give another --runs")
    return runs


def save_runs(path: Path, runs: list[dict]) -> None:
    atomic_write(path, lambda f: f.write(json.dumps({"runs": runs}, indent=1).encode()))


def missing(runs, techniques, frameworks, seeds, where) -> list[tuple[str, int, str]]:
    """The (technique, seed, framework) runs the file lacks, in the order they run."""
    return [(t, s, f) for t in techniques for s in range(seeds) for f in frameworks
            if not any(same_run(r, t, f, s, where) for r in runs)]


def conflicts(runs, todo, stamps, where) -> list[str]:
    """One line per row whose earlier runs came from other code, versions or a machine."""
    lines = []
    for technique, framework in dict.fromkeys((t, f) for t, _, f in todo):
        earlier = [r for r in runs if r["technique"] == technique and
                   r["framework"] == framework and all(r[k] == v for k, v in where.items())]
        fields = [k for k in PROVENANCE if any(r[k] != stamps[framework][k] for r in earlier)]
        if fields:
            lines.append(f"{technique} on {framework}: the runs already kept were made with "
                         f"other {', '.join(fields)}")
    return lines


def train(args, runs, todo, stamps, where) -> None:
    for technique, seed, framework in todo:
        result = run_worker(framework, technique, args, seed)
        if result is None:
            continue
        runs.append({"technique": technique, "framework": framework, "seed": seed, **where,
                     "test_accuracy": result["test_accuracy"],
                     "epochs_run": result["epochs_run"],
                     "seconds": round(sum(result["epoch_seconds"]), 1), **stamps[framework],
                     "finished": datetime.datetime.now().isoformat(timespec="seconds")})
        save_runs(args.runs, runs)  # after every run: a sitting stopped early keeps it
        print(f"# {technique} seed {seed} on {framework}: "
              f"{100 * result['test_accuracy']:.2f}%", flush=True)


def rows(runs, techniques, reference, seeds, where) -> list[dict]:
    table = []
    for technique in techniques:
        side = {f: [r for r in runs if r["technique"] == technique and r["framework"] == f
                    and r["seed"] < seeds and all(r[k] == v for k, v in where.items())]
                for f in ("regjax", reference)}
        ours, theirs = side["regjax"], side[reference]
        if not ours:
            continue
        row = {"technique": technique, "regjax": ours, "reference": theirs,
               "mixed": [k for k in PROVENANCE if len({r[k] for r in ours}) > 1
                         or len({r[k] for r in theirs}) > 1]}
        if theirs:
            test = versus([{**r, "status": "completed"} for r in ours],
                          [{**r, "status": "completed"} for r in theirs])
            row.update(test=test, flag=test["difference"] < -THRESHOLD)
        table.append(row)
    return table


def accuracy(runs) -> str:
    values = [100 * r["test_accuracy"] for r in runs]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}" if values else "-"


def cells(row) -> list[str]:
    """A row's figures as both tables show them."""
    epochs = lambda runs: f"{statistics.mean(r['epochs_run'] for r in runs):.1f}"  # noqa: E731
    test = row.get("test")
    pp = lambda x: f"{100 * x:+.2f}"  # noqa: E731
    ci = "-" if not test else pp(test["difference"]) if test["ci_low"] is None else \
        f"{pp(test['difference'])} [{pp(test['ci_low'])}, {pp(test['ci_high'])}]"
    p_value = "-" if not test or test["p_value"] is None else f"{test['p_value']:.3f}"
    notes = (["more than 1 pp below"] if row.get("flag") else []) + \
        [f"mixed {k}" for k in row["mixed"]]
    return [row["technique"], f"{len(row['regjax'])} / {len(row['reference'])}",
            accuracy(row["regjax"]), accuracy(row["reference"]), ci, p_value,
            epochs(row["regjax"]) + (f" / {epochs(row['reference'])}" if row["reference"] else ""),
            ", ".join(notes)]


def markdown(table, reference) -> str:
    head = ["technique", "seeds (regjax / Keras)", "regjax test acc %",
            f"{NAMES[reference]} test acc %",
            "difference (pp) [95% CI]", "p (Welch)", "epochs (regjax / Keras)", "note"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * 6 + "---|"]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in table]
    runs = [r for row in table for r in row["regjax"] + row["reference"]]
    if not runs:
        return "No runs kept yet."
    for field in ("machine", "versions", "commit"):
        lines.append(f"\n{field.capitalize()}: " + "; ".join(sorted({r[field] for r in runs})) +
                     ".")
    return "\n".join(lines)


def write_readme(path: Path, text: str) -> None:
    page = path.read_text()
    if BEGIN not in page or END not in page:
        raise SystemExit(f"parity.py: error: {path} has no '{BEGIN}' ... '{END}' block to "
                         "rewrite; add the two lines where the table goes")
    block = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    new = block.sub(lambda _: f"{BEGIN}\n{text}\n{END}", page)
    atomic_write(path, lambda f: f.write(new.encode()))


def parse(argv):
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
    p.add_argument("--runs", type=Path, default=RUNS,
                   help="the file of finished runs, read and extended (default "
                        "benchmarks/parity.json)")
    p.add_argument("--allow-mixed", action="store_true",
                   help="add runs beside kept ones of other code, versions or machine")
    p.add_argument("--dry-run", action="store_true", help="train nothing; show the table")
    p.add_argument("--readme", type=Path, help="rewrite the table between this file's "
                   f"'{BEGIN}' and '{END}' lines")
    args = p.parse_args(argv)
    if args.smoke:
        args.rows, args.epochs, args.seeds = args.rows or 600, 1, 2
    unknown = sorted(set(args.techniques.split(",")) - set(TECHNIQUES))
    if unknown:
        p.error(f"unknown technique {', '.join(unknown)}; choose from {', '.join(TECHNIQUES)}")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    techniques, where = args.techniques.split(","), setting(args)
    why = available(args.reference)
    if why:
        print(f"# skipping {args.reference}: {why}; showing regjax alone")
    frameworks = ["regjax"] + ([] if why else [args.reference])
    try:
        runs = load_runs(args.runs)
    except RunsFileError as e:
        print(f"parity.py: error: {e}", file=sys.stderr)
        return 2
    todo = missing(runs, techniques, frameworks, args.seeds, where)
    stamps = {f: {"code": code_digest(), "commit": commit(), "versions": versions([f]),
                  "machine": machine()} for f in frameworks}
    clashes = conflicts(runs, todo, stamps, where)
    if clashes and not args.allow_mixed:
        print("\n".join(f"parity.py: error: {line}" for line in clashes) + "\nparity.py: "
              "pass --allow-mixed to add to them (the table says so), or --runs NEW.json to "
              "start a table of its own", file=sys.stderr)
        return 2
    print(f"# {args.seeds} seeds; reference: the notebook's code on {args.reference}; "
          f"{len(todo)} runs to train{' (a dry run: none trained)' if args.dry_run else ''}, "
          f"the rest kept in {args.runs}")
    if not args.dry_run:
        train(args, runs, todo, stamps, where)
    table = rows(runs, techniques, args.reference, args.seeds, where)
    text = markdown(table, args.reference)
    print(text)
    if args.readme:
        write_readme(args.readme, text)
    flagged = [row["technique"] for row in table if row.get("flag")]
    if flagged:
        print(f"# regjax is more than 1 pp below the reference on: {', '.join(flagged)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
