"""Output directories: refused when in use, not empty, unwritable or too small; nothing of a
user's is deleted; two runs never mix their files. A saved model.npz in Keras."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from regjax import data
from regjax.config import Config
from regjax.files import outdir
from regjax.presets import preset
from tests import keras_oracle as oracle
from tests.helpers import ROOT, one_line_error, script


def run_cli(*args):
    return script("train", *args)


def test_output_directory_safety(tmp_path, tiny_idx_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run_cli("--epochs", 1, "--data-dir", tiny_idx_dir, "--output-dir", out)
    assert result.returncode == 1 and "is not empty (notes.txt)" in result.stderr
    assert "--resume" in result.stderr and "--overwrite" in result.stderr
    result = run_cli("--epochs", 1, "--data-dir", tiny_idx_dir, "--output-dir", out, "--resume")
    assert result.returncode == 1 and "nothing to resume" in result.stderr
    result = run_cli("--epochs", 1, "--data-dir", tiny_idx_dir, "--output-dir", out,
                     "--overwrite")
    assert result.returncode == 0, result.stderr
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite deletes only regjax's files
    (out / "file").write_text("")
    result = run_cli("--data-dir", tiny_idx_dir, "--output-dir", out / "file")
    assert result.returncode == 1 and "is not a directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_full_disk_is_detected_before_training(tmp_path, monkeypatch):
    from regjax.train import budget
    from tests.helpers import SPEC

    needed = budget.checkpoint_bytes(preset("augmentation"), SPEC, 2)
    assert needed > 4 * 4 * 692_000  # CNN: 692k weights, with Adam's two moments
    monkeypatch.setattr(outdir.shutil, "disk_usage",
                        lambda _: types.SimpleNamespace(free=needed - 1))
    with pytest.raises(outdir.OutputDirError, match="MB free; this run needs about"):
        outdir.prepare_output_dir(tmp_path / "run", resume=False, overwrite=False,
                                     needed_bytes=needed)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to a read-only directory")
def test_an_unwritable_directory_is_detected_before_training(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(outdir.OutputDirError, match="cannot write to output directory"):
            outdir.prepare_output_dir(tmp_path / "run", resume=False, overwrite=False,
                                         needed_bytes=0)
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="needs a read-only /sys")
def test_an_uncreatable_directory_is_a_one_line_error(tiny_idx_dir):
    # /sys refuses new directories even to root.
    result = run_cli("--data-dir", tiny_idx_dir, "--output-dir", "/sys/regjax-run")
    assert result.returncode == 1, result.stderr
    assert "cannot write to output directory /sys/regjax-run" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr



HOLD = """
import sys, time
from pathlib import Path
from regjax.files.outdir import prepare_output_dir
lock = prepare_output_dir(Path(sys.argv[1]), resume=False, overwrite=False, needed_bytes=0)
(Path(sys.argv[1]) / "history.json").write_text("{}")
print("holding", flush=True)
time.sleep(600)
"""


def test_a_directory_in_use_is_refused_until_its_holder_ends(tmp_path, tiny_idx_dir):
    """A second run into a directory a run holds is refused, with --overwrite or --resume too,
    naming the holder; the lock goes with the holder, even killed with SIGKILL."""
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline() == "holding\n"
        result = run_cli("--epochs", 1, "--data-dir", tiny_idx_dir, "--output-dir", out,
                         "--overwrite")
        assert one_line_error(result, f"is in use by another run (pid {holder.pid}: "), \
            result.stderr
        for resume, overwrite in ((False, False), (True, False), (False, True)):
            (out / outdir.CHECKPOINTS).mkdir(exist_ok=True)
            with pytest.raises(outdir.OutputDirError, match="in use by another run"):
                outdir.prepare_output_dir(out, resume=resume, overwrite=overwrite,
                                             needed_bytes=0)
        assert (out / "history.json").read_text() == "{}"  # the holder's files are untouched
    finally:
        holder.kill()
        holder.wait()
    lock = outdir.prepare_output_dir(out, resume=False, overwrite=True, needed_bytes=0)
    lock.release()
    assert not (out / "history.json").exists()


@pytest.mark.parametrize("args", [
    ("--technique", "batchnorm", "--l2", "0.001"),  # batch-norm statistics and a penalty
    # The CNN (conv layout, flatten order) and the notebook's smoothed loss in test_loss.
    ("--technique", "augmentation", "--hidden", "32", "--label-smoothing", "0.1")])
def test_a_model_npz_from_train_py_gives_keras_the_same_test_metrics(tmp_path, tiny_idx_dir,
                                                                     args):
    """The weights train.py writes, loaded into the notebook's Keras model, evaluate on the
    test split to the test_loss and test_accuracy train.py reported (penalties and smoothing
    in the loss, as Keras reports it). Both evaluate in float32: the loss agrees to ~1e-6
    relative; accuracy exactly unless a row's top two logits are within rounding."""
    out = tmp_path / "run"
    result = run_cli(*args, "--epochs", 1, "--data-dir", tiny_idx_dir, "--output-dir", out)
    assert result.returncode == 0, result.stderr
    history = json.loads((out / "history.json").read_text())
    config = Config.from_dict(history["config"])
    model = oracle.keras_model(config)
    with np.load(out / "model.npz") as archive:
        model.set_weights(oracle.keras_weights(dict(archive), config))
    test = data.read_idx_dataset("tiny", tiny_idx_dir).test
    loss, accuracy = model.evaluate(oracle.keras_inputs(test.images, config),
                                    oracle.one_hot(test.labels), batch_size=len(test),
                                    verbose=0)
    assert history["test_loss"] == pytest.approx(loss, rel=1e-5)
    assert history["test_accuracy"] == pytest.approx(accuracy, abs=1 / len(test))
