"""The devices a run uses: how many CPU devices XLA presents, how much memory a device has
free, and a clear error when a run would not fit."""

from __future__ import annotations

import os
import platform

import jax


class OutOfMemory(Exception):
    """The run does not fit the device's memory; the message names the flag to change."""


def use_cpu_devices(count: int | None = None) -> None:
    """Makes XLA present `count` CPU devices (default: one per usable core) through JAX's
    `jax_num_cpu_devices`; models trained together (regjax.train.batched) are split between them.
    Takes effect only before JAX starts its backends (later, e.g. in a process that has
    already trained, the devices stay as they are); GPUs and TPUs ignore it."""
    try:
        jax.config.update("jax_num_cpu_devices", count or len(os.sched_getaffinity(0)))
    except RuntimeError:  # backends already initialized
        pass


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_name() -> str:
    """What runs the programs: 'gpu: NVIDIA H200', or 'cpu: ' and the processor's model."""
    device = jax.devices()[0]
    return f"{device.platform}: {device.device_kind if device.platform != 'cpu' else cpu_model()}"


def this_machine() -> str:
    """What a report says produced it: jax's version and the devices."""
    return (f"jax {jax.__version__}, {jax.devices()[0].device_kind} ({platform.machine()}, "
            f"{jax.local_device_count()} device(s))")


def free_bytes(device: jax.Device | None = None) -> int | None:
    """Memory free on `device` (an accelerator's own; the host's available memory for a CPU),
    or None where it cannot be told."""
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits(needed: int, what: str, fix: str, device: jax.Device | None = None) -> None:
    """Raises OutOfMemory when `needed` bytes exceed the device's free memory."""
    free = free_bytes(device)
    if free is not None and needed > free:
        raise OutOfMemory(f"{what} needs about {needed / 2**30:.1f} GiB but the device has "
                          f"{free / 2**30:.1f} GiB free: {fix}")


def compiled_bytes(compiled) -> int:
    """Memory a compiled program needs while it runs: its arguments, outputs and temporary
    buffers (XLA's own estimate; 0 where the backend gives none)."""
    stats = compiled.memory_analysis()
    if stats is None:
        return 0
    return (stats.argument_size_in_bytes + stats.output_size_in_bytes
            + stats.temp_size_in_bytes - stats.alias_size_in_bytes)


def is_out_of_memory(error: Exception) -> bool:
    """Whether a runtime error from XLA is an allocation failure."""
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text
