"""A comparison over two processes joined by jax.distributed (a localhost coordinator, gloo
collectives on the CPU, 2 devices per process), killed and resumed, writes the report of the
one-process run; a coordinator that cannot be reached is a one-line error within the
timeout, not a hang."""

import json
import socket
import subprocess
import sys
import time

import jax
import pytest

from regjax.cli.compare import compare_main
from tests.helpers import ROOT, one_line_error, script, without_timing

ARGS = ["--techniques", "dropout", "--seeds", "2", "--epochs", "1", "--quiet"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_processes(tmp_path, args, *extra):
    """Processes 0 and 1 of a distributed comparison, each with its own output directory."""
    coordinator = f"127.0.0.1:{free_port()}"
    return [subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "compare.py"), *args, "--output-dir",
         str(tmp_path / f"p{i}"), "--coordinator", coordinator, "--num-processes", "2",
         "--process-id", str(i), "--timeout", "60", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]


@pytest.mark.skipif(jax.default_backend() != "cpu",
                    reason="an accelerator runs these epochs in milliseconds: the run can end "
                           "before the kill lands")
def test_killed_processes_resume_from_their_own_checkpoints(tmp_path, tiny_idx_dir):
    """SIGKILL to both processes once each has checkpointed an epoch of its own models (of
    40; process 0 may be further, or done and waiting for process 1): resumed, each from its
    own checkpoints, they write the report of an uninterrupted one-process run, and remove
    their checkpoints."""
    args = ["--techniques", "baseline", "--seeds", "4", "--epochs", "40", "--quiet",
            "--data-dir", str(tiny_idx_dir)]
    processes = start_processes(tmp_path, args)
    own = [tmp_path / f"p{i}" / "checkpoints" / f"process-{i}" / "batch-0" for i in (0, 1)]
    deadline = time.monotonic() + 240
    while not all(d.is_dir() and any(p.name.isdigit() for p in d.iterdir()) for d in own):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.01)
    for p in processes:
        p.kill()
        p.communicate()
    assert not (tmp_path / "p0" / "results.json").exists()  # killed before the end
    for p in start_processes(tmp_path, args, "--resume"):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    assert compare_main([*args, "--output-dir", str(tmp_path / "one")]) == 0
    one, both = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "p0"))
    # Every model's history, bitwise (exact on a CPU: the same programs on the same data).
    assert [without_timing(r) for r in both["groups"]["baseline"]["runs"]] == \
        [without_timing(r) for r in one["groups"]["baseline"]["runs"]]
    # Process 0 writes the report, alone; no checkpoint is left anywhere.
    assert not (tmp_path / "p1").exists()
    assert sorted(p.name for p in (tmp_path / "p0").glob("[!.]*")) == [
        "curves.png", "report.md", "results.json", "summary.png"]
    assert "2 processes" in (tmp_path / "p0" / "report.md").read_text()


def test_an_unreachable_coordinator_is_a_one_line_error(tmp_path, tiny_idx_dir):
    result = script("compare", *ARGS, "--data-dir", tiny_idx_dir, "--output-dir", tmp_path,
                    "--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", 2,
                    "--process-id", 1, "--timeout", 2, timeout=60)
    assert one_line_error(result, "cannot reach the coordinator at 127.0.0.1:")
