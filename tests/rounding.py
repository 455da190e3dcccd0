"""How far two computations that round differently may drift apart, measured on the machine
that runs the test (docs/tests.md, "How tolerances are set").

Two programs that compute the same training with their sums in another order (a batched run
and its single runs, four devices and one, regjax and Keras, another CPU's kernels, a GPU)
first agree to float32 rounding. Training then amplifies their difference: Adam divides by
the square root of the second moment, so a weight whose gradient is near zero steps by
about the learning rate whatever the gradient's size, and a rounding difference in such a
gradient's sign becomes a learning-rate-sized difference in the weight. How fast that
happens depends on the technique, the data and the machine, so no fixed tolerance holds
everywhere: here it is measured, on the machine itself, by training the same run from
initial weights moved by one float32 ulp (`nudged`), once up and once down. A rounding
difference that flips the sign of a near-zero gradient is, seen from the trajectory, a coin:
one nudge may leave it as it was and the other flip it (measured with MixUp and MaxNorm: of
the two nudges exactly one moved the validation loss by 1.7e-3 after an epoch, and which one
changed with the CPU's kernels), so the bound takes the farther of the two. A difference of
rounding cannot be told apart from these perturbations, so the two computations may differ
by what the perturbed runs differ, times SAFETY (each is one sample of a chaotic quantity),
and never by less than float32 rounding of the reported numbers (FLOOR). Measured: where a
batched run separated from its single run, it did so by 0.9-1.1 times what the farther
perturbed run did.

A bound that grows with the chaos could hide a wrong knob or seed, so a test that uses one
also checks the guard: every other setting's run is at least GUARD times further away than
the bound allows (`assert_separated`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from regjax.models import TrainedModel
from regjax.train import loop
from regjax.train.engine import Engine

SAFETY = 10.0
FLOOR = 1e-6  # relative: a few float32 ulps of a reported mean (a sum of ~1e3 terms)
GUARD = 4.0
HISTORY_KEYS = ("loss", "val_loss")
COUNTS = ("epochs_run", "stopped_early", "best_epoch")


def nudged(tree, towards=jnp.inf):
    """Every float32 array of `tree` moved by one ulp (towards +inf, or `towards`)."""
    return jax.tree.map(lambda a: jnp.nextafter(a, towards) if a.dtype == jnp.float32 else a,
                        tree)


def perturbed_fits(config, train, validation, test=None) -> list[tuple[dict, TrainedModel]]:
    """What regjax.fit gives for `config` (its history and model), trained from its initial
    weights nudged by one ulp up, and again nudged one ulp down (Adam's moments and the
    batch-norm statistics as they are)."""
    def fit(towards):
        engine = Engine([config], train.spec)
        initial = engine.init_state()
        engine.init_state = lambda: initial._replace(params=nudged(initial.params, towards))
        records, state = loop.train_loop(engine, train, validation, test, loop.RunIO())
        return records[0].summary(), engine.trained_model(state)

    return [fit(jnp.inf), fit(-jnp.inf)]


def relative_distance(a: dict, b: dict, keys=HISTORY_KEYS) -> np.ndarray:
    """Per epoch (of the epochs both ran), the largest relative difference of `keys`."""
    n = min(len(a[keys[0]]), len(b[keys[0]]))
    return np.max([np.abs(np.subtract(a[k][:n], b[k][:n])) / np.abs(np.asarray(b[k][:n]))
                   for k in keys], axis=0)


def bound(distance) -> np.ndarray:
    """What two computations may differ by where the nudged run differs by `distance`."""
    return SAFETY * np.maximum(FLOOR, distance)


def assert_follows(history: dict, single: dict, perturbed: list[dict],
                   test_rows: int | None = None, what="") -> np.ndarray:
    """`history` (another computation of `single`'s run) follows `single` within the bound
    `perturbed` (single's runs from nudged weights, `perturbed_fits`' histories) gives,
    epoch by epoch; returns the bound. The epoch counts (early stopping) must agree exactly
    unless a nudge moved them too."""
    if all(p[k] == single[k] for p in perturbed for k in COUNTS):
        assert [history[k] for k in COUNTS] == [single[k] for k in COUNTS], what
    n = min(len(p[HISTORY_KEYS[0]]) for p in perturbed)
    allowed = bound(np.max([relative_distance(p, single)[:n] for p in perturbed], axis=0))
    distance = relative_distance(history, single)[:len(allowed)]
    assert np.all(distance <= allowed[:len(distance)]), (what, distance, allowed)
    if test_rows is not None and "test_accuracy" in single:
        # A rounding difference may move a borderline row or two even within the horizon.
        moved = max(abs(p["test_accuracy"] - single["test_accuracy"]) for p in perturbed)
        rows = max(2.0, SAFETY * moved * test_rows)
        assert abs(history["test_accuracy"] - single["test_accuracy"]) * test_rows <= rows, what
        allowed_loss = bound(max(abs(p["test_loss"] / single["test_loss"] - 1)
                                 for p in perturbed))
        assert abs(history["test_loss"] / single["test_loss"] - 1) <= allowed_loss, what
    return allowed


def assert_separated(single: dict, allowed: np.ndarray, others: list[dict], what="") -> None:
    """The guard: each of `others` (runs of other settings or seeds) is at least GUARD times
    further from `single` than `allowed`, in every epoch, so no mixed-up knob, seed or
    technique fits in the bound."""
    for j, other in enumerate(others):
        separation = relative_distance(other, single)
        n = min(len(separation), len(allowed))
        assert np.all(separation[:n] >= GUARD * allowed[:n]), (what, j, separation, allowed)
