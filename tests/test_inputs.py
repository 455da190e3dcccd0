"""What a user may give wrong, refused before anything trains: a study's grid values outside
their knob's range or applying to no technique, a resume of another plan, a resume after a
stop before the first epoch, the Python API's arguments, paths the file system refuses, and
one kind of run's directory used by another. Each test failed before the fix it guards."""

import json
import os
import re
import subprocess
import sys

import pytest

import regjax
from regjax.cli.study import study_main
from regjax.experiment import runner
from regjax.experiment.study import study_plan
from regjax.files.checkpoint import CheckpointError
from regjax.models import TrainedModel, make_model
from regjax.reports import documents
from tests.helpers import ROOT, SPEC, script
from tests.test_study import synthetic

# ------------------------------------------------------------------- a study's grid

@pytest.mark.parametrize("flags, message", [
    (["--grid", "dropout=0.25,1.5"], "--grid: dropout must be in [0, 1), got 1.5"),
    (["--grid", "dropout=nan,0.25"], "--grid: dropout must be a finite number"),
    (["--grid", "learning_rate=0,0.001"], "--grid: learning_rate must be > 0, got 0.0"),
    (["--grid", "dropout=1.0"], "--grid: dropout must be in [0, 1), got 1.0"),
    (["--grid", "l2=1e300"], "--grid: l2 must be a finite number (float32"),
    (["--grid", "augment_strength=-1"], "--grid: augment_strength must be a finite number >= 0"),
    (["--techniques", "augmentation", "--grid", "augment_strength=6"],
     "--grid: augment_strength=6 makes augmentation's zoom_range must be in [0, 1)"),
    (["--techniques", "dropout,l2", "--grid", "patience=1,2"],
     "--grid: no point of the grid applies to dropout, l2 (patience needs early_stopping"),
    (["--techniques", "baseline"], "--techniques: each cell of a study is a technique's "
                                   "difference from the plain network"),
])
def test_a_grid_the_user_typed_wrong_is_refused_before_training(tmp_path, capsys, flags,
                                                                 message):
    out = tmp_path / "out"
    for resume in ([], ["--resume"]):
        with pytest.raises(SystemExit) as exit:
            study_main([*flags, *resume, "--output-dir", str(out)])
        assert exit.value.code == 2
        error = capsys.readouterr().err.strip()
        assert message in error and "\n" not in error, error
        assert not out.exists()


def test_a_report_with_no_knob_response_to_draw_writes_the_rest(tmp_path):
    """A record whose grid applied to no technique (as an older regjax wrote one) reports
    without the response figure instead of failing in matplotlib."""
    record = {**synthetic({500: 0.05, 0: 0.0}), "command": "study", "dataset": "d",
              "data_source": "s", "code": {}}
    record["study"].update(grid={"patience": [1, 2]}, left_out=[], programs=2)
    assert set(documents.figures(record)) == {"map.png", "curves.png"}
    assert documents.write(record, tmp_path, "here") == ["report.md", "map.png", "curves.png"]


# ----------------------------------------------------------------- resuming a plan

def stopped_study(tmp_path, tiny_idx_dir, techniques) -> tuple:
    """A study of `techniques` stopped after its first program's first epoch (every
    program checkpoints what it finished), and the plan's settings."""
    settings = dict(grid={"dropout": [0.25, 0.5]}, train_sizes=[200], seeds=2,
                    command="study", epochs=2, data_dir=tiny_idx_dir,
                    output_dir=tmp_path / "study", progress=False)
    calls = []

    def after_one_epoch():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(runner.Stopped):
        runner.run(study_plan(techniques, **settings), should_stop=after_one_epoch)
    return settings


@pytest.mark.parametrize("now, difference", [
    (["dropout"], "techniques ['dropout', 'l2'] (now ['dropout'])"),
    (["dropout", "l2", "l1"], "techniques ['dropout', 'l2'] (now ['dropout', 'l2', 'l1'])"),
])
def test_resuming_with_other_techniques_is_refused_and_deletes_nothing(tmp_path, tiny_idx_dir,
                                                                       now, difference):
    settings = stopped_study(tmp_path, tiny_idx_dir, ["dropout", "l2"])
    checkpoints = tmp_path / "study" / "checkpoints"
    before = sorted(p.relative_to(checkpoints) for p in checkpoints.rglob("*"))
    with pytest.raises(CheckpointError, match=re.escape(difference)):
        runner.run(study_plan(now, **{**settings, "resume": True}))
    assert sorted(p.relative_to(checkpoints) for p in checkpoints.rglob("*")) == before
    changed = {**settings, "resume": True, "seeds": 3}
    with pytest.raises(CheckpointError, match=re.escape("seeds 2 (now 3)")):
        runner.run(study_plan(["dropout", "l2"], **changed))
    results = runner.run(study_plan(["dropout", "l2"], **{**settings, "resume": True}))
    assert results.models() == 2 * (1 + 2 * 2)  # the plain network, and 2 x 2 grid points


def test_resume_after_a_stop_before_the_first_epoch_starts_from_the_beginning(tmp_path,
                                                                              tiny_idx_dir):
    """Ctrl-C while the first epoch compiles: the advice is the command with --resume, and
    that command starts from the beginning, saying so in its first line."""
    out = tmp_path / "run"
    flags = ["--technique", "baseline", "--epochs", "1", "--data-dir", tiny_idx_dir,
             "--output-dir", out]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"),
                                *map(str, flags)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:  # the first line comes before the program compiles: stop then
        assert "training rows" in process.stdout.readline()
        process.send_signal(2)
        _, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "nothing was saved" in err and "--resume" in err
    resumed = script("train", *flags, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    first = resumed.stdout.splitlines()[0]
    assert "nothing to resume" in first and "starting from the beginning" in first
    assert json.loads((out / "history.json").read_text())["epochs_run"] == 1


def test_fit_resume_without_a_checkpoint_starts_from_the_beginning(tmp_path, small):
    from regjax.files.checkpoint import Checkpoints

    lines = []
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    history, _ = regjax.fit(regjax.preset("baseline", epochs=1), *small[:2], log=lines.append,
                            checkpoints=checkpoints, resume=True)
    checkpoints.close()
    assert history["epochs_run"] == 1 and "starting from the beginning" in lines[0]


# ------------------------------------------------------------- the Python API's arguments

def a_model() -> TrainedModel:
    config = regjax.preset("baseline", hidden=(4,))
    return TrainedModel(config, make_model(config, SPEC), SPEC)


@pytest.mark.parametrize("call, error, message", [
    (lambda: regjax.study(grid=[("dropout", [0, 0.25])]), TypeError, "grid must be a dict"),
    (lambda: regjax.study(["dropout"], grid={"dropout": "0.5"}), TypeError,
     "grid['dropout'] must be a number or a list of numbers, got str '0.5'"),
    (lambda: regjax.study(["dropout"], train_sizes="500"), TypeError,
     "train_sizes must be a number or a list of numbers"),
    (lambda: regjax.compare(None), TypeError, "techniques must be a technique name"),
    (lambda: regjax.compare([1, 2]), TypeError, "techniques must be a technique name"),
    (lambda: regjax.sweep("l2", {"a": 1}), TypeError, "values must be a number or a list"),
    (lambda: regjax.compare("baseline", output_dir=3), TypeError, "output_dir must be a path"),
    (lambda: regjax.fit({"dropout": 0.25}, None, None), TypeError,
     "config must be a regjax.Config, got dict; make one with regjax.preset('baseline', "
     "**{'dropout': 0.25})"),
    (lambda: regjax.fit((1, 2), regjax.preset("baseline"), None), TypeError,
     "config must be a regjax.Config, got tuple"),
    (lambda: regjax.evaluate("runs/x/model.npz", None), TypeError,
     "model must be a regjax.TrainedModel (what regjax.fit returns; regjax.load_model(path)"),
    (lambda: regjax.save_model(a_model(), "model.npz"), TypeError,
     "the path comes first: save_model(path, model)"),
    (lambda: regjax.plot({}), ValueError, "history lacks loss, accuracy"),
    (lambda: regjax.plot([1]), TypeError, "history must be a run's history"),
    (lambda: regjax.Results({}), ValueError, "not the results of compare, sweep or study"),
    (lambda: repr(regjax.Results({"groups": {}})), ValueError, "no command"),
])
def test_the_api_names_the_argument_it_cannot_take(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_the_api_takes_a_single_value_as_a_list_of_one_and_a_str_path(tmp_path,
                                                                      tiny_idx_dir):
    small = dict(seeds=1, epochs=1, data_dir=str(tiny_idx_dir), progress=False)
    study = regjax.study(["dropout"], grid={"dropout": 0.5}, train_sizes=200,
                         label_noises=0.2, output_dir=str(tmp_path / "s"), **small)
    assert set(study.record["study"]["settings"]) == {"baseline", "dropout dropout=0.5"}
    assert study.record["study"]["train_sizes"] == [200]
    assert (tmp_path / "s" / "results.json").exists()
    sweep = regjax.sweep("l2", 0.001, train_size=200, **small)
    assert list(sweep.groups) == ["l2=0.001"]


def test_results_files_are_checked_where_they_are_read_and_written(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps({"epochs_run": 1, "loss": [1.0]}))
    with pytest.raises(ValueError, match="history.json: not the results of compare, sweep or "
                                         r"study: a run's history \(history.json"):
        regjax.Results.load(tmp_path / "history.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json: not a results.json"):
        regjax.Results.load(tmp_path / "broken.json")
    record = {**synthetic({500: 0.0}), "command": "c", "dataset": "d", "data_source": "s",
              "code": {}}
    record["study"]["left_out"] = []
    with pytest.raises(ValueError, match="save takes a directory"):
        regjax.Results(record).save(tmp_path / "x" / "results.json")
    assert not (tmp_path / "x").exists()
    (tmp_path / "dir").mkdir()
    with pytest.raises(ValueError, match="is a directory: give the file to write"):
        regjax.save_model(tmp_path / "dir", a_model())


# --------------------------------------------------------------- paths and directories

def test_paths_the_file_system_refuses_are_one_line_errors(tmp_path):
    long = "a" * 300
    for flags in (["--output-dir", str(tmp_path / long)],
                  ["--data-dir", str(tmp_path / long), "--output-dir", str(tmp_path / "o")]):
        result = script("train", "--epochs", 1, *flags)
        assert result.returncode == 1, result.stderr
        assert "File name too long" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_paths_that_are_not_utf8_are_read_or_refused_in_one_line(tmp_path, tiny_idx_dir):
    """Bytes that are not UTF-8 in a path (Python keeps them as surrogates): the data
    directory is read (and printed with a \\udcff escape); an output directory, which the
    checkpoints record as text, is refused in one line and not created."""
    data_dir = os.fsencode(tmp_path) + b"/data-\xff"
    os.rename(tiny_idx_dir, data_dir)

    def train(out):
        return subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--epochs",
                               "1", "--data-dir", data_dir, "--output-dir", out],
                              capture_output=True, timeout=600)

    result = train(tmp_path / "run")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"data-\\udcff" in result.stdout and (tmp_path / "run" / "model.npz").exists()
    out = os.fsencode(tmp_path) + b"/run-\xff"
    result = train(out)
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 1 and "its name is not UTF-8 text" in err, err
    assert len(err.strip().splitlines()) == 1 and not os.path.exists(out)


def test_one_kind_of_run_never_writes_over_another(tmp_path, tiny_idx_dir):
    out = tmp_path / "run"
    assert script("train", "--epochs", 1, "--data-dir", tiny_idx_dir, "--output-dir",
                  out).returncode == 0
    before = sorted(p.name for p in out.iterdir())
    for flag in ("--overwrite", "--resume"):
        result = script("study", "--techniques", "l2", "--seeds", 1, "--epochs", 1, "--data-dir",
                        tiny_idx_dir, "--output-dir", out, flag, "--quiet")
        assert result.returncode == 1, result.stderr
        assert "holds another kind of run (history.json, model.npz)" in result.stderr
        assert sorted(p.name for p in out.iterdir()) == before


def test_parity_names_a_runs_file_it_cannot_read(tmp_path):
    broken = tmp_path / "runs.json"
    broken.write_text("{")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "parity.py"), "--runs",
                             str(broken), "--dry-run"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "not a runs file of parity.py" in result.stderr
    assert "Traceback" not in result.stderr
