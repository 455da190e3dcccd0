"""Label smoothing, the notebook's custom loss: targets y * (1 - S) + S / K for K classes
(optax.smooth_labels), in training and in val_loss alike."""

from __future__ import annotations

from regjax.fields import LOSS, UNIT, setting
from regjax.techniques.base import Preset, Technique


def smooth_labels(targets, smoothing):
    """The notebook's formula: y * (1 - s) + s / num_classes."""
    return targets * (1.0 - smoothing) + smoothing / targets.shape[-1]


TECHNIQUE = Technique(
    "label_smoothing",
    {"label_smoothing": setting(0.0, LOSS, "targets * (1 - S) + S / (number of classes)",
                                metavar="S", valid=UNIT, vary="program", sweep=True)},
    presets={"label_smoothing": Preset(dict(label_smoothing=0.1, validation="test"),
                                       "baseline with targets smoothed by 0.1, validated on "
                                       "test", 1, 7)},
    place="targets", order=1,
    targets=lambda targets, knobs: smooth_labels(targets, knobs.label_smoothing),
)
