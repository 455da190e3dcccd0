"""Gradient noise (Neelakantan et al. 2015; optax.add_noise(ETA, 0.55)): before Keras' Adam
sees it, every gradient gets N(0, ETA / (1 + t)^0.55) noise added, t the number of steps
taken before this one, a fresh draw every step. The annealing exponent is the paper's
0.55; the base variance ETA is the knob."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from regjax import rng
from regjax.fields import NONNEGATIVE, WEIGHTS, setting
from regjax.techniques.base import Preset, Technique

GAMMA = 0.55  # optax.add_noise's (and the paper's) annealing exponent
BRANCH = 5


class NoiseState(NamedTuple):
    count: jax.Array  # steps taken


def gradient_noise(eta, gamma=GAMMA) -> optax.GradientTransformationExtraArgs:
    """optax.add_noise's schedule (variance eta / (1 + t)^gamma), its draws from the step's
    key (branch BRANCH; leaf i of the gradient's tree at fold_in(that key, i))."""

    def init(params):
        del params
        return NoiseState(jnp.zeros((), jnp.int32))

    def update(grads, state, params=None, *, key, **extra):
        del params, extra
        count = state.count + 1
        stddev = jnp.sqrt(eta / count.astype(jnp.float32) ** gamma)
        draws = rng.technique_key(key, BRANCH)
        leaves, treedef = jax.tree.flatten(grads)
        noisy = [g + stddev * rng.normal(jax.random.fold_in(draws, i), g.shape)
                 for i, g in enumerate(leaves)]
        return jax.tree.unflatten(treedef, noisy), NoiseState(count)

    return optax.GradientTransformationExtraArgs(init, update)


TECHNIQUE = Technique(
    "gradient_noise",
    {"gradient_noise": setting(
        0.0, WEIGHTS, "N(0, ETA / (1 + t)^0.55) noise added to every gradient before Adam, t "
        "the step (optax.add_noise's schedule)", metavar="ETA", valid=NONNEGATIVE,
        vary="program", sweep=True)},
    presets={"gradient_noise": Preset(dict(gradient_noise=0.01), "baseline + annealed "
                                      "gradient noise: N(0, 0.01 / (1 + t)^0.55) added to "
                                      "every gradient", 3, 6)},
    place="gradient", order=2, branch=BRANCH,
    gradient=lambda knobs: gradient_noise(knobs.gradient_noise),
)
