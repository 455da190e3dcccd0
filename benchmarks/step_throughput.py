#!/usr/bin/env python3
"""Training steps per second of each technique, validation included, as `train.py`
measures it: the median over epochs after the first (compilation happens before).

For the CNN techniques it also prints the step's compute bound on this machine: the FLOPs
of the step's matrix products (common.cnn_step_flops) over the rate at which XLA multiplies
matrices of the Dense layer's shapes here (common.dense_matmul_rate, measured just before
and just after the technique's run, the faster taken), and the fraction of it achieved.
Beside it, the same bound with the products reading their operands from main memory, the
main memory's bandwidth and the last-level cache's size: where a step's buffers (the Dense
kernel, its gradient and Adam's two moments alone are 11 MB) do not stay in the cache, the
products run at that slower rate, and the first bound cannot be approached.

    python benchmarks/step_throughput.py                      # all techniques, 4 epochs each
    python benchmarks/step_throughput.py --techniques baseline,augmentation --epochs 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import jax
from common import (  # benchmarks/common.py
    cache_bytes,
    cnn_step_flops,
    dense_matmul_rate,
    device,
    machine,
    memory_bandwidth,
)

from regjax import data, presets
from regjax.train.fit import fit


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--techniques", default=",".join(presets.TECHNIQUES),
                   help="comma-separated presets (default: all)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per technique (default 4)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)

    dataset = data.load_dataset(args.dataset, args.data_dir)
    print(f"# {dataset.name}, jax {jax.__version__}, {device()}, "
          f"{jax.local_device_count()} device(s)")
    print(f"{'technique':16s} {'steps/epoch':>11s} {'steps/s':>9s} {'median epoch s':>14s} "
          f"{'compile s':>9s}")
    results = []
    memory = None  # (bandwidth, rate from memory, cache bytes): measured once, at the first CNN
    for technique in args.techniques.split(","):
        config = presets.preset(technique, epochs=args.epochs, early_stopping=False)
        train, val = data.train_and_validation(dataset, config.validation)
        rates = [dense_matmul_rate(config)] if config.model == "cnn" else []
        history, _ = fit(config, train, val, log=lambda _: None)
        row = {"technique": technique, "steps_per_epoch": history["steps_per_epoch"],
               "steps_per_second": history["train_steps_per_second"],
               "epoch_seconds": history["epoch_seconds"],
               "compile_seconds": history["compile_seconds"]}
        results.append(row)
        print(f"{technique:16s} {row['steps_per_epoch']:11d} {row['steps_per_second']:9.0f} "
              f"{statistics.median(row['epoch_seconds'][1:] or row['epoch_seconds']):14.2f} "
              f"{row['compile_seconds']:9.1f}", flush=True)
        if rates:
            rates.append(dense_matmul_rate(config))
            flops = cnn_step_flops(config)
            bound = max(rates) / flops
            row.update(step_flops=flops, matmul_flops_per_second=max(rates),
                       bound_steps_per_second=bound,
                       fraction_of_bound=row["steps_per_second"] / bound)
            print(f"#   compute bound: {flops / 1e6:.0f} MFLOP of products a step at "
                  f"{max(rates) / 1e9:.0f} GFLOP/s (XLA, the Dense layer's shapes) = "
                  f"{bound:.0f} steps/s; achieved {row['fraction_of_bound']:.0%} of it",
                  flush=True)
            memory = memory or (memory_bandwidth(), dense_matmul_rate(config, from_memory=True),
                                cache_bytes())
            cold = memory[1] / flops
            row.update(memory_bytes_per_second=memory[0], cache_bytes=memory[2],
                       matmul_from_memory_flops_per_second=memory[1],
                       bound_from_memory_steps_per_second=cold)
            cache = f"{memory[2] / 2**20:.0f} MB" if memory[2] else "unknown"
            print(f"#   operands from main memory ({memory[0] / 1e9:.1f} GB/s; last-level cache "
                  f"{cache}): {memory[1] / 1e9:.0f} GFLOP/s = {cold:.0f} steps/s; achieved "
                  f"{row['steps_per_second'] / cold:.0%} of it", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": jax.devices()[0].device_kind, "cpu": machine(),
                       "jax": jax.__version__, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
