"""The plots of one run (curves.png) and of many (curves.png, summary.png, sweep.png), as
matplotlib Figures: a notebook shows them inline, `save_figure` writes a PNG atomically.
pyplot is not used, so no display or backend is needed (and a notebook's is left alone)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import matplotlib.figure
import matplotlib.ticker
import numpy as np

from regjax.files.atomic import atomic_write
from regjax.reports.stats import completed

DPI = 100
CURVES_SIZE = (12, 8)  # inches; at DPI 100 the PNG is 1200 x 800 pixels
SUMMARY_SIZE = (8, 4.5)
SWEEP_SIZE = (11, 4)
RUN_SIZE = (10, 4)


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure that a notebook shows as a PNG, with or without pyplot loaded."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=DPI)
        return buffer.getvalue()


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
    return matplotlib.colormaps["tab20"]((2 * i) % 20 + (i // 10) % 2)


def group_style(groups: dict, name: str) -> str:
    return "-" if list(groups).index(name) < 10 else "--"


def save_figure(fig: Figure, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))


def curves_figure(groups: dict[str, list[dict]]) -> Figure:
    """Training and validation accuracy and loss per epoch, one line per group (mean over
    seeds, with a ±std band), all groups on the same four axes."""
    fig = Figure(figsize=CURVES_SIZE)
    axes = fig.subplots(2, 2, sharex=True)
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
    return fig


def summary_figure(rows: list[dict], groups: dict[str, list[dict]]) -> Figure:
    """Test accuracy per group: every seed as a dot, the mean ± std as a bar."""
    fig = Figure(figsize=SUMMARY_SIZE)
    ax = fig.subplots()
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
    return fig


def sweep_figure(knob: str, rows: list[dict]) -> Figure:
    """Test accuracy and generalization gap against the knob's value (mean ± std); values
    with no completed run are left out."""
    rows = [r for r in rows if "test_accuracy_mean" in r]
    values = np.array([r["value"] for r in rows])
    fig = Figure(figsize=SWEEP_SIZE)
    axes = fig.subplots(1, 2)
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
    return fig


RUN_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "epochs_run", "status")


def check_history(history) -> None:
    """Refuses what is not one run's history (what regjax.fit returns, or a history.json)."""
    if not isinstance(history, Mapping):
        raise TypeError(f"history must be a run's history (what regjax.fit returns, or a "
                        f"history.json read with json.load), got {type(history).__name__}")
    missing = [k for k in RUN_KEYS if k not in history]
    if missing:
        raise ValueError(f"history lacks {', '.join(missing)}: give a run's history (what "
                         "regjax.fit returns, or a history.json read with json.load)")


def run_figure(history: dict) -> Figure:
    """One run's loss and accuracy per epoch, training and validation, as people plot Keras'
    History by hand."""
    check_history(history)
    fig = Figure(figsize=RUN_SIZE)
    axes = fig.subplots(1, 2)
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
    return fig
plot = run_figure  # regjax.plot(history): a run's curves
