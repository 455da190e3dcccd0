"""What the benchmark scripts share: the machine's description, the data, and running one
framework's worker in its own process (compare_frameworks.py and parity.py). Benchmark
scripts run from this directory, so `import common` finds this file."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from regjax.train.devices import cpu_model, device_name  # noqa: F401 (re-exported for the scripts)

HERE = Path(__file__).resolve().parent


def load(dataset_name: str, data_dir, rows: int | None):
    from regjax import data

    dataset = data.load_dataset(dataset_name, data_dir)
    if rows:  # smoke mode: a small slice of the real data
        cut = lambda s, n: data.Split(s.images[:n], s.labels[:n], s.classes)  # noqa: E731
        dataset = data.Dataset(dataset.name, dataset.source, cut(dataset.train, rows),
                               cut(dataset.test, max(rows // 6, 100)))
    return dataset


def available(framework: str) -> str | None:
    """None if the framework can run here, else why not."""
    import peers

    missing = [m for m in peers.REQUIRES[framework] if importlib.util.find_spec(m) is None]
    return f"{', '.join(missing)} not installed (pip install -e '.[bench]')" if missing else None


def run_worker(framework: str, technique: str, args, seed: int = 0) -> dict | None:
    import peers

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, str(HERE / "compare_frameworks.py"), "--worker", framework,
                   "--technique", technique,
                   "--seed", str(seed), "--out", str(out), "--dataset", args.dataset]
        for flag, value in (("--epochs", args.epochs), ("--rows", args.rows),
                            ("--data-dir", args.data_dir)):
            if value is not None:
                command += [flag, str(value)]
        env = {**os.environ, **peers.ENVIRONMENT.get(framework, {}),
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"# {framework} {technique} failed: {last}", file=sys.stderr)
            return None
        return json.loads(out.read_text())


def machine() -> str:
    """The CPU as the figures name it: model, whether it has AVX-512, cores."""
    try:
        with open("/proc/cpuinfo") as f:
            avx512 = "avx512f" in f.read()
    except OSError:
        avx512 = None
    vector = {True: "AVX-512", False: "no AVX-512", None: "AVX-512 unknown"}[avx512]
    return f"{cpu_model()}, {vector}, {os.cpu_count()} cores"


def device() -> str:
    """What runs the programs, as every figure names it: on a CPU its model, whether it has
    AVX-512 and its cores (machine()); else the accelerator, e.g. 'gpu: NVIDIA H100'."""
    import jax

    return machine() if jax.devices()[0].platform == "cpu" else device_name()


def cnn_step_flops(config, spec=None) -> int:
    """Floating-point operations of the products of one training step of the notebook's CNN
    (multiply and add counted apart): the convolution's forward product and its kernel's
    gradient (the input gradient is never formed: the input is data), and each Dense layer's
    forward, kernel-gradient and input-gradient products. Elementwise work (bias, ReLU, the
    pool, the loss, Adam, the augmentation) is left out: it is memory-bound, not compute.
    `spec`: the data (default the notebook's, 28x28x1 of 10 classes)."""
    from regjax.models.cnn import FILTERS

    (height, width, channels), classes = spec or NOTEBOOK_DATA
    b = config.batch_size
    h, w = height - 2, width - 2  # the convolution's output positions
    conv = 2 * b * h * w * 9 * channels * FILTERS
    sizes = (cnn_features(spec), *config.hidden, classes)
    dense = sum(2 * b * i * o for i, o in zip(sizes[:-1], sizes[1:]))
    return 2 * conv + 3 * dense


NOTEBOOK_DATA = ((28, 28, 1), 10)


def cnn_features(spec) -> int:
    """The CNN's features after its 3x3 convolution and 2x2 pooling, for data of `spec`."""
    from regjax.models.cnn import FILTERS

    (height, width, _), _ = spec or NOTEBOOK_DATA
    return ((height - 2) // 2) * ((width - 2) // 2) * FILTERS


def cache_bytes() -> int | None:
    """The size of the CPU's last-level cache (Linux's sysfs), None where it cannot be told."""
    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((entry / "level").read_text())
            size = (entry / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(size[-1:], 1)
        sizes.append((level, int(size.rstrip("KMG")) * scale))
    return max(sizes)[1] if sizes else None


def memory_bandwidth() -> float:
    """Bytes per second of an elementwise pass over 1 GiB (read + write), far more than any
    cache holds: the median of five rounds of five passes each, so that a dispatch does not
    count."""
    import statistics
    import time

    import jax
    import jax.numpy as jnp

    x = jnp.ones(2**28, jnp.float32)
    f = jax.jit(lambda a: a * 1.000001)
    f(x).block_until_ready()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(5):
            y = f(x)
        y.block_until_ready()
        times.append((time.perf_counter() - start) / 5)
    return 2 * x.nbytes / statistics.median(times)


def dense_matmul_rate(config, rounds: int = 5, repeats: int = 100,
                      from_memory: bool = False) -> float:
    """FLOP/s at which XLA multiplies float32 matrices of the CNN's first Dense layer's three
    products on this machine (forward [B, in] @ [in, out], kernel gradient [in, B] @ [B, out],
    input gradient [B, out] @ [out, in]), each jitted alone; the best of `rounds` timings of
    `repeats` calls, the three together. With `from_memory`, each call is timed alone after
    a pass over twice the last-level cache has evicted its operands (as happens in a training
    step whose buffers do not fit the cache): the rate the products can reach where they
    read their operands from main memory."""
    import time

    import jax
    import numpy as np

    features = cnn_features(None)
    b, units = config.batch_size, config.hidden[0]
    rs = np.random.default_rng(0)
    x, w, g = (jax.numpy.asarray(rs.random(s, np.float32))
               for s in ((b, features), (features, units), (b, units)))
    products = [(jax.jit(lambda x, w: x @ w), (x, w)), (jax.jit(lambda x, g: x.T @ g), (x, g)),
                (jax.jit(lambda g, w: g @ w.T), (g, w))]
    if from_memory:
        flush = jax.numpy.zeros(2 * (cache_bytes() or 2**25) // 4, np.float32)
        evict = jax.jit(lambda a: a + 1.0, donate_argnums=0)
        repeats = min(repeats, 20)

    def seconds_per_call(f, args) -> float:
        nonlocal flush
        if not from_memory:  # back to back: the operands stay in the cache
            start = time.perf_counter()
            for _ in range(repeats):
                out = f(*args)
            jax.block_until_ready(out)
            return (time.perf_counter() - start) / repeats
        elapsed = 0.0
        for _ in range(repeats):  # each call alone, after a pass that evicts its operands
            flush = jax.block_until_ready(evict(flush))
            start = time.perf_counter()
            jax.block_until_ready(f(*args))
            elapsed += time.perf_counter() - start
        return elapsed / repeats

    seconds = 0.0
    for f, args in products:
        jax.block_until_ready(f(*args))
        seconds += min(seconds_per_call(f, args) for _ in range(rounds))
    return 3 * 2 * b * features * units / seconds


def versions(frameworks) -> str:
    """The installed versions of what the frameworks run on, e.g. 'jax 0.10.2, keras 3.15.1'."""
    from importlib import metadata

    import peers

    names = dict.fromkeys(p for f in frameworks for p in peers.REQUIRES[f])
    found = []
    for name in names:
        for dist in (name, f"{name}-cpu"):
            try:
                found.append(f"{name} {metadata.version(dist)}")
                break
            except metadata.PackageNotFoundError:
                continue
    return ", ".join(found)
