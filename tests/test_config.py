"""The config: each preset is the notebook's set-up (its settings, and its model against the
notebook's Keras code), and the presets' descriptions are the ones the README shows."""

import dataclasses
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from regjax import config as cfg
from regjax import presets
from regjax.models import make_model
from tests import keras_oracle as oracle
from tests.helpers import ROOT, SPEC


def test_presets_are_the_notebooks_settings():
    base = cfg.Config()
    assert (base.model, base.hidden, base.epochs, base.batch_size, base.learning_rate,
            base.validation) == ("mlp", (128, 64), 20, 64, 1e-3, "split")
    added = {name: {f.name: getattr(p.config, f.name) for f in dataclasses.fields(cfg.Config)
                    if getattr(p.config, f.name) != getattr(base, f.name)}
             for name, p in presets.PRESETS.items()}
    assert added == {
        "baseline": {}, "l1": {"l1": 1e-3}, "l2": {"l2": 1e-3}, "dropout": {"dropout": 0.25},
        "batchnorm": {"batchnorm": True},
        "early_stopping": {"early_stopping": True, "epochs": 50},  # patience 3 is the default
        "augmentation": {"model": "cnn", "hidden": (128,), "augment": True,
                         "validation": "test"},
        "label_smoothing": {"label_smoothing": 0.1, "validation": "test"},
        # Part 2, each at its Keras reference's default or most common setting
        "weight_decay": {"weight_decay": 0.004}, "max_norm": {"max_norm": 3.0},
        "gaussian_noise": {"gaussian_noise": 0.1},
        "spatial_dropout": {"model": "cnn", "hidden": (128,), "spatial_dropout": 0.2,
                            "validation": "test"},
        "mixup": {"mixup": 0.2}, "cutmix": {"cutmix": 1.0},
        "random_erasing": {"random_erasing": 1.0}, "weight_ema": {"ema": 0.99},
        # Part 3, at the settings of the issue that asked for them (their references'
        # defaults where those have one: OrthogonalRegularizer's 0.01, the paper's eta)
        "sam": {"sam": 0.05}, "gaussian_dropout": {"gaussian_dropout": 0.25},
        "activity_l2": {"activity_l2": 1e-4}, "orthogonal": {"orthogonal": 0.01},
        "gradient_noise": {"gradient_noise": 0.01},
        "stochastic_depth": {"model": "resnet", "validation": "test", "stochastic_depth": 0.2}}
    assert base.patience == 3 and (base.rotation_range, base.shift_range, base.shear_range,
                                   base.zoom_range) == (10.0, 0.1, 0.2, 0.2)


def test_the_readme_shows_the_presets_table():
    assert presets.techniques_table() in (ROOT / "README.md").read_text()


def test_unknown_technique_suggests_the_closest():
    with pytest.raises(ValueError, match="did you mean 'dropout'"):
        presets.preset("dropuot")


def layer_summary(model) -> list[tuple]:
    """Each layer's kind and settings, the output layer's activation left out (the notebook's
    softmax is regjax's loss)."""
    keys = ("units", "activation", "rate", "filters", "kernel_size", "pool_size", "momentum",
            "epsilon", "kernel_regularizer", "kernel_constraint", "stddev",
            "activity_regularizer")
    return [(type(layer).__name__, *(str(layer.get_config().get(k)) for k in keys))
            for layer in model.layers[:-1]] + [("Dense", model.layers[-1].units)]


# The resnet has no counterpart in the notebook (nor stochastic depth a Keras layer): its
# network is checked against Keras in test_resnet.py.
@pytest.mark.parametrize("technique", [t for t in presets.TECHNIQUES
                                       if presets.preset(t).model != "resnet"])
def test_each_preset_builds_the_notebooks_keras_model(technique):
    """The Keras model of each preset (tests/keras_oracle.py, built from the config) has the
    layers, settings and parameter count of the notebook's own code for that section
    (benchmarks/peers.py, the notebook's code as the parity benchmark runs it), and regjax's
    model has the same number of parameters and batch-norm statistics."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import peers

    config = presets.preset(technique)
    notebook, ours = peers.keras_model(technique), oracle.keras_model(config)
    assert layer_summary(ours) == layer_summary(notebook)
    optimizer = lambda m: {k: v for k, v in m.optimizer.get_config().items()  # noqa: E731
                           if k != "name"}
    assert type(ours.optimizer) is type(notebook.optimizer)
    assert optimizer(ours) == optimizer(notebook)
    assert ours.count_params() == notebook.count_params()
    model = make_model(config, SPEC)
    assert sum(np.size(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param, nnx.BatchStat))) \
        == notebook.count_params()
