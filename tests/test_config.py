"""The config: each preset is the notebook's set-up, and the presets' descriptions are the
ones the README shows."""

import dataclasses

import pytest

from regjax import config as cfg
from tests.helpers import ROOT


def test_presets_are_the_notebooks_settings():
    base = cfg.Config()
    assert (base.model, base.hidden, base.epochs, base.batch_size, base.learning_rate,
            base.validation) == ("mlp", (128, 64), 20, 64, 1e-3, "split")
    added = {name: {f.name: getattr(p.config, f.name) for f in dataclasses.fields(cfg.Config)
                    if getattr(p.config, f.name) != getattr(base, f.name)}
             for name, p in cfg.PRESETS.items()}
    assert added == {
        "baseline": {}, "l1": {"l1": 1e-3}, "l2": {"l2": 1e-3}, "dropout": {"dropout": 0.25},
        "batchnorm": {"batchnorm": True},
        "early_stopping": {"early_stopping": True, "epochs": 50},  # patience 3 is the default
        "augmentation": {"model": "cnn", "hidden": (128,), "augment": True,
                         "validation": "test"},
        "label_smoothing": {"label_smoothing": 0.1, "validation": "test"}}
    assert base.patience == 3 and (base.rotation_range, base.shift_range, base.shear_range,
                                   base.zoom_range) == (10.0, 0.1, 0.2, 0.2)


def test_the_readme_shows_the_presets_table():
    assert cfg.techniques_table() in (ROOT / "README.md").read_text()


def test_unknown_technique_suggests_the_closest():
    with pytest.raises(ValueError, match="did you mean 'dropout'"):
        cfg.preset("dropuot")
