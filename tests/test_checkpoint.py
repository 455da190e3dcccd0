"""Checkpoints and resume: a run killed or interrupted mid-epoch and resumed ends bitwise equal
to an uninterrupted one; interruption, divergence and output-directory safety."""

import json
import math
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import regjax
from regjax.data.split import Split
from regjax.files import outdir
from regjax.files.checkpoint import CheckpointError, Checkpoints
from regjax.presets import preset
from regjax.train import step
from regjax.train.engine import Engine
from tests.helpers import ROOT, SPEC, make_program, quiet, script, write_idx_dir

SCRIPT = str(ROOT / "scripts" / "train.py")
# Every kind of state a checkpoint carries: parameters, Adam's moments, batch-norm statistics,
# dropout keys, early-stopping counters and the best weights. On 24,000 real rows (19,200 to
# train on) batch 16 makes an epoch long enough (1,200 steps: about a second on 2 CPU cores,
# tens of milliseconds on a GPU, far more than the microseconds a kill takes) that a kill or
# signal sent as an epoch's line appears lands inside the next epoch.
RUN = ["--technique", "dropout", "--batchnorm", "--early-stopping", "--patience", "10",
       "--restore-best-weights", "--epochs", "3", "--batch-size", "16"]
TIMINGS = {"epoch_seconds", "compile_seconds", "train_steps_per_second"}


@pytest.fixture(scope="module")
def rows_24k(tmp_path_factory, fashion):
    """The first 24,000 training rows and 2,000 test rows of Fashion-MNIST, as IDX files."""
    return write_idx_dir(tmp_path_factory.mktemp("idx24k"),
                         Split(fashion.train.images[:24000], fashion.train.labels[:24000]),
                         Split(fashion.test.images[:2000], fashion.test.labels[:2000]),
                         gz=False)


def start(out, data_dir, *extra):
    return subprocess.Popen([sys.executable, SCRIPT, *RUN, "--data-dir", str(data_dir),
                             "--output-dir", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    stdout, stderr = process.communicate(timeout=600)
    return process.returncode, stdout, stderr


def wait_for_epoch(process, epoch):
    """Returns once the run has printed the line of `epoch`: the next epoch is then running (an
    epoch line is flushed when the epoch ends, whatever the device's speed)."""
    for line in iter(process.stdout.readline, ""):
        if line.startswith(f"epoch {epoch}/"):
            return
    raise AssertionError(f"the run ended before epoch {epoch}: {finish(process)}")


def outcome(out):
    history = json.loads((out / outdir.HISTORY).read_text())
    with np.load(out / outdir.MODEL) as archive:
        arrays = {k: archive[k] for k in archive.files}
    return {k: v for k, v in history.items() if k not in TIMINGS}, arrays


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, rows_24k):
    out = tmp_path_factory.mktemp("uninterrupted")
    code, _, stderr = finish(start(out, rows_24k))
    assert code == 0, stderr
    return outcome(out)


def assert_same_run(out, uninterrupted):
    history, arrays = outcome(out)
    expected_history, expected_arrays = uninterrupted
    assert history == expected_history
    assert arrays.keys() == expected_arrays.keys()
    for name, value in expected_arrays.items():
        np.testing.assert_array_equal(arrays[name], value, err_msg=name)  # bitwise


@pytest.mark.skipif(jax.default_backend() != "cpu",
                    reason="an accelerator runs these epochs in milliseconds: the run can end "
                           "before the kill lands (failed so on an H200)")
def test_killed_mid_epoch_then_resumed_equals_an_uninterrupted_run(tmp_path, uninterrupted,
                                                                   rows_24k):
    out = tmp_path / "run"
    process = start(out, rows_24k)
    # Into the third epoch: checkpoint 1 is whole (a save waits for the one before), checkpoint
    # 2 may be half-written.
    wait_for_epoch(process, 2)
    process.kill()  # SIGKILL: no handler runs, nothing is flushed
    process.wait()
    assert not (out / outdir.MODEL).exists()
    assert Checkpoints(out / outdir.CHECKPOINTS).latest_epoch() < 3  # killed mid-run
    code, stdout, stderr = finish(start(out, rows_24k, "--resume"))
    assert code == 0, stderr
    assert "resuming from the checkpoint of epoch" in stdout
    assert_same_run(out, uninterrupted)
    # Only whole checkpoints remain: the newest two (the best is one of them here).
    names = sorted(p.name for p in (out / outdir.CHECKPOINTS).iterdir())
    assert names == ["2", "3"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_finishes_the_epoch_saves_and_resumes_exactly(tmp_path, uninterrupted, rows_24k,
                                                              sig):
    out = tmp_path / "run"
    process = start(out, rows_24k)
    wait_for_epoch(process, 1)
    process.send_signal(sig)
    code, stdout, stderr = finish(process)
    assert code == 128 + sig, stderr
    history = json.loads((out / outdir.HISTORY).read_text())
    assert history["status"] == "interrupted" and 1 <= history["epochs_run"] < 3
    assert Checkpoints(out / outdir.CHECKPOINTS).latest_epoch() == history["epochs_run"]
    assert "Resume with:" in stderr and "--resume" in stderr and "Traceback" not in stderr
    code, _, stderr = finish(start(out, rows_24k, "--resume"))
    assert code == 0, stderr
    assert_same_run(out, uninterrupted)


def test_keeps_the_newest_checkpoints_plus_the_best(tmp_path):
    checkpoints = Checkpoints(tmp_path, keep=2)
    for epoch, val_loss in enumerate([3.0, 1.0, 2.0, 4.0, 5.0], start=1):
        if epoch == 4:  # a resumed run must still know which earlier checkpoint is best
            checkpoints.close()
            checkpoints = Checkpoints(tmp_path, keep=2)
        checkpoints.save(epoch, {"w": jnp.full(3, epoch, jnp.float32)}, {"epoch": epoch},
                         val_loss)
    checkpoints.wait()
    assert checkpoints.all_epochs() == [2, 4, 5]  # 2 has the lowest val_loss
    like = {"w": jnp.zeros(3, jnp.float32)}
    np.testing.assert_array_equal(checkpoints.arrays(2, like)["w"], [2, 2, 2])
    assert checkpoints.record(4) == {"epoch": 4}


def test_a_diverging_epoch_is_never_saved_over_a_good_checkpoint(tmp_path, small, monkeypatch):
    # Fault injection: from the second epoch on, the epoch's parameters become NaN.
    train_epoch = step.train_epoch

    def poisoned(program, state, rest, images, labels, epoch, knobs, num_steps=None):
        state, metrics = train_epoch(program, state, rest, images, labels, epoch, knobs)
        scale = jnp.where(epoch >= 1, jnp.nan, 1.0)
        return state._replace(params=jax.tree.map(lambda p: p * scale, state.params)), metrics

    monkeypatch.setattr(step, "train_epoch", poisoned)
    config = preset("baseline", epochs=4)
    checkpoints = Checkpoints(tmp_path)
    history, _ = regjax.fit(config, *small[:2], log=quiet, checkpoints=checkpoints)
    assert history["status"] == "diverged" and history["diverged_epoch"] == 2
    assert history["epochs_run"] == 1 and all(map(math.isfinite, history["val_loss"]))
    assert checkpoints.all_epochs() == [1]
    engine = Engine([config], SPEC)  # a run's checkpoint holds its engine's state
    saved = checkpoints.arrays(1, {"state": engine.init_state()})["state"]
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(saved.params))
    model = engine.trained_model(saved)
    assert regjax.evaluate(model, small[1])["loss"] == pytest.approx(history["val_loss"][0],
                                                                     rel=1e-6)


def run_cli(*args):
    return script("train", *args)


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, tiny_idx_dir):
    out = tmp_path / "run"
    result = run_cli("--learning-rate", "1e20", "--epochs", 3, "--data-dir", tiny_idx_dir,
                     "--output-dir", out)
    assert result.returncode == 3
    assert "non-finite in epoch 1" in result.stderr and "Lower --learning-rate" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    history = json.loads((out / outdir.HISTORY).read_text())
    assert history["status"] == "diverged" and history["epochs_run"] == 0
    assert not (out / outdir.MODEL).exists()
    assert Checkpoints(out / outdir.CHECKPOINTS).all_epochs() == []


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, tiny_idx_dir):
    out = tmp_path / "run"
    assert run_cli("--epochs", 1, "--data-dir", tiny_idx_dir, "--output-dir", out).returncode == 0
    for flags, message in ((["--dropout", "0.5"], "dropout=0.0 (now 0.5)"),
                           (["--hidden", "32"], "hidden=(128, 64) (now (32,))")):
        result = run_cli("--epochs", 1, *flags, "--data-dir", tiny_idx_dir, "--output-dir", out,
                         "--resume")
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    # A checkpoint whose arrays do not fit the model: an error too, not a traceback.
    checkpoints = Checkpoints(tmp_path / "other")
    checkpoints.save(1, {"state": {"w": jnp.zeros(3)}}, {}, 0.0)
    checkpoints.wait()
    with pytest.raises(CheckpointError, match="does not fit this model"):
        checkpoints.arrays(1, {"state": make_program(preset("baseline"))[1]})


def test_a_failing_checkpoint_write_stops_training_with_a_clear_error(tmp_path, small):
    checkpoints = Checkpoints(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    checkpoints._manager.save = disk_full
    with pytest.raises(CheckpointError, match="writing a checkpoint failed .*No space left"):
        regjax.fit(preset("baseline", epochs=3), *small[:2], log=quiet, checkpoints=checkpoints)


def test_resume_falls_back_from_a_damaged_newest_checkpoint(tmp_path, tiny_idx_dir):
    out = tmp_path / "run"
    flags = ["--technique", "dropout", "--epochs", 4, "--data-dir", tiny_idx_dir,
             "--keep-checkpoints", 3, "--output-dir", out]
    assert run_cli(*flags).returncode == 0
    finished = outcome(out)
    newest = out / outdir.CHECKPOINTS / "4"
    for path in [*(newest / "arrays").rglob("*"), *(newest / "record").rglob("*")]:
        if path.is_file():  # the arrays and record of epoch 4 damaged on disk
            path.write_bytes(b"")
    result = run_cli(*flags, "--resume")
    assert result.returncode == 0, result.stderr
    assert "the checkpoint of epoch 4 is damaged" in result.stdout
    assert "resuming from the checkpoint of epoch 3" in result.stdout
    assert_same_run(out, finished)  # epoch 4 trained again: the same run, bit for bit


def test_resuming_a_finished_run_trains_no_further_epoch(tmp_path, small):
    """Its last checkpoint is taken before the run is marked completed: resumed, it is
    restored and evaluated, not trained on past its epochs."""
    config = preset("baseline", epochs=2, hidden=(16,))
    checkpoints = Checkpoints(tmp_path)
    first, _ = regjax.fit(config, *small, log=quiet, checkpoints=checkpoints)
    epochs = iter(range(100))  # a cap: were it to train on, it would stop, not hang
    again, _ = regjax.fit(config, *small, log=quiet, checkpoints=checkpoints, resume=True,
                          should_stop=lambda: next(epochs) >= 3)
    checkpoints.close()
    assert again["epochs_run"] == 2 and again["status"] == "completed"
    assert {k: v for k, v in again.items() if k not in TIMINGS} == \
        {k: v for k, v in first.items() if k not in TIMINGS}
