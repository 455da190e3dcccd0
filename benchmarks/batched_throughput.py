#!/usr/bin/env python3
"""K models trained in one vmapped program vs the same K trained one after another.

Total steps/s = models x training steps per second, validation included, each run's
median over its epochs after the first (compilation excluded, as train.py reports it). Also
the end-to-end wall time of training all K, compilation included. The two ways alternate
(A B A B ...) so a drift of the machine's speed hits both.

    python benchmarks/batched_throughput.py                  # K=8 baseline MLPs, 4 epochs
    python benchmarks/batched_throughput.py --models 8 --technique dropout --devices 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from regjax.devices import device_name, use_cpu_devices


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, default=8, help="K (default 8)")
    p.add_argument("--technique", default="baseline", help="preset (default baseline)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per run (default 4)")
    p.add_argument("--repeats", type=int, default=2, help="rounds of A B (default 2)")
    p.add_argument("--devices", type=int, default=len(os.sched_getaffinity(0)),
                   help="XLA CPU devices the batched models are split over (default: one "
                        "per core, as scripts/compare.py uses)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    use_cpu_devices(args.devices)
    import jax

    from regjax import config as cfg
    from regjax import data
    from regjax.batched import fit_batched
    from regjax.training import fit

    dataset = data.load_dataset(args.dataset, args.data_dir)
    configs = [cfg.preset(args.technique, seed=s, epochs=args.epochs, early_stopping=False)
               for s in range(args.models)]
    train, val = data.train_and_validation(dataset, configs[0].validation)
    print(f"# {args.models} x {args.technique}, {args.epochs} epochs, {dataset.name}; jax "
          f"{jax.__version__}, {device_name()}, {jax.local_device_count()} XLA device(s)")
    rates = {"one after another": [], "batched": []}
    walls = {"one after another": [], "batched": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        runs = [fit(c, train, val, log=lambda _: None)[0] for c in configs]
        walls["one after another"].append(time.perf_counter() - start)
        # One model at a time: the total rate is the mean single-model rate.
        rates["one after another"].append(
            statistics.mean(r["train_steps_per_second"] for r in runs))
        start = time.perf_counter()
        runs = fit_batched(configs, train, val)
        walls["batched"].append(time.perf_counter() - start)
        rates["batched"].append(args.models * runs[0]["train_steps_per_second"])
        print(f"total steps/s: one after another {rates['one after another'][-1]:,.0f}, "
              f"batched {rates['batched'][-1]:,.0f}; wall s {walls['one after another'][-1]:.1f}"
              f" vs {walls['batched'][-1]:.1f}", flush=True)
    seq, bat = (statistics.median(rates[k]) for k in ("one after another", "batched"))
    wseq, wbat = (statistics.median(walls[k]) for k in ("one after another", "batched"))
    print(f"median total steps/s: one after another {seq:,.0f}, batched {bat:,.0f}: "
          f"{bat / seq:.2f}x; wall time for all {args.models}, compilation included: "
          f"{wseq:.1f} s vs {wbat:.1f} s: {wseq / wbat:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
