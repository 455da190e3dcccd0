"""scripts/train.py as a user runs it: outputs, the saved model, and bad input."""

import json
import subprocess
import sys

import pytest

import regjax
from regjax import data
from regjax.cli import train as cli
from regjax.config import Config
from regjax.presets import PRESETS
from regjax.reports import plots
from tests.helpers import ROOT, one_line_error, script


def run(*args, cwd=None):
    return script("train", *args, cwd=cwd)


@pytest.mark.parametrize("technique", ["l2", "batchnorm", "augmentation"])
def test_train_writes_history_and_a_model_that_loads_back(tmp_path, tiny_idx_dir, technique):
    out = tmp_path / "run"
    result = run("--technique", technique, "--data-dir", tiny_idx_dir, "--epochs", 2,
                 "--output-dir", out)
    assert result.returncode == 0, result.stderr
    assert len([line for line in result.stdout.splitlines() if line.startswith("epoch ")]) == 2
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
        int(plots.DPI * x) for x in plots.RUN_SIZE)


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


def in_process(main, args, capsys) -> tuple[int, str]:
    """Runs a command's main as its script would (argparse exits with status 2); returns
    (exit status, stderr). In-process: each case costs no Python start."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip()


def assert_one_line_error(code: int, err: str, message: str) -> None:
    assert code != 0 and message in err and len(err.splitlines()) == 1 \
        and "Traceback" not in err, (code, err)


@pytest.mark.parametrize("args,message", [
    (["--technique", "dropuot"], "did you mean 'dropout'"),
    (["--dropout", "1.0"], "dropout must be in [0, 1)"),
    (["--dropout", "-0.1"], "dropout must be in [0, 1)"),
    (["--l1=-1e-3"], "l1 must be >= 0"),
    (["--l2", "-1"], "l2 must be >= 0"),
    (["--batch-size", "0"], "batch_size must be >= 1"),
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--label-smoothing", "1.5"], "label_smoothing must be in [0, 1]"),
    (["--learning-rate", "0"], "learning_rate must be > 0"),
    (["--epochs", "ten"], "invalid int value"),
    (["--hidden", "12,x"], "comma-separated integers"),
    (["--data-dir", "/nonexistent/dir"], "does not exist"),
    (["--dataset", "cifar10"], "unknown dataset 'cifar10'"),
    (["--dataset", "fashion-mnist"], "did you mean 'fashion_mnist'"),
    (["--model", "rnn"], "invalid choice: 'rnn'"),
    (["--validation", "holdout"], "invalid choice: 'holdout'"),
    (["--hidden", "0"], "hidden sizes must be positive integers"),
    (["--batch-size", "sixty"], "invalid int value"),
    (["--learning-rate", "nan"], "learning_rate must be a finite number"),
    (["--l2", "nan"], "l2 must be a finite number"),
    (["--dropout", "nan"], "dropout must be a finite number"),
    (["--patience", "-1", "--early-stopping"], "patience must be >= 0"),
    (["--min-delta", "-0.1", "--early-stopping"], "min_delta must be >= 0"),
    (["--rotation-range", "-5", "--augment"], "rotation_range must be >= 0"),
    (["--shift-range", "-0.1", "--augment"], "shift_range must be >= 0"),
    (["--shear-range", "-1", "--augment"], "shear_range must be >= 0"),
    (["--zoom-range", "1", "--augment"], "zoom_range must be in [0, 1)"),
    (["--seed", "-1"], "seed must be in [0, 2147483647]"),
    (["--train-size", "-5"], "train_size must be >= 0"),
    (["--label-noise", "1.5"], "label_noise must be in [0, 1]"),
    (["--keep-checkpoints", "0"], "--keep-checkpoints must be >= 1"),
    (["--technique"], "expected one argument"),
    (["--epochs", "3", "--bogus"], "unrecognized arguments: --bogus"),
    # The seed reaches the program as an int32; every knob as a float32.
    (["--seed", "2147483648"], "seed must be in [0, 2147483647]"),
    (["--seed", str(2**64)], "seed must be in [0, 2147483647]"),
    (["--l1", "inf"], "l1 must be a finite number"),
    (["--l2", "1e300"], "l2 must be a finite number"),
    (["--weight-decay", "inf"], "weight_decay must be a finite number"),
    (["--gaussian-noise", "inf"], "gaussian_noise must be a finite number"),
    (["--mixup", "inf"], "mixup must be a finite number"),
    (["--rotation-range", "inf", "--augment"], "rotation_range must be a finite number"),
    # Abbreviations would not match the recorded command (resume hints, merges).
    (["--out", "somewhere"], "unrecognized arguments: --out"),
    (["--res"], "unrecognized arguments: --res"),
    (["--output-dir", ""], "expected a directory, got an empty name"),
    (["--data-dir", ""], "expected a directory, got an empty name"),
    # Flags that act only through a switch the run does not turn on.
    (["--rotation-range", "30"], "--rotation-range has no effect without --augment"),
    (["--technique", "dropout", "--shift-range", "2"], "--shift-range has no effect"),
    (["--min-delta", "0.1"], "--min-delta has no effect without --early-stopping"),
    (["--restore-best-weights"], "--restore-best-weights has no effect without"),
    (["--data-dir", ROOT / "README.md"], "is a file, not a directory"),
])
def test_bad_input_is_one_line_without_traceback(tmp_path, capsys, args, message):
    code, err = in_process(cli.main, ["--output-dir", tmp_path / "out", "--no-download",
                                      *args], capsys)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "out").exists()  # nothing left behind


def test_a_data_problem_leaves_no_output_directory(tmp_path, capsys, tiny_idx_dir):
    """A run that fails before writing anything removes the directory it made (which then
    held only its lock file), and an unreadable data directory is named in one line."""
    code, err = in_process(cli.main, ["--train-size", 1, "--data-dir", tiny_idx_dir,
                                      "--output-dir", tmp_path / "out"], capsys)
    assert_one_line_error(code, err, "1 rows leave no training row after the validation "
                                     "split (the last 20% validates): use --train-size 2")
    assert not (tmp_path / "out").exists()


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
