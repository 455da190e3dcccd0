"""Many models in one program (one at a time or vmapped): each equals its single run;
per-model early stopping; the comparison report agrees with its histories; plots are valid
PNGs; progress display."""

import io
import json
import re
import struct

import numpy as np
import pytest

from regjax import data, report
from regjax.batched import fit_batched, shared_structure
from regjax.compare import compare_main, sweep_main
from regjax.config import preset
from regjax.progress import Progress
from regjax.train import fit

KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


@pytest.fixture(scope="module")
def small(fashion):
    train = data.Split(fashion.train.images[:1500], fashion.train.labels[:1500])
    val = data.Split(fashion.train.images[-500:], fashion.train.labels[-500:])
    test = data.Split(fashion.test.images[:500], fashion.test.labels[:500])
    return train, val, test


def assert_same_history(batched, single):
    assert batched["epochs_run"] == single["epochs_run"]
    assert batched["stopped_early"] == single["stopped_early"]
    assert batched["best_epoch"] == single["best_epoch"]
    for key in KEYS:
        # Batched matrix products may round differently: equal up to float32 rounding.
        np.testing.assert_allclose(batched[key], single[key], rtol=2e-5, atol=2e-6, err_msg=key)
    assert batched["test_accuracy"] == pytest.approx(single["test_accuracy"], abs=2e-3)


# seeds, and every knob that may differ between models of one program
MIXED_KNOBS = [
    preset("dropout", seed=0, epochs=2), preset("dropout", seed=1, dropout=0.5, epochs=2),
    preset("dropout", seed=2, dropout=0.0, l2=1e-3, epochs=2),
    preset("dropout", seed=3, l1=1e-4, label_smoothing=0.2, learning_rate=3e-3, epochs=2)]


@pytest.mark.parametrize("configs", [
    MIXED_KNOBS,
    [preset("batchnorm", seed=s, epochs=2) for s in (0, 5)],
    [preset("augmentation", seed=0, epochs=1, hidden=(16,)),
     preset("augmentation", seed=1, epochs=1, hidden=(16,), rotation_range=30.0, zoom_range=0.0)],
], ids=["mlp-knobs", "batchnorm", "cnn-augmentation"])
def test_each_batched_model_equals_its_single_run(small, configs):
    assert_batched_equal_single_runs(small, configs, vmap_width=None)


@pytest.mark.parametrize("vmap_width", [2, len(MIXED_KNOBS)], ids=["pairs", "all"])
def test_vmapped_models_equal_their_single_runs_too(small, vmap_width):
    # The default on a CPU trains a device's models one after another; vmapped (in pairs,
    # or all of a device's models at once) they must give the same histories.
    assert_batched_equal_single_runs(small, MIXED_KNOBS, vmap_width)


def assert_batched_equal_single_runs(small, configs, vmap_width):
    train, val, test = small
    batched, _ = fit_batched(configs, train, val, test, vmap_width=vmap_width)
    for config, history in zip(configs, batched):
        single, _, _ = fit(config, train, val, test, log=lambda _: None)
        assert_same_history(history, single)


@pytest.mark.parametrize("vmap_width", [1, 3], ids=["one-at-a-time", "vmapped"])
def test_early_stopping_is_per_model(small, vmap_width):
    train, val, test = small
    configs = [preset("early_stopping", seed=0, epochs=8, patience=1, min_delta=0.1),
               preset("early_stopping", seed=1, epochs=8, patience=2, min_delta=0.05,
                      restore_best_weights=True),
               preset("baseline", seed=2, epochs=5)]
    batched, _ = fit_batched(configs, train, val, test, vmap_width=vmap_width)
    singles = [fit(c, train, val, test, log=lambda _: None)[0] for c in configs]
    assert [h["epochs_run"] for h in singles] == [h["epochs_run"] for h in batched]
    assert singles[0]["stopped_early"] and singles[0]["epochs_run"] < 8  # the test bites
    assert len({h["epochs_run"] for h in singles}) > 1  # models end at different epochs
    for history, single in zip(batched, singles):
        assert_same_history(history, single)


def test_models_that_differ_in_structure_are_refused():
    with pytest.raises(ValueError, match="must share 'batchnorm'"):
        shared_structure([preset("baseline"), preset("batchnorm")])


def png_size(path):
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    assert raw.rstrip(b"\x00")[-8:-4] == b"IEND"
    return struct.unpack(">II", raw[16:24])


def table_rows(markdown):
    """The data rows of the first markdown table: {setting: [cells]}."""
    rows = [l.strip("|").split("|") for l in markdown.splitlines() if l.startswith("| ")]
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
    assert rows["l2"][8] == f"{100 * (means['l2'] - means['baseline']):+.2f}"
    assert png_size(out / "curves.png") == tuple(int(report.DPI * x) for x in report.CURVES_SIZE)
    assert png_size(out / "summary.png") == tuple(int(report.DPI * x) for x in report.SUMMARY_SIZE)
    # A second run refuses to overwrite the report unless told to.
    assert pytest.raises(SystemExit, compare_main, ["--output-dir", str(out), "--seeds", "1",
                                                    "--data-dir", str(tiny_idx_dir)]).value.code == 1


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
        assert f"| {value} | {100 * test.mean():.2f} ± {100 * test.std(ddof=1):.2f} |" in "\n".join(lines)
    assert png_size(out / "sweep.png") == tuple(int(report.DPI * x) for x in report.SWEEP_SIZE)


def test_progress_draws_on_a_terminal_only():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    shown, hidden = Terminal(), io.StringIO()
    for stream in (shown, hidden):
        progress = Progress(4, stream=stream)
        progress.advance(1, "dropout")
        progress.advance(3, "dropout")
        progress.close()
    assert hidden.getvalue() == ""
    assert "dropout  [1/4 epochs]" in shown.getvalue()
    assert re.search(r"\[4/4 epochs\]  elapsed 0:00:\d\d  remaining 0:00:00", shown.getvalue())
