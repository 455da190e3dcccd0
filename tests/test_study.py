"""study.py and regjax.study: every cell is the run compare.py gives in that regime (bitwise
on a CPU), the map's statistics against scipy and the definition of Holm's procedure, the
plan's grouping and what it leaves out, and bad studies refused in one line before training."""

import json

import jax
import numpy as np
import pytest
from scipy import stats

import regjax
from regjax.cli.compare import compare_main
from regjax.cli.study import study_main
from regjax.data.split import Split
from regjax.experiment.study import study_plan
from regjax.reports import study as report
from regjax.train import devices
from tests.helpers import write_idx_dir

SIZES, NOISES, SEEDS, EPOCHS = (150, 0), (0.0, 0.2), 2, 2
TIMING = ("epoch_seconds", "compile_seconds", "train_steps_per_second")


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory, fashion):
    """300 real training rows and 100 test rows on disk."""
    return write_idx_dir(tmp_path_factory.mktemp("idx"),
                         Split(fashion.train.images[:300], fashion.train.labels[:300]),
                         Split(fashion.test.images[:100], fashion.test.labels[:100]))


@pytest.fixture(scope="module")
def study(tmp_path_factory, idx_dir):
    out = tmp_path_factory.mktemp("study") / "out"
    code = study_main(["--techniques", "l2,dropout", "--train-size", "150,0",
                       "--label-noise", "0,0.2", "--seeds", str(SEEDS), "--epochs", str(EPOCHS),
                       "--data-dir", str(idx_dir), "--output-dir", str(out), "--quiet"])
    assert code == 0
    return out, json.loads((out / "results.json").read_text())


def without_timing(run: dict) -> dict:
    """A run as results.json holds it (hidden sizes a list), without its timings."""
    return {k: v for k, v in json.loads(json.dumps(run)).items() if k not in TIMING}


def compare_runs(tmp_path, idx_dir, techniques, *flags) -> dict:
    out = tmp_path / "-".join(["compare", *techniques, *flags]).replace("=", "")
    assert compare_main(["--techniques", ",".join(techniques), "--seeds", str(SEEDS),
                         "--epochs", str(EPOCHS), "--data-dir", str(idx_dir),
                         "--output-dir", str(out), "--quiet", *flags]) == 0
    return json.loads((out / "results.json").read_text())["groups"]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="bitwise equality is promised on a "
                    "CPU, where each device trains its models one after another; an "
                    "accelerator vmaps them, and may sum in another order")
def test_every_cell_equals_what_compare_gives_in_its_regime(tmp_path, idx_dir, study):
    _, results = study
    # The study trains l2's, dropout's and the baseline's models of all four regimes in six
    # programs (one per structure and number of rows), label-noise levels and seeds
    # together; compare.py trains each regime apart, each technique in its own program.
    assert results["study"]["programs"] == 6
    for size in SIZES:
        for noise in NOISES:
            theirs = compare_runs(tmp_path, idx_dir, ["baseline", "l2", "dropout"],
                                  "--train-size", str(size), "--label-noise", str(noise))
            regime = f"n={size or 'all'} noise={noise:g}"
            for technique in ("baseline", "l2", "dropout"):
                mine = results["groups"][f"{technique} @ {regime}"]["runs"]
                assert [without_timing(r) for r in mine] == \
                    [without_timing(r) for r in theirs[technique]["runs"]], (technique, regime)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="as above")
def test_a_grid_point_equals_compare_with_that_flag(tmp_path, idx_dir):
    out = tmp_path / "grid"
    assert study_main(["--techniques", "dropout", "--grid", "l2=0,1e-3", "--train-size", "150",
                       "--label-noise", "0.2", "--seeds", str(SEEDS), "--epochs", str(EPOCHS),
                       "--data-dir", str(idx_dir), "--output-dir", str(out), "--quiet"]) == 0
    groups = json.loads((out / "results.json").read_text())["groups"]
    regime = ["--train-size", "150", "--label-noise", "0.2"]
    plain = compare_runs(tmp_path, idx_dir, ["dropout"], *regime)["dropout"]["runs"]
    # compare.py sets no knob but the regime's; its Python API sets any.
    with_l2 = regjax.compare(["dropout"], SEEDS, EPOCHS, l2=1e-3, train_size=150,
                             label_noise=0.2, data_dir=idx_dir, progress=False)
    for name, theirs in (("dropout l2=0", plain), ("dropout l2=0.001",
                                                   with_l2.groups["dropout"])):
        mine = groups[f"{name} @ n=150 noise=0.2"]["runs"]
        assert [without_timing(r) for r in mine] == [without_timing(r) for r in theirs], name
    assert (out / "response.png").stat().st_size > 0


def holm_rejections(p_values, alpha):
    """Holm's step-down procedure as defined: sort the p-values, reject while the k-th
    smallest (k from 1) is at most alpha / (m - k + 1), stop at the first that is not."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = set()
    for k, i in enumerate(order, 1):
        if p_values[i] > alpha / (len(p_values) - k + 1):
            break
        rejected.add(i)
    return rejected


def test_holm_matches_its_definition():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = list(rng.uniform(0, 0.1, rng.integers(1, 12)) ** rng.uniform(1, 3))
        adjusted = report.holm(p)
        assert {i for i, a in enumerate(adjusted) if a < 0.05} == holm_rejections(p, 0.05) \
            or any(np.isclose(a, 0.05) for a in adjusted)  # exactly at the level: either way


def test_the_map_cells_are_welch_differences_from_the_plain_network(study):
    out, results = study
    rows = report.cell_rows(results)
    cells = {r["cell"]: r for r in rows}
    tested = []
    for name, (setting, size, noise) in results["study"]["cells"].items():
        if setting == "baseline":
            continue
        reference = f"baseline @ n={size or 'all'} noise={noise:g}"
        a = [r["test_accuracy"] for r in results["groups"][name]["runs"]]
        b = [r["test_accuracy"] for r in results["groups"][reference]["runs"]]
        v = cells[name]["vs_reference"]
        assert v["difference"] == pytest.approx(np.mean(a) - np.mean(b), abs=1e-12)
        if np.var(a) + np.var(b) > 0:
            welch = stats.ttest_ind(a, b, equal_var=False)
            assert v["p_value"] == pytest.approx(welch.pvalue)
            assert (v["ci_low"], v["ci_high"]) == pytest.approx(
                tuple(welch.confidence_interval(0.95)))
            tested.append((name, welch.pvalue))
    # Marked cells: Holm over every tested cell of the map.
    rejected = holm_rejections([p for _, p in tested], report.LEVEL)
    assert {tested[i][0] for i in rejected} == {r["cell"] for r in rows if r.get("significant")}
    text = (out / "report.md").read_text()
    assert "## The map" in text and "Holm" in text and "## Generalization gap" in text
    for name in ("map.png", "curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def synthetic(differences: dict) -> dict:
    """A study record with one setting, A, whose runs are the baseline's moved by
    `differences[train_size]` in every seed (plus a little spread)."""
    sizes = list(differences)
    groups, cells = {}, {}
    spread = np.array([0.0, 0.002, -0.002, 0.001, -0.001])
    for size in sizes:
        regime = f"n={size or 'all'} noise=0"
        for setting, shift in (("baseline", 0.0), ("A", differences[size])):
            runs = [{"status": "completed", "test_accuracy": 0.8 + shift + s,
                     "accuracy": [0.9], "val_accuracy": [0.8], "epochs_run": 1}
                    for s in spread * (1 if setting == "A" else -1)]
            groups[f"{setting} @ {regime}"] = {"wall_seconds": 1.0, "runs": runs}
            cells[f"{setting} @ {regime}"] = [setting, size, 0.0]
    return {"seeds": 5, "groups": groups, "study": {
        "train_sizes": sizes, "label_noises": [0.0], "reference": "baseline", "grid": {},
        "settings": {"baseline": {"technique": "baseline", "point": {}},
                     "A": {"technique": "A", "point": {}}}, "cells": cells}}


def test_the_sentences_cite_the_cells_they_describe():
    record = synthetic({500: 0.05, 2000: 0.03, 8000: 0.0, 0: -0.04})
    rows = report.cell_rows(record)
    (sentence,) = report.sentences(record, rows)
    assert "helps in 2 of 4 regimes, most at n=500 noise=0" in sentence
    assert "`A @ n=500 noise=0`" in sentence
    assert "hurts in 1 of 4 regimes, most at n=all noise=0" in sentence
    assert "from 2,000 rows down at noise 0" in sentence
    record = synthetic({500: 0.0, 0: 0.0})
    assert report.sentences(record, report.cell_rows(record)) == [
        "**A** differs from the plain network in none of its 2 regimes after the correction."]


def test_the_plan_groups_by_structure_and_lists_what_it_leaves_out():
    def left_out(plan):
        return {(i["technique"], tuple(i["point"].values())): i["why"]
                for i in plan.about["study"]["left_out"]}

    mixing = study_plan(["cutmix", "dropout"], {"mixup": [0, 0.2]}, command="test")
    assert "mixup and cutmix" in left_out(mixing)[("cutmix", (0.2,))]
    assert set(mixing.about["study"]["settings"]) == {
        "baseline", "cutmix mixup=0", "dropout mixup=0", "dropout mixup=0.2"}
    rates = study_plan(["dropout", "l2"], {"dropout": [0, 0.5]}, command="test")
    assert left_out(rates) == {("dropout", (0,)): "the same models as baseline"}
    plan = study_plan(["l2", "early_stopping"], {"patience": [2, 5]}, train_sizes=[500, 0],
                      label_noises=[0, 0.2], seeds=3, command="test")
    about = plan.about["study"]
    assert "patience needs early_stopping" in left_out(plan)[("l2", (2,))]
    assert ("early_stopping", (5,)) not in left_out(plan)
    for batch in plan.batches:  # one structure and one number of rows per program
        assert len({c.structure() for _, c in batch.members}) == 1
        # every noise level and seed of a setting trains in its program
        settings = {name.split(" @ ")[0] for name, _ in batch.members}
        assert len(batch.members) == len(settings) * 2 * 3
    assert sum(len(b.members) for b in plan.batches) == len(about["cells"]) * 3


@pytest.mark.parametrize("flags, message", [
    (["--grid", "dropuot=0,1"], "unknown knob 'dropuot'; did you mean dropout?"),
    (["--grid", "batchnorm=0,1"], "batchnorm is structural"),
    (["--grid", "train_size=100"], "train_size is a data regime; give it as --train-size"),
    (["--grid", "dropout="], "--grid: expected KNOB=V1,V2"),
    (["--grid", "dropout=0.1,0.1"], "dropout value(s) 0.1 given more than once"),
    (["--grid", "epochs=1.5"], "epochs takes whole numbers"),
    (["--label-noise", "0,x"], "--label-noise: expected comma-separated numbers"),
    (["--train-size", "100,100"], "--train-size: 100 given more than once"),
    (["--train-size", "100.5"], "--train-size: whole numbers of rows"),
    (["--label-noise", "0.2,0.2"], "--label-noise: 0.2 given more than once"),
    (["--techniques", "l2,l2"], "l2 given more than once"),
])
def test_bad_studies_are_refused_in_one_line(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit:
        study_main([*flags, "--output-dir", str(out)])
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error and "Traceback" not in error
    assert not out.exists()


def test_a_regime_larger_than_the_data_is_refused_before_training(tmp_path, capsys, idx_dir):
    out = tmp_path / "out"
    assert study_main(["--techniques", "l2", "--train-size", "100,5000", "--data-dir",
                       str(idx_dir), "--output-dir", str(out), "--quiet"]) == 1
    error = capsys.readouterr().err.strip()
    assert "--train-size 5000" in error and "has only 300 training rows" in error
    assert not (out / "checkpoints").exists() and not (out / "results.json").exists()


def test_a_study_that_does_not_fit_says_how_many_models_fit(tmp_path, capsys, idx_dir,
                                                           monkeypatch):
    from regjax.presets import preset
    from regjax.train import budget
    from tests.helpers import SPEC

    # A model's state and gradients, and the labels of its own 300 rows under label noise.
    per_model = budget.model_bytes(preset("l2"), SPEC) + 300
    monkeypatch.setattr(devices, "free_bytes", lambda device=None: 7 * per_model + 1)
    out = tmp_path / "out"
    assert study_main(["--techniques", "l2", "--label-noise", "0,0.2,0.4", "--seeds", "3",
                       "--data-dir", str(idx_dir), "--output-dir", str(out), "--quiet"]) == 1
    error = capsys.readouterr().err.strip()
    assert "trains 9 models" in error and "about 7 models fit" in error, error
    assert not (out / "checkpoints").exists()
