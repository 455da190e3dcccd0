"""How many XLA devices a CPU run uses (kept free of JAX imports: it must run before JAX
starts)."""

from __future__ import annotations

import os

FLAG = "--xla_force_host_platform_device_count"


def one_cpu_device_per_core() -> None:
    """Makes XLA present one CPU device per usable core, unless XLA_FLAGS already sets a
    count. Models trained together (regjax.batched) are then split between the devices and
    run in parallel; a single model uses one device as before. GPUs and TPUs ignore it."""
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FLAG}={len(os.sched_getaffinity(0))}".strip()
