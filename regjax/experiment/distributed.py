"""A comparison or sweep over several processes (hosts) through JAX's own distributed
runtime: `jax.distributed.initialize` joins the processes (it detects SLURM, Open MPI and
Kubernetes, or takes a coordinator address, the number of processes and this one's id);
each process trains its share of the models on its own devices (regjax.experiment.shards numbers
them), and the shares' results reach process 0 through a collective, which writes the
report. Models never communicate while training.
"""

from __future__ import annotations

import json
import socket
import time

import numpy as np


class DistributedError(RuntimeError):
    """The processes could not be joined (an unreachable coordinator, a bad address)."""


def wait_for(coordinator: str, timeout: float) -> None:
    """Returns once something listens at HOST:PORT, or raises DistributedError after
    `timeout` seconds (JAX's own wait ends the process with a C++ abort instead)."""
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"--coordinator must be HOST:PORT, got {coordinator!r}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError as e:
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"cannot reach the coordinator at {coordinator} within {timeout:g} s "
                    f"({e.strerror or e}); start process 0 first, or check the address and "
                    "that the port is open") from None
            time.sleep(0.2)


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None,
               timeout: float) -> tuple[int, int]:
    """Joins the processes; returns (this process' index, the number of processes). With no
    coordinator, JAX detects the cluster (SLURM, Open MPI, Kubernetes)."""
    import jax

    if coordinator is not None and process_id:  # process 0 hosts the coordinator
        wait_for(coordinator, timeout)
    try:
        jax.distributed.initialize(coordinator_address=coordinator,
                                   num_processes=num_processes, process_id=process_id,
                                   initialization_timeout=max(1, int(timeout)))
    except (RuntimeError, ValueError) as e:
        raise DistributedError(f"cannot join the processes: {e}") from None
    return jax.process_index(), jax.process_count()


def gather_json(obj) -> list:
    """`obj` (JSON-serialisable) of every process, in process order, on every process."""
    from jax.experimental import multihost_utils

    payload = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([payload.size]))).ravel()
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:payload.size] = payload
    everyone = np.asarray(multihost_utils.process_allgather(padded))
    return [json.loads(bytes(row[:size])) for row, size in zip(everyone, sizes)]


def barrier(name: str) -> None:
    """Returns once every process has reached the barrier `name`."""
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)
