"""The MaxNorm constraint (keras.constraints.MaxNorm(C, axis=0)) on the hidden Dense kernels:
after each update, each unit's incoming weights (a kernel's column) rescaled to norm <= C."""

from __future__ import annotations

import jax.numpy as jnp

from regjax.fields import NONNEGATIVE, WEIGHTS, setting
from regjax.nn import tree
from regjax.techniques.base import Preset, Technique

KERAS_EPSILON = 1e-7  # keras.backend.epsilon()


def max_norm(w, c):
    """Each column scaled by clip(norm, 0, c) / (1e-7 + norm), which also shrinks a column
    under the bound by norm / (1e-7 + norm), as Keras does; c = 0 (a model of a batched run
    without the constraint) leaves w as it is."""
    norms = jnp.sqrt(jnp.sum(jnp.square(w), axis=0, keepdims=True))
    scaled = w * (jnp.clip(norms, 0, c) / (KERAS_EPSILON + norms))
    return jnp.where(c > 0, scaled, w)


def project(params, kernels, knobs):
    """MaxNorm on each Dense kernel (2-D) among the regularized kernels (their paths)."""
    return tree.map_at(params, kernels, lambda w: max_norm(w, knobs.max_norm)
                       if w.ndim == 2 else w)


TECHNIQUE = Technique(
    "max_norm",
    {"max_norm": setting(
        0.0, WEIGHTS, "after each update, each hidden unit's incoming weights rescaled to "
        "norm <= C (keras.constraints.MaxNorm(C, axis=0); 0: off)", metavar="C",
        valid=NONNEGATIVE, vary="program", sweep=True)},
    presets={"max_norm": Preset(dict(max_norm=3.0), "baseline + MaxNorm(3): each hidden "
                                "unit's incoming weights rescaled to norm <= 3 after every "
                                "update", 2, 2)},
    place="project", order=1,
    project=project,
)
