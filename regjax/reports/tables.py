"""The report's tables, as markdown: a comparison ranked by test accuracy with each
setting's difference to a reference, and a sweep's row per value."""

from __future__ import annotations

from regjax.reports.names import value_text
from regjax.reports.stats import completed, group_stats, versus


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




def sweep_table(knob: str, rows: list[dict]) -> str:
    """A sweep's row per value (documents.rows); a value with no completed run says so."""
    return markdown_table(
        [knob, "test acc % (mean ± std)", "min–max", "gap % (train − val)", "epochs"],
        [[value_text(r["value"]),
          f"{pct(r['test_accuracy_mean'])} ± {pct(r['test_accuracy_std'])}",
          f"{pct(r['test_accuracy_min'])}–{pct(r['test_accuracy_max'])}",
          f"{pct(r['gap_mean'])} ± {pct(r['gap_std'])}",
          f"{r['epochs_mean']:.1f}"] if "runs" in r else
         [value_text(r["value"]), "no run completed", "—", "—", "—"] for r in rows])
