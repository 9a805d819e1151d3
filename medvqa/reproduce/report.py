"""The report: archive the evaluated runs, then write the tables and plots of everything archived."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from infra.errors import UserError
from infra.files import write_text_atomic
from medvqa.reproduce.archive import archive, check_report_folder
from medvqa.reproduce.plots import plot_curves, plot_selection, plot_spread
from medvqa.reproduce.results import collect
from medvqa.reproduce.rows import Grid
from medvqa.reproduce.tables import ablation_table, markdown, matched_ablation_table, table


def report(grid: Grid, runs: Path, out: Path) -> pd.DataFrame:
    """Archive the evaluated runs under ``runs`` into ``out/runs``, then write from that archive
    ``runs.csv``, ``table.{csv,md}``, ``ablation{,_matched}.{csv,md}``, ``curves.png``, ``seed_spread.png``
    and, where runs trained 40 epochs or more, ``selection.png`` into ``out``; returns the table."""
    collect(grid, runs)  # a stale or unknown run is refused before it replaces its archived copy
    check_report_folder(out)
    print(f"archived {archive(runs, out / 'runs')} runs from {runs} under {out / 'runs'}")
    results = collect(grid, out / "runs")
    if results.empty:
        raise UserError(f"no results_*.json under {runs}/<row>/s<seed>/ or {out / 'runs'}: run some rows first")
    summary, ablations = table(grid, results), ablation_table(grid, results, out / "runs")
    write_text_atomic(out / "runs.csv", results.to_csv(index=False))
    write_text_atomic(out / "table.csv", summary.to_csv(index=False))
    write_text_atomic(out / "table.md", markdown(summary))
    write_text_atomic(out / "ablation.csv", ablations.to_csv(index=False))
    write_text_atomic(out / "ablation.md",
                      markdown(ablations) if not ablations.empty else "no ablation has both rows\n")
    matched = matched_ablation_table(grid, out / "runs")
    write_text_atomic(out / "ablation_matched.csv", matched.to_csv(index=False))
    write_text_atomic(out / "ablation_matched.md",
                      markdown(matched) if not matched.empty else "no ablation with a run stopped early\n")
    plot_curves(grid, out / "runs", out)
    plot_spread(grid, results, out)
    plot_selection(grid, out / "runs", out)
    return summary
