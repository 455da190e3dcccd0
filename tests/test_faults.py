"""Faults around a run and what a user may hand it: a crash between results and report,
resuming on other data, a stop while some models had already finished, a second Ctrl-C in a
compiled program, checkpoint errors over other errors, durable checkpoints, locks, and the
Python API's inputs. Each test failed before the fix it guards."""

import errno
import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import regjax
from regjax import data, rng
from regjax.cli import common as cli_common
from regjax.cli.compare import compare_main
from regjax.cli.sweep import sweep_main
from regjax.data import idx
from regjax.data.split import Split
from regjax.files import atomic, modelfile, outdir
from regjax.files.checkpoint import CheckpointError, Checkpoints
from regjax.presets import preset
from regjax.train import budget
from regjax.train.batched import fit_batched
from tests.helpers import ROOT, SPEC, quiet
from tests.test_cli import assert_one_line_error, in_process


def test_a_crash_before_the_report_keeps_the_checkpoints_and_resumes(tmp_path, tiny_idx_dir,
                                                                     monkeypatch):
    out = tmp_path / "compare"
    args = ["--techniques", "baseline", "--seeds", "2", "--epochs", "1", "--quiet",
            "--data-dir", str(tiny_idx_dir), "--output-dir", str(out)]

    def crash(*_):
        raise RuntimeError("the disk went away")

    monkeypatch.setattr("regjax.reports.documents.write", crash)
    with pytest.raises(RuntimeError):
        compare_main(args)
    assert outdir.saved_epochs(out / "checkpoints")  # still there to resume from
    monkeypatch.undo()
    assert compare_main([*args, "--resume"]) == 0
    assert (out / "report.md").exists() and not (out / "checkpoints").exists()


def test_resuming_on_other_data_of_the_same_size_is_refused(tmp_path, small):
    train, val, _ = small
    config = preset("baseline", epochs=2)
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    regjax.fit(config, train, val, log=quiet, checkpoints=checkpoints,
               should_stop=iter([False, True]).__next__)
    other = Split(train.images[::-1].copy(), train.labels[::-1].copy())
    with pytest.raises(CheckpointError, match="trained on other data"):
        regjax.fit(config, other, val, log=quiet, checkpoints=checkpoints, resume=True)
    checkpoints.close()


def test_a_stop_keeps_the_models_that_had_finished(small):
    """Stopped after three epochs: the model that had stopped early at epoch 2 is complete
    and evaluated on test; the other is interrupted."""
    train, val, test = small
    configs = [preset("early_stopping", patience=0, min_delta=10.0, epochs=8),
               preset("baseline", seed=1, epochs=8)]
    calls = iter(range(100))
    first, second = fit_batched(configs, train, val, test,
                                should_stop=lambda: next(calls) >= 3)
    assert first["stopped_early"] and first["epochs_run"] == 2
    assert first["status"] == "completed" and "test_accuracy" in first
    assert second["status"] == "interrupted" and second["epochs_run"] == 3


def test_a_resumed_batch_counts_its_epochs_from_the_checkpoint(tmp_path, small):
    train, val, test = small
    configs = [preset("baseline", seed=s, epochs=3) for s in (0, 1)]
    checkpoints = Checkpoints(tmp_path / "batch")
    calls = iter(range(100))
    fit_batched(configs, train, val, test, checkpoints=checkpoints,
                should_stop=lambda: next(calls) >= 1)
    shown = []
    fit_batched(configs, train, val, test, checkpoints=checkpoints, resume=True,
                on_epoch=lambda done, total: shown.append((done, total)))
    checkpoints.close()
    assert shown == [(1, 3), (2, 3), (3, 3)]


def test_a_checkpoint_error_does_not_hide_the_error_in_flight(tmp_path, small, monkeypatch):
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    real, failing = checkpoints.wait, []

    def wait():  # the checkpoint being written when the error came fails too
        if failing:
            raise CheckpointError("writing a checkpoint failed")
        real()

    monkeypatch.setattr(checkpoints, "wait", wait)
    calls = iter(range(100))

    def stop():
        if next(calls) == 1:
            failing.append(True)
            raise KeyboardInterrupt  # e.g. an error while a checkpoint was being written
        return False

    with pytest.raises(KeyboardInterrupt):
        regjax.fit(preset("baseline", epochs=3), *small[:2], log=quiet,
                   checkpoints=checkpoints, should_stop=stop)


def test_a_checkpoint_is_flushed_to_disk_before_it_counts(tmp_path, small, monkeypatch):
    """Its arrays' file, its directory and the checkpoints directory (where orbax renamed
    it) are each fsynced, so a power cut cannot lose a checkpoint reported as written."""
    synced = []
    real = atomic.os.fsync
    monkeypatch.setattr(atomic.os, "fsync",
                        lambda fd: (synced.append(atomic.os.readlink(f"/proc/self/fd/{fd}")),
                                    real(fd)))
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    regjax.fit(preset("baseline", epochs=1), *small[:2], log=quiet, checkpoints=checkpoints)
    checkpoints.close()
    where = (tmp_path / "checkpoints").resolve()
    assert any(path.endswith("/arrays.npz") for path in synced), synced  # before the rename
    for path in (where / "1", where):
        assert str(path) in synced, (path, synced)


def test_a_second_signal_stops_a_compiled_program_at_once():
    """The main thread blocked in a compiled program that never ends: the first SIGINT asks
    for a stop after it, the second ends the process with status 130."""
    child = (
        "import jax, jax.numpy as jnp\n"
        "from regjax.cli.common import StopOnSignal\n"
        "forever = jax.jit(lambda x: jax.lax.while_loop(lambda c: c >= 0, lambda c: c + 1.0, x))\n"
        "forever.lower(0.0).compile()\n"
        "with StopOnSignal('child'):\n"
        "    print('started', flush=True)\n"
        "    forever(jnp.float32(0.0)).block_until_ready()\n")
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stdout.readline().strip() == "started"
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "finishing the current epoch" in err and "SIGINT again: stopping now" in err


def test_a_stop_before_the_first_epoch_says_nothing_was_saved(tmp_path, small, capsys):
    """Ctrl-C during compilation: no checkpoint exists; --resume then starts from the
    beginning (tests/test_inputs.py runs it), so the message gives that command too."""
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    message = cli_common.stopped_message("train.py", checkpoints, "python train.py --resume")
    assert "nothing was saved" in message and "--resume starts from the beginning" in message
    saved = Checkpoints(checkpoints)
    regjax.fit(preset("baseline", epochs=1), *small[:2], log=quiet, checkpoints=saved)
    saved.close()
    assert "Resume with:\n  python train.py --resume" in cli_common.stopped_message(
        "train.py", checkpoints, "python train.py --resume")


def test_an_output_directory_without_locks_is_named(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(outdir.fcntl, "flock", no_locks)
    with pytest.raises(outdir.OutputDirError, match="does not support locks"):
        outdir.prepare_output_dir(tmp_path / "out", resume=False, overwrite=False,
                                     needed_bytes=0)
    assert not (tmp_path / "out").exists()


def test_the_estimates_count_every_copy_of_the_weights(tmp_path, small):
    """A checkpoint of a run with a moving average and restored best weights is no larger
    than the budget reserves for one; the average and the best weights are one more copy of
    the weights each."""
    config = preset("weight_ema", early_stopping=True, restore_best_weights=True, epochs=1)
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    regjax.fit(config, *small[:2], log=quiet, checkpoints=checkpoints)
    checkpoints.close()
    written = (tmp_path / "checkpoints" / "1" / "arrays" / "arrays.npz").stat().st_size
    _, weights, model = budget.state_bytes(config, SPEC)
    per_checkpoint = (budget.checkpoint_bytes(config, SPEC, 1) - model) / 3
    assert written <= per_checkpoint * 1.01  # the .npz's headers aside
    plain = budget.checkpoint_bytes(preset("baseline"), SPEC, 1)
    assert budget.checkpoint_bytes(config, SPEC, 1) - plain >= 2 * 3 * weights


def test_the_disk_estimate_traces_each_structure_once():
    budget._state_shapes.cache_clear()
    sizes = {budget.checkpoint_bytes(preset("dropout", seed=s, dropout=0.1 + s / 1e4), SPEC, 2)
             for s in range(200)}
    assert len(sizes) == 1 and budget._state_shapes.cache_info().misses == 1


def test_keys_stay_threefry_whatever_jax_defaults_to():
    import jax

    expected = np.asarray(jax.random.bits(jax.random.fold_in(jax.random.key(7), 1), (5,)))
    jax.config.update("jax_default_prng_impl", "rbg")
    try:
        ours = np.asarray(rng.bits(jax.random.fold_in(rng.root_key(7), 1), (5,)))
        with pytest.raises(ValueError, match="threefry keys only"):
            rng.bits(jax.random.key(0), (5,))
    finally:
        jax.config.update("jax_default_prng_impl", "threefry2x32")
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("main,args,message", [
    (compare_main, ["--techniques", "baseline,baseline"], "baseline given more than once"),
    (sweep_main, ["--technique", "l2", "--values", "1e-3,0.001"], "0.001 given more than once"),
    (sweep_main, ["--technique", "l2", "--values", "0,inf"], "l2 must be a finite number"),
    (compare_main, ["--out", "x"], "unrecognized arguments: --out"),
    (compare_main, ["--output-dir", ""], "expected a directory, got an empty name"),
])
def test_comparisons_refuse_what_would_mislead(tmp_path, capsys, main, args, message):
    code, err = in_process(main, [*args, "--no-download"], capsys)
    assert_one_line_error(code, err, message)


def test_sweep_groups_name_their_values_exactly():
    from regjax.reports.names import group_name

    assert group_name("l2", 1e-3) == "l2=0.001" and group_name("l2", 0.0) == "l2=0"
    assert group_name("l2", 1e-3) != group_name("l2", 1.0000001e-3)


# ------------------------------------------------------------------- the Python API's inputs

@pytest.mark.parametrize("overrides,message", [
    (dict(epochs=1.5), "epochs must be a whole number"),
    (dict(seed=2**31), "seed must be in [0, 2147483647]"),
    (dict(l2="0.1"), "l2 must be a number"),
    (dict(batchnorm=1), "batchnorm must be True or False"),
    (dict(hidden=[32, 0]), "hidden sizes must be positive integers"),
])
def test_a_config_names_its_bad_field(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        preset("baseline", **overrides)


def test_hidden_sizes_may_be_a_list(small):
    config = preset("baseline", hidden=[32], epochs=1)
    assert config == preset("baseline", hidden=(32,), epochs=1)
    history, _ = regjax.fit(config, *small[:2], log=quiet)
    assert history["epochs_run"] == 1


def test_evaluate_checks_what_it_is_given(small):
    _, model = regjax.fit(preset("baseline", epochs=1), *small[:2], log=quiet)
    test = small[2]
    assert regjax.evaluate(model, (test.images, test.labels)) == regjax.evaluate(model, test)
    floats = (test.images / np.float32(255), test.labels)  # as Keras users scale them
    assert regjax.evaluate(model, floats)["accuracy"] == regjax.evaluate(model, test)["accuracy"]
    for rows, message in [((test.images * 1.0, test.labels), "float images must hold values "
                                                             "in \\[0, 1\\]"),
                          ((test.images, np.full(len(test), 255)), "labels must be classes"),
                          ((test.images, np.eye(10)[test.labels]), "not one-hot"),
                          ("rows", "expected a Split or an \\(images, labels\\) pair")]:
        with pytest.raises(ValueError, match=message):
            regjax.evaluate(model, rows)


def test_load_model_names_the_file_it_cannot_use(tmp_path, small):
    _, model = regjax.fit(preset("baseline", hidden=(8,), epochs=1), *small[:2], log=quiet)
    good = tmp_path / "model.npz"
    modelfile.save_model(good, model)
    raw = good.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(raw[:len(raw) // 2])
    (tmp_path / "text.npz").write_text("not a model\n")
    with np.load(good) as archive:
        arrays = {k: archive[k] for k in archive.files}
    config = json.loads(str(arrays[modelfile.CONFIG_KEY]))
    variants = {"bad-config.npz": {**arrays, modelfile.CONFIG_KEY: np.asarray('{"bogus": 1}')},
                "bad-rate.npz": {**arrays, modelfile.CONFIG_KEY: np.asarray(
                    json.dumps({**config, "dropout": 5.0}))},
                "int8.npz": {k: v if k in (modelfile.CONFIG_KEY, modelfile.SPEC_KEY)
                             else v.astype(np.int8) for k, v in arrays.items()}}
    for name, content in variants.items():
        np.savez(tmp_path / name, **content)
    for name, message in [("truncated.npz", "not a model file written by regjax"),
                          ("text.npz", "not a model file written by regjax"),
                          ("bad-config.npz", "unknown fields"),
                          ("bad-rate.npz", "dropout must be in"),
                          ("int8.npz", "names, shapes or dtypes")]:
        with pytest.raises(ValueError, match=message) as raised:
            regjax.load_model(tmp_path / name)
        assert name in str(raised.value)


def test_empty_and_unreadable_data_are_named(tmp_path, fashion, monkeypatch):
    from tests.helpers import write_idx_dir

    rows = Split(fashion.train.images[:10], fashion.train.labels[:10])
    empty = Split(rows.images[:0], rows.labels[:0])
    for name, (train, test) in {"no-train": (empty, rows), "no-test": (rows, empty)}.items():
        directory = write_idx_dir(tmp_path / name, train, test)
        with pytest.raises(idx.DataError, match="holds no images"):
            data.load_dataset("fashion_mnist", directory)

    def denied(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(data.Path, "is_dir", denied)
    with pytest.raises(idx.DataError, match="cannot read .*: Permission denied"):
        data.load_dataset("fashion_mnist", tmp_path / "no-test")
