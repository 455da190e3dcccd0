"""Turning histories into pictures and comparisons: one run's curves.png; for many runs
per-group statistics, report.md, and the plots (curves.png, summary.png, sweep.png).

A group is the runs of one setting over several seeds (one technique, or one value of a
swept knob). Everything here is computed from the histories alone, so a report can be
rebuilt from its results.json.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from regjax.files.artifacts import atomic_write  # noqa: E402

DPI = 100
CURVES_SIZE = (12, 8)  # inches; at DPI 100 the PNG is 1200 x 800 pixels
SUMMARY_SIZE = (8, 4.5)
SWEEP_SIZE = (11, 4)
RUN_SIZE = (10, 4)


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
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return result
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, df)) * se
    result.update(p_value=float(stats.ttest_ind(a, b, equal_var=False).pvalue),
                  ci_low=diff - half, ci_high=diff + half)
    if diff != 0:
        pooled = (a.var(ddof=1) + b.var(ddof=1)) / 2
        z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
        result["seeds_needed"] = max(2, math.ceil(2 * z**2 * pooled / diff**2))
    return result


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def comparison_table(groups: dict[str, list[dict]], wall: dict[str, float],
                     reference: str | None = "baseline") -> tuple[list[dict], str]:
    """Rows ranked by mean test accuracy (with the difference to `reference` when it is one
    of the groups), and their markdown table."""
    by_group = {name: group_stats(runs) for name, runs in groups.items()}
    ref = by_group.get(reference)
    ranked = sorted((n for n in by_group if by_group[n]),
                    key=lambda n: -by_group[n]["test_accuracy_mean"])
    rows = []
    for name in ranked:
        # compare.py --ensemble: every completed run of the group records the same ensemble.
        ensemble = next((r["ensemble"] for r in completed(groups[name]) if "ensemble" in r),
                        None)
        row = {"name": name, **by_group[name], "wall_seconds": wall[name],
               "ensemble": ensemble}
        if ref is not None:
            row["vs_reference"] = versus(groups[name], groups[reference])
        rows.append(row)
    with_ensemble = any(r["ensemble"] for r in rows)
    header = ["rank", "setting", "test acc % (mean ± std)", "min–max", "best val acc %",
              "gap % (train − val)", "epochs", "wall s"]
    if with_ensemble:
        header.insert(4, "ensemble acc %")
    if ref is not None:
        header += [f"Δ vs {reference} (pp) [95% CI]", "p (Welch)", "seeds for 80% power"]
    cells = []
    for rank, r in enumerate(rows, 1):
        line = [str(rank), r["name"],
                f"{pct(r['test_accuracy_mean'])} ± {pct(r['test_accuracy_std'])}",
                f"{pct(r['test_accuracy_min'])}–{pct(r['test_accuracy_max'])}",
                pct(r["best_val_accuracy_mean"]),
                f"{pct(r['gap_mean'])} ± {pct(r['gap_std'])}",
                f"{r['epochs_mean']:.1f}", f"{r['wall_seconds']:.0f}"]
        if with_ensemble:
            e = r["ensemble"]
            line.insert(4, "—" if e is None else f"{pct(e['test_accuracy'])} ({e['members']})")
        if ref is not None:
            line += ["—", "—", "—"] if r["name"] == reference else difference_cells(
                r["vs_reference"])
        cells.append(line)
    for name in (n for n in by_group if not by_group[n]):  # no seed completed: unranked
        cells.append(["—", name, "no run completed", *["—"] * (len(header) - 3)])
    return rows, markdown_table(header, cells)


def difference_cells(v: dict) -> list[str]:
    """Δ [CI], p and seeds needed, as the comparison table shows them."""
    ci = "" if v["ci_low"] is None else f" [{100 * v['ci_low']:+.2f}, {100 * v['ci_high']:+.2f}]"
    p = "—" if v["p_value"] is None else (
        "< 0.001" if v["p_value"] < 0.001 else f"{v['p_value']:.3f}")
    return [f"{100 * v['difference']:+.2f}{ci}", p,
            "—" if v["seeds_needed"] is None else str(v["seeds_needed"])]


def mean_curve(runs: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epoch numbers, mean and std over the runs that reached each epoch (runs stopped
    early have shorter histories)."""
    longest = max(len(r[key]) for r in runs)
    epochs, mean, std = [], [], []
    for e in range(longest):
        values = [r[key][e] for r in runs if len(r[key]) > e]
        epochs.append(e + 1)
        mean.append(np.mean(values))
        std.append(np.std(values))
    return np.array(epochs), np.array(mean), np.array(std)


def group_color(groups: dict, name: str):
    """The same color for a group in every plot: ten hues, then (groups 11 to 20, drawn
    dashed: group_style) their light shades."""
    i = list(groups).index(name)
    return plt.get_cmap("tab20")((2 * i) % 20 + (i // 10) % 2)


def group_style(groups: dict, name: str) -> str:
    return "-" if list(groups).index(name) < 10 else "--"


def save_figure(fig, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    plt.close(fig)


def plot_curves(groups: dict[str, list[dict]], path: Path) -> None:
    """Training and validation accuracy and loss per epoch, one line per group (mean over
    seeds, with a ±std band), all groups on the same four axes."""
    fig, axes = plt.subplots(2, 2, figsize=CURVES_SIZE, sharex=True)
    panels = [("accuracy", "training accuracy"), ("val_accuracy", "validation accuracy"),
              ("loss", "training loss"), ("val_loss", "validation loss")]
    for ax, (key, title) in zip(axes.flat, panels):
        for name, runs in groups.items():
            epochs, mean, std = mean_curve(runs, key)
            color = group_color(groups, name)
            ax.plot(epochs, mean, color=color, label=name, lw=1.5,
                    ls=group_style(groups, name))
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if "loss" in key:
            ax.set_xlabel("epoch")
    axes[0, 1].legend(fontsize=8, loc="lower right")
    seeds = sorted({len(runs) for runs in groups.values()})
    fig.suptitle(f"mean over {'/'.join(map(str, seeds))} seeds per setting, band: ± std "
                 "(runs stopped early leave the mean when they stop)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_summary(rows: list[dict], groups: dict[str, list[dict]], path: Path) -> None:
    """Test accuracy per group: every seed as a dot, the mean ± std as a bar."""
    fig, ax = plt.subplots(figsize=SUMMARY_SIZE)
    names = [r["name"] for r in rows][::-1]  # best at the top
    for y, name in enumerate(names):
        values = 100 * np.array([r["test_accuracy"] for r in completed(groups[name])])
        ax.errorbar(values.mean(), y, xerr=values.std(ddof=1) if len(values) > 1 else 0,
                    fmt="o", color="black", capsize=4)
        ax.scatter(values, np.full(len(values), y + 0.15), s=12, alpha=0.7,
                   color=group_color(groups, name))
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("test accuracy (%): dots are seeds, bars mean ± std")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def plot_sweep(knob: str, rows: list[dict], path: Path) -> None:
    """Test accuracy and generalization gap against the knob's value (mean ± std); values
    with no completed run are left out."""
    rows = [r for r in rows if "test_accuracy_mean" in r]
    values = np.array([r["value"] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=SWEEP_SIZE)
    for ax, (mean, std, title) in zip(axes, [
            ("test_accuracy_mean", "test_accuracy_std", "test accuracy (%)"),
            ("gap_mean", "gap_std", "generalization gap, train − val accuracy (%)")]):
        ax.errorbar(values, [100 * r[mean] for r in rows], yerr=[100 * r[std] for r in rows],
                    fmt="o-", capsize=4)
        if (values > 0).sum() >= 2 and values.max() / values[values > 0].min() >= 100:
            # symlog: a log scale that still shows 0
            ax.set_xscale("symlog", linthresh=values[values > 0].min())
        ax.set_xlabel(knob)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def plot_run(history: dict, path: Path) -> None:
    """One run's loss and accuracy per epoch, training and validation, as people plot Keras'
    History by hand."""
    fig, axes = plt.subplots(1, 2, figsize=RUN_SIZE)
    epochs = np.arange(1, history["epochs_run"] + 1)
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, history[key], "o-", label=f"training {key}")
        ax.plot(epochs, history["val_" + key], "o-", label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    best = history.get("best_epoch")
    if best:
        axes[0].axvline(best, color="gray", ls="--", lw=1)
    fig.suptitle(f"{history.get('technique', 'run')}: {history['status']} after "
                 f"{history['epochs_run']} epochs")
    fig.tight_layout()
    save_figure(fig, path)
