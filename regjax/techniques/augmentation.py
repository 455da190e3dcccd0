"""On-device data augmentation with the semantics of the notebook's ImageDataGenerator: a
fresh random affine transform of every training image every step (rotation, shifts, shear,
zoom about the image's centre, bilinear, edge pixels repeated; regjax.nn.augment)."""

from __future__ import annotations

from regjax.fields import AUGMENT, NONNEGATIVE, RATE, setting
from regjax.nn import augment
from regjax.techniques.base import NOTEBOOK_CNN, Preset, Technique


def warp(key, x, weights, knobs, mix):
    return augment.random_affine(
        key, x, rotation_range=knobs.rotation_range, shift_range=knobs.shift_range,
        shear_range=knobs.shear_range, zoom_range=knobs.zoom_range), mix


TECHNIQUE = Technique(
    "augmentation",
    {"augment": setting(False, AUGMENT, "a random affine transform of every training image, "
                        "every step"),
     "rotation_range": setting(10.0, AUGMENT, "rotation drawn from [-DEG, DEG] degrees",
                               metavar="DEG", valid=NONNEGATIVE, vary="program",
                               needs="augment"),
     "shift_range": setting(
         0.1, AUGMENT, "shift drawn from [-F, F]: under 1 a fraction of the height and width, "
         "1 or more pixels, as ImageDataGenerator reads it", metavar="F", valid=NONNEGATIVE,
         vary="program", needs="augment"),
     "shear_range": setting(0.2, AUGMENT, "shear drawn from [-DEG, DEG] degrees",
                            metavar="DEG", valid=NONNEGATIVE, vary="program",
                            needs="augment"),
     "zoom_range": setting(0.2, AUGMENT, "zoom per axis drawn from [1-Z, 1+Z]", metavar="Z",
                           valid=RATE, vary="program", needs="augment")},
    presets={"augmentation": Preset(
        dict(**NOTEBOOK_CNN, augment=True), "CNN trained on randomly rotated, shifted, sheared "
        "and zoomed images, validated on test", 1, 6)},
    place="inputs", order=1, branch=1,
    inputs=warp,
)
