"""The public API: what `import regjax` offers, and the README's snippets run as written."""

import pydoc
import re
import subprocess
import sys

import regjax
from tests.helpers import ROOT


def test_the_public_api_is_small_and_documented():
    assert set(regjax.__all__) == {"Config", "PRESETS", "TECHNIQUES", "TrainedModel",
                                   "evaluate", "fit", "load_dataset", "load_model", "model_data",
                                   "preset", "save_model", "train_and_validation"}
    text = pydoc.render_doc(regjax, renderer=pydoc.plaintext)
    for name in ("fit(", "evaluate(", "load_model(", "preset(", "class Config"):
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
