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

from regjax.devices import cpu_model, device_name  # noqa: F401 (re-exported for the scripts)

HERE = Path(__file__).resolve().parent


def load(dataset_name: str, data_dir, rows: int | None):
    from regjax import data

    dataset = data.load_dataset(dataset_name, data_dir)
    if rows:  # smoke mode: a small slice of the real data
        cut = lambda s, n: data.Split(s.images[:n], s.labels[:n])  # noqa: E731
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
        command = [sys.executable, str(HERE / "compare_frameworks.py"), "--worker", framework, "--technique", technique,
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
