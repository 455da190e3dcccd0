"""A comparison over two processes joined by jax.distributed (a localhost coordinator, gloo
collectives on the CPU, 2 devices per process) writes the report of the one-process run;
a coordinator that cannot be reached is a one-line error within the timeout, not a hang."""

import json
import socket
import subprocess
import sys

from regjax.compare import compare_main
from tests.helpers import ROOT, one_line_error, script, without_timing

ARGS = ["--techniques", "dropout", "--seeds", "2", "--epochs", "1", "--quiet"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_report_what_one_process_does(tmp_path, tiny_idx_dir):
    assert compare_main([*ARGS, "--data-dir", str(tiny_idx_dir), "--output-dir",
                         str(tmp_path / "one")]) == 0
    coordinator = f"127.0.0.1:{free_port()}"
    processes = [subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "compare.py"), *ARGS, "--data-dir",
         str(tiny_idx_dir), "--output-dir", str(tmp_path / f"p{i}"), "--coordinator",
         coordinator, "--num-processes", "2", "--process-id", str(i), "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    for p in processes:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    assert not (tmp_path / "p1").exists()  # process 0 writes the report, alone
    assert sorted(p.name for p in (tmp_path / "p0").glob("[!.]*")) == [
        "curves.png", "report.md", "results.json", "summary.png"]
    one, both = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "p0"))
    for name in one["groups"]:  # every model's history, bitwise
        assert [without_timing(r) for r in both["groups"][name]["runs"]] == \
            [without_timing(r) for r in one["groups"][name]["runs"]]
    assert "2 processes" in (tmp_path / "p0" / "report.md").read_text()


def test_an_unreachable_coordinator_is_a_one_line_error(tmp_path, tiny_idx_dir):
    result = script("compare", *ARGS, "--data-dir", tiny_idx_dir, "--output-dir", tmp_path,
                    "--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", 2,
                    "--process-id", 1, "--timeout", 2, timeout=60)
    assert one_line_error(result, "cannot reach the coordinator at 127.0.0.1:")
