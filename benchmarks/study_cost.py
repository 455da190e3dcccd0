#!/usr/bin/env python3
"""What a study saves: the same models trained three ways, each a whole command as a user
runs it (process start, data, compilation and training), measured side by side in one run:

- one `study.py` (every structure and row count one compiled program),
- `compare.py` once per regime (each technique's seeds one program, regime after regime),
- `train.py` once per model (one after another).

It prints the wall seconds of each way, their cost per model and the ratios to the study.
Each way writes to a temporary directory that is removed afterwards.

    python benchmarks/study_cost.py                 # 3 techniques x 4 regimes x 2 seeds
    python benchmarks/study_cost.py --techniques baseline,dropout --train-size 500,0 \\
        --label-noise 0,0.4 --seeds 3 --epochs 20
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import HERE, device  # benchmarks/common.py

SCRIPTS = HERE.parent / "scripts"


def timed(argv: list[str]) -> float:
    """Wall seconds of one command; a failing command ends the benchmark with its error."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"study_cost.py: error: {' '.join(argv)} failed:\n{done.stderr.strip()}")
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--techniques", default="baseline,dropout,l2")
    p.add_argument("--train-size", default="2000,0", help="rows per regime (0: all)")
    p.add_argument("--label-noise", default="0,0.4")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--dataset", default="fashion_mnist")
    args = p.parse_args(argv)
    # The study always trains the plain network as its reference; so do the others.
    settings = list(dict.fromkeys(["baseline", *args.techniques.split(",")]))
    regimes = list(itertools.product(args.train_size.split(","), args.label_noise.split(",")))
    common = ["--epochs", str(args.epochs), "--dataset", args.dataset, "--quiet"]
    models = len(settings) * len(regimes) * args.seeds
    print(f"# {device()}: {models} models ({args.techniques} and the plain "
          f"network, {len(regimes)} regimes, {args.seeds} seeds, {args.epochs} epochs)",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        walls = {"study.py": timed([
            str(SCRIPTS / "study.py"), "--techniques", args.techniques,
            "--train-size", args.train_size, "--label-noise", args.label_noise,
            "--seeds", str(args.seeds), "--output-dir", str(out / "study"), *common])}
        walls["compare.py per regime"] = sum(timed([
            str(SCRIPTS / "compare.py"), "--techniques", ",".join(settings), "--train-size", size,
            "--label-noise", noise, "--seeds", str(args.seeds),
            "--output-dir", str(out / f"compare-{size}-{noise}"), *common])
            for size, noise in regimes)
        walls["train.py per model"] = sum(timed([
            str(SCRIPTS / "train.py"), "--technique", name, "--train-size", size,
            "--label-noise", noise, "--seed", str(seed),
            "--output-dir", str(out / f"train-{name}-{size}-{noise}-{seed}"), *common])
            for name in settings
            for (size, noise), seed in itertools.product(regimes, range(args.seeds)))
    print("| way | wall s | s per model | x the study |\n|---|---:|---:|---:|")
    for way, wall in walls.items():
        print(f"| {way} | {wall:.0f} | {wall / models:.2f} | {wall / walls['study.py']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
