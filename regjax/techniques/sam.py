"""Sharpness-aware minimization (Foret et al. 2021; optax.contrib.sam in its opaque mode,
with the adversarial optimizer chain(normalize(), sgd(RHO)) and sync_period 2): each step
takes the gradient g at the weights w, then the gradient at w + RHO * g / ||g|| (||g||: the
global norm over every weight) on the same batch with the same draws, and gives Keras' Adam
that second gradient. The batch-norm statistics are updated by the first pass only. Each
step costs two gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from regjax.fields import NONNEGATIVE, WEIGHTS, setting
from regjax.techniques.base import Preset, Technique


def sharpness_aware(rho) -> optax.GradientTransformationExtraArgs:
    """The gradient at the ascent point w + rho * g / ||g|| in place of g (rho 0: g as it
    is, exactly)."""

    def update(grads, state, params=None, *, loss_gradient, **extra):
        del extra
        norm = optax.tree.norm(grads)  # in optax.contrib.sam's order of operations
        ascent = jax.tree.map(lambda w, g: w + rho * (g / norm), params, grads)
        sharp = loss_gradient(ascent)
        return jax.tree.map(lambda s, g: jnp.where(rho > 0, s, g), sharp, grads), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


TECHNIQUE = Technique(
    "sam",
    {"sam": setting(
        0.0, WEIGHTS, "sharpness-aware minimization: Adam takes the gradient at w + RHO * g "
        "/ ||g|| (optax.contrib.sam; two gradients a step)", metavar="RHO",
        valid=NONNEGATIVE, vary="program", sweep=True)},
    presets={"sam": Preset(dict(sam=0.05), "baseline trained with sharpness-aware "
                           "minimization (rho 0.05): Adam takes the gradient at the ascent "
                           "point", 3, 1)},
    place="gradient", order=1,  # on the gradient itself, before any noise is added
    gradient=lambda knobs: sharpness_aware(knobs.sam),
    excludes={"max_norm": "SAM's ascent point is not projected as MaxNorm projects the "
              "weights; use one or the other"},
)
