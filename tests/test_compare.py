"""compare.py and sweep.py: the report agrees with its histories, plots are valid PNGs, a
diverging model is reported as such; the progress display."""

import io
import json
import struct
import sys

import numpy as np
from scipy import stats

from regjax import data
from regjax.cli.compare import compare_main
from regjax.cli.sweep import sweep_main
from regjax.reports import plots


def png_size(path):
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    assert raw.rstrip(b"\x00")[-8:-4] == b"IEND"
    return struct.unpack(">II", raw[16:24])


def table_rows(markdown):
    """The data rows of the first markdown table: {setting: [cells]}."""
    rows = [line.strip("|").split("|") for line in markdown.splitlines()
            if line.startswith("| ")]
    return {cells[1].strip(): [c.strip() for c in cells] for cells in rows[1:]}


def test_compare_report_matches_its_histories_and_writes_plots(tmp_path, tiny_idx_dir):
    out = tmp_path / "compare"
    code = compare_main(["--techniques", "baseline,l2,dropout", "--seeds", "3", "--epochs", "2",
                         "--data-dir", str(tiny_idx_dir), "--output-dir", str(out), "--quiet"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    rows = table_rows((out / "report.md").read_text())
    assert set(rows) == {"baseline", "l2", "dropout"}
    means = {}
    for name, group in results["groups"].items():
        runs = group["runs"]
        assert [r["config"]["seed"] for r in runs] == [0, 1, 2]
        test = np.array([r["test_accuracy"] for r in runs])
        gap = np.array([r["accuracy"][-1] - r["val_accuracy"][-1] for r in runs])
        best_val = np.mean([max(r["val_accuracy"]) for r in runs])
        means[name] = test.mean()
        cells = rows[name]
        assert cells[2] == f"{100 * test.mean():.2f} ± {100 * test.std(ddof=1):.2f}"
        assert cells[3] == f"{100 * test.min():.2f}–{100 * test.max():.2f}"
        assert cells[4] == f"{100 * best_val:.2f}"
        assert cells[5].startswith(f"{100 * gap.mean():.2f} ±")
    # Ranked by mean test accuracy, with the difference to baseline.
    ranked = sorted(means, key=lambda n: -means[n])
    assert [rows[n][0] for n in ranked] == ["1", "2", "3"]
    assert rows["l2"][8].startswith(f"{100 * (means['l2'] - means['baseline']):+.2f} [")
    # Welch's test, from scipy on the same accuracies (an independent computation).
    accuracies = {name: [r["test_accuracy"] for r in group["runs"]]
                  for name, group in results["groups"].items()}
    welch = stats.ttest_ind(accuracies["l2"], accuracies["baseline"], equal_var=False)
    assert rows["l2"][9] == f"{welch.pvalue:.3f}"
    low, high = welch.confidence_interval(0.95)
    assert rows["l2"][8].endswith(f"[{100 * low:+.2f}, {100 * high:+.2f}]")
    # Seeds for 80% power: the fewest seeds per setting at which a two-sided 5% test of a
    # difference of this size (the two settings' pooled spread) has at least 80% power,
    # found by computing the power itself (normal approximation) seed count by seed count.
    for name in ("l2", "dropout"):
        delta = np.mean(accuracies[name]) - np.mean(accuracies["baseline"])
        sigma2 = (np.var(accuracies[name], ddof=1) + np.var(accuracies["baseline"], ddof=1)) / 2
        power = lambda n: stats.norm.cdf(abs(delta) / np.sqrt(2 * sigma2 / n)  # noqa: E731
                                         - stats.norm.ppf(0.975))
        n = next(n for n in range(2, 10**7) if power(n) >= 0.8)
        assert rows[name][10] == str(n), (name, rows[name][10], n)
    assert png_size(out / "curves.png") == tuple(int(plots.DPI * x) for x in plots.CURVES_SIZE)
    assert png_size(out / "summary.png") == tuple(int(plots.DPI * x) for x in plots.SUMMARY_SIZE)
    # A second run refuses to overwrite the report unless told to.
    assert compare_main(["--output-dir", str(out), "--seeds", "1",
                         "--data-dir", str(tiny_idx_dir)]) == 1


def test_sweep_trains_every_value_and_seed(tmp_path, tiny_idx_dir):
    out = tmp_path / "sweep"
    code = sweep_main(["--technique", "dropout", "--values", "0,0.5", "--seeds", "2",
                       "--epochs", "1", "--data-dir", str(tiny_idx_dir), "--output-dir",
                       str(out), "--quiet"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    groups = results["groups"]
    assert list(groups) == ["dropout=0", "dropout=0.5"]
    for value, name in ((0.0, "dropout=0"), (0.5, "dropout=0.5")):
        assert [(r["config"]["dropout"], r["config"]["seed"]) for r in groups[name]["runs"]] == [
            (value, 0), (value, 1)]
    lines = (out / "report.md").read_text().splitlines()
    for name, value in (("dropout=0", "0"), ("dropout=0.5", "0.5")):
        test = np.array([r["test_accuracy"] for r in groups[name]["runs"]])
        row = f"| {value} | {100 * test.mean():.2f} ± {100 * test.std(ddof=1):.2f} |"
        assert row in "\n".join(lines)
    assert png_size(out / "sweep.png") == tuple(int(plots.DPI * x) for x in plots.SWEEP_SIZE)


def test_progress_shows_every_programs_epochs_on_a_terminal_only(tiny_idx_dir, monkeypatch):
    """The bar counts the epochs of every program of the plan, and draws nothing where
    stderr is not a terminal (logs and pipes stay clean) unless asked to."""
    from regjax.experiment import runner
    from regjax.experiment.plan import compare_plan

    plan = compare_plan(["baseline", "l2"], 1, command="test", epochs=2,
                        data_dir=tiny_idx_dir)
    dataset = data.load_dataset("fashion_mnist", tiny_idx_dir)
    for progress, terminal in ((None, False), (True, False), (None, True)):
        stream = io.StringIO()
        stream.isatty = lambda: terminal
        monkeypatch.setattr(sys, "stderr", stream)
        runner.train_groups(list(plan.batches), dataset, progress)
        shown = stream.getvalue()
        if progress or terminal:
            assert "l2: 100%" in shown and "4/4" in shown and "baseline" in shown, shown
        else:
            assert shown == ""


def test_a_sweep_with_a_diverging_value_still_writes_its_report(tmp_path, tiny_idx_dir, capsys):
    out = tmp_path / "sweep"
    code = sweep_main(["--technique", "baseline", "--knob", "learning_rate", "--values",
                       "0.001,100000000", "--seeds", "2", "--epochs", "2", "--data-dir",
                       str(tiny_idx_dir), "--output-dir", str(out), "--quiet"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert {r["status"] for r in results["groups"]["learning_rate=1e+08"]["runs"]} == {"diverged"}
    text = (out / "report.md").read_text()
    assert "| 1e+08 | no run completed |" in text
    assert "- not completed: learning_rate=1e+08 seed 0: diverged" in text
    assert png_size(out / "sweep.png") == tuple(int(plots.DPI * x) for x in plots.SWEEP_SIZE)
