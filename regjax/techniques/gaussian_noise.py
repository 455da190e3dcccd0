"""Gaussian input noise (keras.layers.GaussianNoise(S) on the model's inputs): N(0, S) added
to every input value (pixels in [0, 1]) in training, a fresh draw every step; nothing in
evaluation."""

from __future__ import annotations

from regjax import rng
from regjax.fields import INPUTS, NONNEGATIVE, setting
from regjax.techniques.base import Preset, Technique


def add_noise(key, x, weights, knobs, mix):
    return x + knobs.gaussian_noise * rng.normal(key, x.shape), mix


TECHNIQUE = Technique(
    "gaussian_noise",
    {"gaussian_noise": setting(
        0.0, INPUTS, "N(0, S) noise added to every input pixel (in [0, 1]) in training, a "
        "fresh draw every step (keras.layers.GaussianNoise)", metavar="S", valid=NONNEGATIVE,
        vary="program", sweep=True)},
    presets={"gaussian_noise": Preset(dict(gaussian_noise=0.1), "baseline + "
                                      "GaussianNoise(0.1) on the inputs: N(0, 0.1) added to "
                                      "every pixel in training", 2, 3)},
    place="inputs", order=5, branch=2,  # the model's first layer: after the input pipeline
    inputs=add_noise,
)
