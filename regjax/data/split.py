"""The rows a model trains or is evaluated on: `Split`, and `as_split`, the check every public
function applies to the rows it is given."""

from __future__ import annotations

import dataclasses

import numpy as np

from regjax.config import IMAGE_SHAPE, NUM_CLASSES


@dataclasses.dataclass(frozen=True)
class Split:
    """Images as uint8 [N, 28, 28] and integer labels [N], in file order."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def as_split(rows, what: str = "split") -> Split:
    """`rows` (a Split or an (images, labels) pair) checked as regjax's functions take them:
    uint8 pixels 0-255 [N, 28, 28] (or [N, 784]), integer labels 0-9 [N], N >= 1; raises
    ValueError naming the problem and the fix."""
    try:
        images, labels = (rows.images, rows.labels) if isinstance(rows, Split) else rows
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a Split or an (images, labels) pair, got "
                         f"{type(rows).__name__}") from None
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8:
        raise ValueError(f"{what}: images must be uint8 pixels 0-255, as the dataset files "
                         f"hold them (got {images.dtype}; for floats x in [0, 1] pass "
                         "np.round(x * 255).astype(np.uint8))")
    if images.ndim == 2 and images.shape[1] == np.prod(IMAGE_SHAPE):
        images = images.reshape(-1, *IMAGE_SHAPE)
    if images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"{what}: images must be [N, 28, 28] (or [N, 784]), got "
                         f"{list(images.shape)}")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what}: labels must be {len(images)} integers (one per image, not "
                         f"one-hot), got {labels.dtype} {list(labels.shape)}")
    if not len(labels):
        raise ValueError(f"{what}: no rows")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"{what}: labels must be classes 0-{NUM_CLASSES - 1}, got "
                         f"{labels.min()}..{labels.max()}")
    labels = labels if labels.dtype == np.int32 else labels.astype(np.int32)
    if isinstance(rows, Split) and images is rows.images and labels is rows.labels:
        return rows  # the same arrays: models trained together share one copy of them
    return Split(images, labels)
