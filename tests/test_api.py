"""The public API: what `import regjax` offers, and the README's snippets run as written."""

import json
import pydoc
import re
import subprocess
import sys

import regjax
from tests.helpers import ROOT


def test_the_public_api_is_small_and_documented():
    assert set(regjax.__all__) == {"Config", "PRESETS", "TECHNIQUES", "NOTEBOOK",
                                   "TrainedModel", "History", "Results", "evaluate", "fit",
                                   "load_dataset", "load_model", "model_data", "preset",
                                   "save_model", "train_and_validation", "compare", "sweep",
                                   "study", "plot"}
    text = pydoc.render_doc(regjax, renderer=pydoc.plaintext)
    for name in ("fit(", "evaluate(", "load_model(", "preset(", "study(", "class Config"):
        assert name in text, name
    assert regjax.TECHNIQUES == tuple(regjax.PRESETS)


def python_snippets(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, re.S)


def test_the_readme_snippets_run_as_written(tmp_path, tiny_idx_dir):
    """The README's Python snippets, in order, in one interpreter, after training the run
    they load (a short one on a few real rows, in its default output directory)."""
    snippets = python_snippets((ROOT / "README.md").read_text())
    assert snippets, "the README shows Python snippets"
    train = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--technique",
                            "dropout", "--epochs", "1", "--data-dir", str(tiny_idx_dir), "--quiet"],
                           cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr
    run = subprocess.run([sys.executable, "-c", "\n".join(snippets)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "accuracy" in run.stdout


def test_compare_and_sweep_return_results_that_save_as_the_commands_write(tmp_path,
                                                                          tiny_idx_dir):
    """regjax.compare's Results hold every seed's history (fit's, under Keras' keys too),
    its table ranks the techniques as the report does, and save() writes what compare.py
    writes; regjax.sweep varies the knob it is given."""
    results = regjax.compare(["baseline", "l2"], seeds=2, epochs=1, data_dir=tiny_idx_dir,
                             progress=False)
    assert list(results.groups) == ["baseline", "l2"]
    assert [r["config"]["seed"] for r in results.groups["l2"]] == [0, 1]
    assert {r["config"]["l2"] for r in results.groups["l2"]} == {1e-3}
    rows = results.table()
    means = {row["name"]: row["test_accuracy_mean"] for row in rows}
    for name, runs in results.groups.items():
        assert means[name] == sum(r["test_accuracy"] for r in runs) / len(runs)
    assert sorted(means, key=means.get, reverse=True) == [row["name"] for row in rows]
    assert set(results.plot()) == {"curves.png", "summary.png"}
    written = results.save(tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()
                  if not p.name.startswith(".")) == sorted(written)
    assert regjax.Results.load(tmp_path / "c").record == json.loads(json.dumps(results.record))
    sweep = regjax.sweep("dropout", [0.0, 0.5], seeds=1, epochs=1, data_dir=tiny_idx_dir,
                         progress=False)
    assert [r["config"]["dropout"] for r in sweep.groups["dropout=0.5"]] == [0.5]
    history = sweep.groups["dropout=0"][0]
    assert sorted(history) and len(history["val_loss"]) == 1


def test_fit_returns_a_history_with_keras_keys(small):
    train, val, test = small
    history, _ = regjax.fit(regjax.preset("baseline", epochs=2), train, val, test,
                            log=lambda _: None)
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert history.history["val_loss"] == history["val_loss"] and history.epoch == [0, 1]
    assert regjax.plot(history)._repr_png_()[:4] == b"\x89PNG"
