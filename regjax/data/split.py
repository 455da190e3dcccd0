"""The rows a model trains or is evaluated on: `Split` and the shape of its data
(`DataSpec`: an image's height, width and channels, and the number of classes), and
`as_split`, the check every public function applies to the rows it is given."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np


class DataSpec(NamedTuple):
    """What a model is built for: images of `shape` (H, W, C) and `classes` classes."""

    shape: tuple[int, int, int]
    classes: int

    def __str__(self) -> str:
        return f"{'x'.join(map(str, self.shape))} images of {self.classes} classes"


@dataclasses.dataclass(frozen=True)
class Split:
    """Images [N, H, W, C], uint8 pixels 0-255 (or float32 values in [0, 1]), and integer
    labels [N] in 0..classes-1, in file order. `classes`: the dataset's number of classes
    (None: one more than the largest label)."""

    images: np.ndarray
    labels: np.ndarray
    classes: int | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def spec(self) -> DataSpec:
        classes = self.classes if self.classes is not None else int(self.labels.max()) + 1
        return DataSpec(tuple(self.images.shape[1:]), classes)


def as_images(images, what: str) -> np.ndarray:
    """Images as regjax keeps them: uint8 as they are, floats in [0, 1] as float32, a channel
    axis added to [N, H, W]; raises ValueError naming the problem."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"{what}: images must be [N, H, W] or [N, H, W, C], got "
                         f"{list(images.shape)}")
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        if images.size and not (np.isfinite(images).all() and images.min() >= 0
                                and images.max() <= 1):
            raise ValueError(f"{what}: float images must hold values in [0, 1] (as x / 255 "
                             f"gives them), got {images.min():g}..{images.max():g}")
        return images.astype(np.float32, copy=False)
    raise ValueError(f"{what}: images must be uint8 pixels 0-255 or floats in [0, 1], got "
                     f"{images.dtype}")


def as_split(rows, what: str = "split", spec: DataSpec | None = None) -> Split:
    """`rows` (a Split or an (images, labels) pair) checked as regjax's functions take them:
    images [N, H, W] or [N, H, W, C] (flat [N, H*W*C] where `spec` gives the shape), uint8
    pixels 0-255 or floats in [0, 1], integer labels [N] of `spec`'s classes, N >= 1; raises
    ValueError naming the problem and the fix."""
    try:
        images, labels = (rows.images, rows.labels) if isinstance(rows, Split) else rows
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a Split or an (images, labels) pair, got "
                         f"{type(rows).__name__}") from None
    given = images
    images, labels = np.asarray(images), np.asarray(labels)
    if spec is not None and images.ndim == 2 and images.shape[1] == np.prod(spec.shape):
        images = images.reshape(-1, *spec.shape)
    images = as_images(images, what)
    if spec is not None and images.shape[1:] != tuple(spec.shape):
        raise ValueError(f"{what}: images are {list(images.shape[1:])}, but the model is "
                         f"built for {list(spec.shape)}")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what}: labels must be {len(images)} integers (one per image, not "
                         f"one-hot), got {labels.dtype} {list(labels.shape)}")
    if not len(labels):
        raise ValueError(f"{what}: no rows")
    classes = spec.classes if spec is not None else getattr(rows, "classes", None)
    top = classes - 1 if classes is not None else None
    if labels.min() < 0 or (top is not None and labels.max() > top):
        raise ValueError(f"{what}: labels must be classes 0-{top if top is not None else 'K'},"
                         f" got {labels.min()}..{labels.max()}")
    labels = labels if labels.dtype == np.int32 else labels.astype(np.int32)
    if isinstance(rows, Split) and images is given and labels is rows.labels and \
            classes == rows.classes:
        return rows  # the same arrays: models trained together share one copy of them
    return Split(images, labels, classes)
