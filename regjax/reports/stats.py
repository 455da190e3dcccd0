"""Statistics over the runs of one group (a setting over several seeds) and between two
groups. Everything is computed from the histories alone, so a report can be rebuilt from its
results.json."""

from __future__ import annotations

import math

import numpy as np


def completed(runs: list[dict]) -> list[dict]:
    """The runs that finished with test metrics (diverged or interrupted ones have none)."""
    return [r for r in runs if r["status"] == "completed"]


def group_stats(runs: list[dict]) -> dict:
    """Statistics over the completed seeds of one group (None when none completed). std is
    the sample standard deviation (ddof=1); the generalization gap is the last epoch's train
    minus val accuracy."""
    runs = completed(runs)
    if not runs:
        return None
    test = np.array([r["test_accuracy"] for r in runs])
    gap = np.array([r["accuracy"][-1] - r["val_accuracy"][-1] for r in runs])
    return {
        "runs": len(runs),
        "test_accuracy_mean": float(test.mean()),
        "test_accuracy_std": float(test.std(ddof=1)) if len(test) > 1 else 0.0,
        "test_accuracy_min": float(test.min()),
        "test_accuracy_max": float(test.max()),
        "best_val_accuracy_mean": float(np.mean([max(r["val_accuracy"]) for r in runs])),
        "gap_mean": float(gap.mean()),
        "gap_std": float(gap.std(ddof=1)) if len(gap) > 1 else 0.0,
        "epochs_mean": float(np.mean([r["epochs_run"] for r in runs])),
    }


def versus(runs: list[dict], reference: list[dict]) -> dict:
    """The difference of mean test accuracy to the reference group with Welch's t-test (no
    assumption of equal variances): the p-value, the 95% confidence interval of the
    difference (Welch-Satterthwaite degrees of freedom), and how many seeds per group would
    detect a difference of this size with 80% power at the 5% level (normal approximation).
    The p-value and interval need two seeds per group; they are None otherwise."""
    from scipy import stats  # imported here: a single run's curves.png does not need it

    a = np.array([r["test_accuracy"] for r in completed(runs)])
    b = np.array([r["test_accuracy"] for r in completed(reference)])
    diff = float(a.mean() - b.mean())
    result = {"difference": diff, "p_value": None, "ci_low": None, "ci_high": None,
              "seeds_needed": None}
    if len(a) < 2 or len(b) < 2:
        return result
    if a.var() == 0 and b.var() == 0:  # no spread: the test has nothing to go on
        return result
    welch = stats.ttest_ind(a, b, equal_var=False)
    interval = welch.confidence_interval(0.95)
    result.update(p_value=float(welch.pvalue), ci_low=float(interval.low),
                  ci_high=float(interval.high))
    if diff != 0:
        pooled = (a.var(ddof=1) + b.var(ddof=1)) / 2
        z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
        result["seeds_needed"] = max(2, math.ceil(2 * z**2 * pooled / diff**2))
    return result


