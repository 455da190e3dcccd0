"""scripts/train.py as a user runs it: outputs, the saved model, and bad input."""

import json
import subprocess
import sys

import pytest

import regjax
from regjax import data, report
from regjax.config import PRESETS, Config
from tests.helpers import ROOT, one_line_error, script


def run(*args, cwd=None):
    return script("train", *args, cwd=cwd)


@pytest.mark.parametrize("technique", ["l2", "batchnorm", "augmentation"])
def test_train_writes_history_and_a_model_that_loads_back(tmp_path, tiny_idx_dir, technique):
    out = tmp_path / "run"
    result = run("--technique", technique, "--data-dir", tiny_idx_dir, "--epochs", 2,
                 "--output-dir", out)
    assert result.returncode == 0, result.stderr
    assert len([l for l in result.stdout.splitlines() if l.startswith("epoch ")]) == 2
    history = json.loads((out / "history.json").read_text())
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"):
        assert len(history[key]) == history["epochs_run"] == 2
    assert history["technique"] == technique and history["dataset"] == "fashion_mnist"
    assert history["config"]["epochs"] == 2 and history["stopped_early"] is False
    assert history["train_steps_per_second"] > 0
    # The saved model reproduces the reported test metrics.
    model = regjax.load_model(out / "model.npz")
    assert model.config == Config.from_dict(history["config"])
    dataset = data.read_idx_dataset("fashion_mnist", tiny_idx_dir)
    result = regjax.evaluate(model, dataset.test)
    assert result["accuracy"] == pytest.approx(history["test_accuracy"], abs=1e-9)
    assert result["loss"] == pytest.approx(history["test_loss"], rel=1e-5)
    # curves.png: the run's loss and accuracy per epoch.
    raw = (out / "curves.png").read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    assert tuple(int.from_bytes(raw[i:i + 4], "big") for i in (16, 20)) == tuple(
        int(report.DPI * x) for x in report.RUN_SIZE)


def test_flags_override_the_preset_and_combine(tmp_path, tiny_idx_dir):
    out = tmp_path / "run"
    result = run("--technique", "dropout", "--l2", "1e-4", "--augment", "--epochs", 1,
                 "--hidden", "32,16", "--train-size", 250, "--label-noise", 0.1, "--batch-size", 50,
                 "--data-dir", tiny_idx_dir, "--output-dir", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1
    history = json.loads((out / "history.json").read_text())
    config = history["config"]
    assert (config["dropout"], config["l2"], config["augment"], config["hidden"],
            config["train_size"], config["label_noise"]) == (0.25, 1e-4, True, [32, 16], 250, 0.1)
    assert history["steps_per_epoch"] == 4  # 250 rows drawn, the last 50 validate (300: 5)


@pytest.mark.parametrize("args,message", [
    (["--technique", "dropuot"], "did you mean 'dropout'"),
    (["--dropout", "1.0"], "dropout rate must be in [0, 1)"),
    (["--dropout", "-0.1"], "dropout rate must be in [0, 1)"),
    (["--l1=-1e-3"], "l1 must be >= 0"),
    (["--l2", "-1"], "l2 must be >= 0"),
    (["--batch-size", "0"], "batch size must be >= 1"),
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--label-smoothing", "1.5"], "label smoothing must be in [0, 1]"),
    (["--learning-rate", "0"], "learning rate must be > 0"),
    (["--epochs", "ten"], "invalid int value"),
    (["--hidden", "12,x"], "comma-separated integers"),
    (["--data-dir", "/nonexistent/dir"], "does not exist"),
    (["--dataset", "cifar10"], "unknown dataset 'cifar10'"),
    (["--dataset", "fashion-mnist"], "did you mean 'fashion_mnist'"),
    (["--model", "rnn"], "invalid choice: 'rnn'"),
    (["--validation", "holdout"], "invalid choice: 'holdout'"),
    (["--hidden", "0"], "hidden sizes must be positive integers"),
    (["--batch-size", "sixty"], "invalid int value"),
    (["--learning-rate", "nan"], "learning rate must be > 0"),
    (["--l2", "nan"], "l2 must be >= 0"),
    (["--dropout", "nan"], "dropout rate must be in [0, 1)"),
    (["--patience", "-1"], "patience must be >= 0"),
    (["--min-delta", "-0.1"], "min_delta must be >= 0"),
    (["--rotation-range", "-5"], "rotation_range must be >= 0"),
    (["--shift-range", "-0.1"], "shift_range must be >= 0"),
    (["--shear-range", "-1"], "shear_range must be >= 0"),
    (["--zoom-range", "1"], "zoom range must be in [0, 1)"),
    (["--seed", "-1"], "seed must be >= 0"),
    (["--train-size", "-5"], "train size must be a whole number of rows >= 0"),
    (["--label-noise", "1.5"], "label noise must be in [0, 1]"),
    (["--keep-checkpoints", "0"], "--keep-checkpoints must be >= 1"),
    (["--technique"], "expected one argument"),
    (["--epochs", "3", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_is_one_line_without_traceback(tmp_path, args, message):
    result = run(*args, "--output-dir", tmp_path / "out", "--no-download")
    assert one_line_error(result, message), result.stderr


def test_help_lists_every_technique_with_its_summary():
    result = run("--help")
    assert result.returncode == 0
    for name, p in PRESETS.items():
        assert f"  {name}" in result.stdout and p.summary in " ".join(result.stdout.split())


def test_a_huge_model_is_a_one_line_error(tmp_path, tiny_idx_dir):
    result = run("--hidden", "1000000000", "--data-dir", tiny_idx_dir, "--output-dir",
                 tmp_path / "out")
    assert one_line_error(result, "lower --hidden"), result.stderr


def test_a_train_size_beyond_the_data_is_a_one_line_error(tmp_path, tiny_idx_dir):
    result = run("--train-size", 301, "--data-dir", tiny_idx_dir, "--output-dir",
                 tmp_path / "out")
    assert one_line_error(result, "--train-size 301: fashion_mnist has only 300 training rows"), \
        result.stderr


def test_the_commands_run_as_a_module_too():
    for command in ("train", "compare", "sweep"):
        result = subprocess.run([sys.executable, "-m", "regjax", command, "--help"],
                                capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert result.returncode == 0 and f"usage: {command}.py" in result.stdout
    result = subprocess.run([sys.executable, "-m", "regjax", "fit"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "unknown command 'fit'" in result.stderr
