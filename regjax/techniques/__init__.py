"""The techniques: one module each (regjax.techniques.base says what a module declares),
found here by their files, so that adding a technique is adding its module. TECHNIQUES
lists them in the order a step applies them: by place (base.PLACES), then by each one's
order within its place (Keras' order: the affine warp before random erasing, MixUp and
CutMix after both and Gaussian noise last; batch norm before dropout; AdamW's decay before
the moving average; ...).
"""

from __future__ import annotations

import importlib
import pkgutil

from regjax.techniques.base import PLACES, Technique


def _discover() -> tuple[Technique, ...]:
    found = [importlib.import_module(f"{__name__}.{info.name}").TECHNIQUE
             for info in pkgutil.iter_modules(__path__) if info.name != "base"]
    return tuple(sorted(found, key=lambda t: (PLACES.index(t.place), t.order, t.name)))


TECHNIQUES = _discover()
BY_NAME = {t.name: t for t in TECHNIQUES}


def active(config) -> tuple[Technique, ...]:
    """The techniques `config` (or a program's structure) has on, in the order a step
    applies them."""
    return tuple(t for t in TECHNIQUES if t.on(config))


def slot_layers(config, slot: str) -> list:
    """The layer factories the active techniques put in a model's `slot`, in order."""
    return [t.layers[slot] for t in active(config) if slot in t.layers]
