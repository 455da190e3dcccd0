#!/usr/bin/env python3
"""What checkpointing costs per epoch: the same training with and without a checkpoint (and
history.json) written after every epoch, as `train.py` does, run alternately (A B A B ...) so
a drift of the machine's speed hits both. The cost is the difference of the wall time per
epoch (compilation excluded), relative to the epoch time without checkpoints.

    python benchmarks/checkpoint_cost.py                        # baseline MLP
    python benchmarks/checkpoint_cost.py --technique augmentation --epochs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
from common import device  # benchmarks/common.py

from regjax import data, presets
from regjax.files import atomic, outdir
from regjax.files.checkpoint import Checkpoints
from regjax.train.fit import fit


def seconds_per_epoch(config, train, val, directory: Path | None) -> float:
    """Wall seconds per epoch of fit, compilation excluded."""
    checkpoints = Checkpoints(directory / outdir.CHECKPOINTS) if directory else None

    def write_history(history):
        if directory:
            atomic.write_json(directory / outdir.HISTORY, history)

    start = time.perf_counter()
    history, _ = fit(config, train, val, log=lambda _: None, checkpoints=checkpoints,
                        on_epoch=write_history)
    wall = time.perf_counter() - start - history["compile_seconds"]
    return wall / history["epochs_run"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--technique", default="baseline", help="preset (default: baseline)")
    p.add_argument("--epochs", type=int, default=8, help="epochs per run (default 8)")
    p.add_argument("--repeats", type=int, default=6, help="runs of each kind (default 6)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir")
    args = p.parse_args(argv)

    dataset = data.load_dataset(args.dataset, args.data_dir)
    config = presets.preset(args.technique, epochs=args.epochs, early_stopping=False)
    train, val = data.train_and_validation(dataset, config.validation)
    print(f"# {args.technique}, {args.epochs} epochs x {args.repeats} runs each, alternating; "
          f"jax {jax.__version__}, {device()}")
    seconds_per_epoch(config, train, val, None)  # warm-up: the first run in a process is slow
    plain, checkpointed = [], []
    for _ in range(args.repeats):
        plain.append(seconds_per_epoch(config, train, val, None))
        with tempfile.TemporaryDirectory() as directory:
            checkpointed.append(seconds_per_epoch(config, train, val, Path(directory)))
        print(f"epoch s without {plain[-1]:.3f}  with checkpoints {checkpointed[-1]:.3f}",
              flush=True)
    a, b = statistics.median(plain), statistics.median(checkpointed)
    print(f"median epoch: {a:.3f} s without, {b:.3f} s with checkpoints: "
          f"{1e3 * (b - a):+.1f} ms per epoch ({100 * (b - a) / a:+.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
