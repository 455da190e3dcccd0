#!/usr/bin/env python3
"""K models trained in one program against one model alone, for several K.

For each K: total model-steps/s = K x training steps per second of the batched run (the
median over its epochs after the first, validation included, compilation excluded, as
train.py reports it), its ratio to one model trained alone (regjax.fit, as train.py does:
the rate of the same K models trained one after another), and the wall time of the whole
run, compilation included. The runs alternate (one model, then each K, the whole round
`--repeats` times) so a drift of the machine's speed hits all of them.

Beside each figure, the memory-bandwidth bound: one model-step moves at least its weights
nine times (parameters read by the forward and the backward pass and written by the
update: 3; gradients written and read: 2; Adam's two moments read and written: 4) and
reads its batch once, as float32; the device's bandwidth, measured here by an elementwise
pass over a large array (bytes read + written), over those bytes is the most model-steps/s
any program could reach (on a CPU a model's weights stay in cache, so this bound, of main
memory, does not bind). Also the models vmapped together per group (regjax.train.batched: on
an accelerator all of a device's models, narrower where XLA's memory analysis says they do
not fit) and the memory XLA's analysis gives for the compiled program.

    python benchmarks/batched_throughput.py                          # K = 1, 8 on a CPU
    python benchmarks/batched_throughput.py --models 1,8,64,256,1024 --epochs 3   # a GPU
    python benchmarks/batched_throughput.py --models 1,8,64 --steps 100           # quick

Set XLA_FLAGS before the command to try XLA options (e.g. on a GPU
--xla_gpu_enable_command_buffer=...); the header prints them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
from common import device, memory_bandwidth  # benchmarks/common.py

from regjax.train.devices import use_cpu_devices


def main(argv=None) -> int:  # long: the flags, then one table's rows, read top to bottom
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="1,8", help="comma-separated K (default 1,8)")
    p.add_argument("--technique", default="baseline", help="preset (default baseline)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per run (default 4)")
    p.add_argument("--steps", type=int, help="training steps per epoch (default: all the "
                   "training rows; fewer for a quick look on a CPU)")
    p.add_argument("--repeats", type=int, default=1, help="rounds (default 1)")
    p.add_argument("--devices", type=int, default=len(os.sched_getaffinity(0)),
                   help="XLA CPU devices the batched models are split over on a CPU (default: "
                        "one per core, as scripts/compare.py uses); a GPU ignores it")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    try:
        counts = [int(k) for k in args.models.split(",")]
    except ValueError:
        p.error(f"--models takes comma-separated whole numbers, not {args.models!r}")
    if 1 not in counts:
        counts = [1, *counts]  # the reference
    use_cpu_devices(args.devices)
    import jax

    from regjax import data, presets
    from regjax.train.batched import fit_batched
    from regjax.train.budget import state_bytes
    from regjax.train.engine import Engine
    from regjax.train.fit import fit

    dataset = data.load_dataset(args.dataset, args.data_dir)
    configs = [presets.preset(args.technique, seed=s, epochs=args.epochs, early_stopping=False)
               for s in range(max(counts))]
    train, val = data.train_and_validation(dataset, configs[0].validation)
    if args.steps:
        rows = args.steps * configs[0].batch_size
        train = data.Split(train.images[:rows], train.labels[:rows], train.classes)
    speed = memory_bandwidth()
    weights = state_bytes(configs[0], dataset.spec)[1]
    moved = 9 * weights + configs[0].batch_size * np.prod(dataset.spec.shape) * 4
    bound = speed / moved
    print(f"# {args.technique}, {args.epochs} epochs of {len(train):,} rows, {dataset.name}; "
          f"jax {jax.__version__}, {device()}, {jax.local_device_count()} device(s); "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"# bandwidth {speed / 1e9:,.0f} GB/s; {moved / 1e6:.2f} MB per model-step "
          f"(9 x {weights / 1e6:.2f} MB of weights + the batch): bound "
          f"{bound:,.0f} model-steps/s")
    rates = {k: [] for k in counts}
    walls = {k: [] for k in counts}
    for _ in range(args.repeats):
        for k in counts:
            start = time.perf_counter()
            if k == 1:
                runs = [fit(configs[0], train, val, log=lambda _: None)[0]]
            else:
                runs = fit_batched(configs[:k], train, val)
            walls[k].append(time.perf_counter() - start)
            rates[k].append(k * runs[0]["train_steps_per_second"])
            print(f"K={k}: {rates[k][-1]:,.0f} model-steps/s, wall {walls[k][-1]:.1f} s",
                  flush=True)
    one = statistics.median(rates[1])
    print("| K | models per group | model-steps/s | vs one model | bound | of bound | "
          "wall s (incl. compilation) | a device's memory (XLA's analysis) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for k in counts:
        rate = statistics.median(rates[k])
        group, memory = "1", ""
        if k > 1:  # the engine fit_batched builds, compiled again for its memory analysis
            engine = Engine(configs[:k], dataset.spec)
            engine.compile(engine.init_state(), engine.put(train), engine.put(val))
            group = str(engine.width)
            memory = f"{engine.tried[-1][1] / 1e9:,.2f} GB"
        print(f"| {k} | {group} | {rate:,.0f} | {rate / one:.2f}x | {bound:,.0f} | "
              f"{rate / bound:.1%} | {statistics.median(walls[k]):.1f} | {memory} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
