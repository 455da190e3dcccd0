"""The numbers of a study's report, from its results record: one row per cell (a setting in
a regime) with its statistics and its difference from the plain network in the same regime
(Welch's interval and p-value), the p-values corrected over the whole map, the best grid
point per technique and regime, and plain sentences that cite their cells.

The correction is Holm's: it bounds the chance of even one false "helps" or "hurts" anywhere
in the map (the family-wise error) at 5%, whatever the dependence between the tests; and the
tests do depend on each other, since every cell of a regime is compared with the same runs of
the plain network. Benjamini-Hochberg's false discovery rate would call more cells, but its
guarantee needs a kind of positive dependence that shared-reference t-tests only
approximately have, and a map read cell by cell is better served by "each marked cell is
real" than by "most marked cells are real".
"""

from __future__ import annotations

import math

import numpy as np

from regjax.reports.names import regime_name, value_text
from regjax.reports.stats import completed, group_stats, versus
from regjax.reports.tables import markdown_table, pct

LEVEL = 0.05  # the family-wise error rate of the map's marked cells


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    order = np.argsort(p_values)
    adjusted = np.empty(len(p_values))
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()


def regimes(study: dict) -> list[tuple[int, float]]:
    return [(n, p) for n in study["train_sizes"] for p in study["label_noises"]]


def cell_rows(record: dict) -> list[dict]:
    """A row per cell, settings in the plan's order and regimes in order within each: its
    statistics, its difference from the plain network of its regime (vs_reference; None
    for the plain network itself) with the Holm-adjusted p-value over the whole map, and
    whether that is below LEVEL (significant)."""
    study = record["study"]
    groups = {name: group["runs"] for name, group in record["groups"].items()}
    by_place = {(s, n, p): name for name, (s, n, p) in study["cells"].items() if name in groups}
    rows = []
    for setting in study["settings"]:
        for n, p in regimes(study):
            name = by_place.get((setting, n, p))
            if name is None:  # a share of the study holds only some cells
                continue
            reference = by_place.get((study["reference"], n, p))
            stats = group_stats(groups[name])
            rows.append({
                "cell": name, "setting": setting, "regime": regime_name(n, p),
                "train_size": n, "label_noise": p, **(stats or {"runs": 0}),
                "vs_reference": None if setting == study["reference"] or stats is None
                or reference is None or not completed(groups[reference])
                else versus(groups[name], groups[reference])})
    tested = [r for r in rows if r["vs_reference"] and r["vs_reference"]["p_value"] is not None]
    for r, adjusted in zip(tested, holm([r["vs_reference"]["p_value"] for r in tested])):
        r["holm_p"] = adjusted
        r["significant"] = adjusted < LEVEL
    return rows


def cell_text(row: dict) -> str:
    """A map cell in markdown: the difference in points, its 95% interval, * if it survives
    the correction."""
    v = row["vs_reference"]
    if v is None:
        return "ref" if row["runs"] else "—"
    if v["ci_low"] is None:
        return f"{100 * v['difference']:+.2f}"
    mark = "*" if row.get("significant") else ""
    return (f"{100 * v['difference']:+.2f}{mark} [{100 * v['ci_low']:+.1f}, "
            f"{100 * v['ci_high']:+.1f}]")


def map_table(record: dict, rows: list[dict]) -> str:
    """The map in markdown: settings by regimes, each cell's difference from the plain
    network in points (the plain network's own row: its mean test accuracy)."""
    study = record["study"]
    names = [regime_name(n, p) for n, p in regimes(study)]
    by = {(r["setting"], r["regime"]): r for r in rows}
    lines = []
    for setting in study["settings"]:
        cells = [by.get((setting, regime)) for regime in names]
        if setting == study["reference"]:
            lines.append([f"{setting} (test acc %)",
                          *(pct(c["test_accuracy_mean"]) if c and c["runs"] else "—"
                            for c in cells)])
        else:
            lines.append([setting, *(cell_text(c) if c else "—" for c in cells)])
    return markdown_table(["setting", *names], lines)


def gap_table(record: dict, rows: list[dict]) -> str:
    """The generalization gap (train minus validation accuracy at the last epoch, points)."""
    study = record["study"]
    names = [regime_name(n, p) for n, p in regimes(study)]
    by = {(r["setting"], r["regime"]): r for r in rows}
    return markdown_table(["setting", *names], [
        [setting, *(pct(by[(setting, regime)]["gap_mean"])
                    if (setting, regime) in by and by[(setting, regime)]["runs"] else "—"
                    for regime in names)] for setting in study["settings"]])


def best_points(record: dict, rows: list[dict]) -> list[dict]:
    """For a study with a grid: each technique's best point (highest mean test accuracy)
    in each regime, with its difference from the plain network. The best of several points
    is picked after seeing the test accuracy, so its difference is optimistic."""
    study = record["study"]
    if not study["grid"]:
        return []
    best = {}
    for r in rows:
        technique = study["settings"][r["setting"]]["technique"]
        if technique == study["reference"] or not r["runs"]:
            continue
        key = (technique, r["regime"])
        if key not in best or r["test_accuracy_mean"] > best[key]["test_accuracy_mean"]:
            best[key] = r
    return [{"technique": t, "regime": regime, "point": study["settings"][r["setting"]]["point"],
             **r} for (t, regime), r in best.items()]


def best_table(best: list[dict]) -> str:
    return markdown_table(
        ["technique", "regime", "best point", "test acc %", "Δ vs plain (pp) [95% CI]"],
        [[b["technique"], b["regime"],
          " ".join(f"{k}={value_text(v)}" for k, v in b["point"].items()),
          pct(b["test_accuracy_mean"]), cell_text(b)] for b in best])


def sentences(record: dict, rows: list[dict]) -> list[str]:
    """What the map says, a sentence per setting, each citing its cells: where it helps or
    hurts after the correction, the largest such difference, and for a setting that helps
    at several sizes of one noise level, the largest size from which it helps all the way
    down."""
    study = record["study"]
    said = []
    for setting in study["settings"]:
        if setting == study["reference"]:
            continue
        mine = [r for r in rows if r["setting"] == setting and r.get("significant") is not None]
        if not mine:
            continue
        helps = [r for r in mine if r["significant"] and r["vs_reference"]["difference"] > 0]
        hurts = [r for r in mine if r["significant"] and r["vs_reference"]["difference"] < 0]
        if not helps and not hurts:
            said.append(f"**{setting}** differs from the plain network in none of its "
                        f"{len(mine)} regimes after the correction.")
            continue
        parts = []
        for verb, found in (("helps", helps), ("hurts", hurts)):
            if found:
                top = max(found, key=lambda r: abs(r["vs_reference"]["difference"]))
                parts.append(f"{verb} in {len(found)} of {len(mine)} regimes, most at "
                             f"{top['regime']} ({cell_text(top)} points, cell "
                             f"`{top['cell']}`)")
        said.append(f"**{setting}** " + "; ".join(parts) + down_to(helps, mine) + ".")
    return said


def down_to(helps: list[dict], mine: list[dict]) -> str:
    """", helping from N rows down at noise p" where it helps at every tested size up to N
    (at least two sizes) at that noise level, and not above it."""
    clauses = []
    for noise in sorted({r["label_noise"] for r in mine}):
        sizes = sorted((r["train_size"] or math.inf) for r in mine if r["label_noise"] == noise)
        good = {(r["train_size"] or math.inf) for r in helps if r["label_noise"] == noise}
        run = 0
        while run < len(sizes) and sizes[run] in good:
            run += 1
        if 2 <= run < len(sizes):
            clauses.append(f"from {sizes[run - 1]:,} rows down at noise {value_text(noise)}")
    return f", helping {' and '.join(clauses)}" if clauses else ""
