"""A study's pictures, from the rows of regjax.reports.study: the map (each setting's
difference from the plain network by regime, beside the generalization gap), the learning
curves (test accuracy against training rows, one panel per label-noise level) and, for a
grid, each knob's response curve."""

from __future__ import annotations

import numpy as np

from regjax.reports.names import regime_name, value_text
from regjax.reports.plots import Figure, group_color

CELL = (0.9, 0.42)  # inches per regime column and per setting row


def mean_interval(row: dict) -> tuple[float, float]:
    """A cell's mean test accuracy and the half-width of its 95% t-interval (0 for one seed)."""
    from scipy import stats

    n = row["runs"]
    half = 0.0 if n < 2 else float(stats.t.ppf(0.975, n - 1) * row["test_accuracy_std"]
                                   / np.sqrt(n))
    return row["test_accuracy_mean"], half


def grid_of(record: dict, rows: list[dict], value) -> tuple[list, list, np.ndarray]:
    """(settings, regime names, matrix of value(row) or nan)."""
    study = record["study"]
    regimes = [regime_name(n, p) for n in study["train_sizes"] for p in study["label_noises"]]
    settings = list(study["settings"])
    by = {(r["setting"], r["regime"]): r for r in rows}
    matrix = np.full((len(settings), len(regimes)), np.nan)
    for i, s in enumerate(settings):
        for j, g in enumerate(regimes):
            r = by.get((s, g))
            if r is not None and r["runs"]:
                v = value(r)
                matrix[i, j] = np.nan if v is None else v
    return settings, regimes, matrix


def map_figure(record: dict, rows: list[dict]) -> Figure:
    """Left: the difference in test accuracy from the plain network (points; outlined where
    it survives the correction over the map). Right: the generalization gap (points)."""
    settings, regimes, delta = grid_of(record, rows, lambda r: None if r["vs_reference"] is None
                                       else 100 * r["vs_reference"]["difference"])
    _, _, gap = grid_of(record, rows, lambda r: 100 * r["gap_mean"])
    by = {(r["setting"], r["regime"]): r for r in rows}
    width = max(4.0, CELL[0] * len(regimes) + 2.5)
    fig = Figure(figsize=(2 * width, max(3.0, CELL[1] * len(settings) + 2)),
                 layout="constrained")
    left, right = fig.subplots(1, 2)
    limit = np.nanmax(np.abs(delta)) if np.isfinite(delta).any() else 1.0
    panels = ((left, delta, "RdBu", -limit, limit, "Δ test accuracy vs plain network (pp)"),
              (right, gap, "viridis", np.nanmin(gap) if np.isfinite(gap).any() else 0,
               np.nanmax(gap) if np.isfinite(gap).any() else 1, "train − val accuracy (pp)"))
    for ax, values, cmap, low, high, title in panels:
        image = ax.imshow(values, cmap=cmap, vmin=low, vmax=high, aspect="auto")
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_xticks(range(len(regimes)), regimes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(settings)), settings, fontsize=8)
        ax.set_title(title, fontsize=10)
        for i, s in enumerate(settings):
            for j, g in enumerate(regimes):
                if np.isfinite(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:+.1f}" if ax is left else
                            f"{values[i, j]:.1f}", ha="center", va="center", fontsize=7)
                if ax is left and by.get((s, g), {}).get("significant"):
                    ax.add_patch(matplotlib_rectangle(j, i))
    fig.suptitle("Outlined: survives Holm's correction over the map (family-wise 5%)",
                 fontsize=9)
    return fig


def matplotlib_rectangle(x: int, y: int):
    import matplotlib.patches

    return matplotlib.patches.Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, lw=2,
                                        edgecolor="black")


def curves_figure(record: dict, rows: list[dict]) -> Figure:
    """Test accuracy against training rows (log axis), a line per setting with its 95%
    band, a panel per label-noise level."""
    study = record["study"]
    noises = study["label_noises"]
    fig = Figure(figsize=(5 * len(noises), 4.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(noises), sharey=True))
    settings = {s: None for s in study["settings"]}
    for ax, noise in zip(axes, noises):
        for s in settings:
            mine = sorted((r for r in rows if r["setting"] == s and r["label_noise"] == noise
                           and r["runs"]), key=lambda r: r["train_size"] or np.inf)
            if not mine:
                continue
            x = [r["train_size"] or record.get("train_rows", 60000) for r in mine]
            mean, half = map(np.array, zip(*map(mean_interval, mine)))
            color = group_color(settings, s)
            ax.plot(x, 100 * mean, marker="o", color=color, label=s,
                    lw=2.5 if s == study["reference"] else 1.2)
            ax.fill_between(x, 100 * (mean - half), 100 * (mean + half), color=color,
                            alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("training rows (before the validation split)")
        ax.set_title(f"label noise {value_text(noise)}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy % (mean, 95% CI)")
    axes[-1].legend(fontsize=7, loc="lower right")
    return fig


def response_figure(record: dict, rows: list[dict]) -> Figure | None:
    """Mean test accuracy against each knob's value (averaged over the grid's other knobs):
    a row of panels per knob, a panel per technique, a line per regime; None where no
    technique has a grid point (nothing to draw)."""
    study = record["study"]
    knobs = list(study["grid"])
    techniques = list(dict.fromkeys(v["technique"] for v in study["settings"].values()
                                    if v["point"]))
    if not knobs or not techniques:
        return None
    fig = Figure(figsize=(4.5 * len(techniques), 3.8 * len(knobs)), layout="constrained")
    axes = np.array(fig.subplots(len(knobs), len(techniques), sharey=True, squeeze=False))
    regimes = dict.fromkeys(regime_name(n, p) for n in study["train_sizes"]
                            for p in study["label_noises"])
    for row, knob in zip(axes, knobs):
        for ax, technique in zip(row, techniques):
            for regime in regimes:
                points: dict[float, list[float]] = {}
                for r in rows:
                    meta = study["settings"][r["setting"]]
                    if meta["technique"] == technique and r["regime"] == regime and r["runs"]:
                        points.setdefault(meta["point"][knob], []).append(
                            r["test_accuracy_mean"])
                if points:
                    x = sorted(points)
                    ax.plot(x, [100 * np.mean(points[v]) for v in x], marker="o",
                            label=regime, color=group_color(regimes, regime))
                    knob_axis(ax, x)
            ax.set_title(technique, fontsize=10)
            ax.set_xlabel(knob)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("test accuracy % (mean)")
    axes[0, -1].legend(fontsize=7)
    return fig


def knob_axis(ax, values: list[float]) -> None:
    """A log-like axis for values spread over decades (0 kept: symlog)."""
    positive = [v for v in values if v > 0]
    if min(values) >= 0 and len(positive) > 1 and max(positive) / min(positive) >= 100:
        ax.set_xscale("symlog", linthresh=min(positive))
