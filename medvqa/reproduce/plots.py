"""The report's plots: accuracy per epoch of every run, and the spread of the seeds of each row."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from infra.files import replace_atomic
from medvqa.reproduce.results import SHOWN_ORDER, reported_after_each_epoch
from medvqa.reproduce.rows import Grid
from medvqa.reproduce.tables import in_table_order

PROTOCOL_COLOURS = {"sound": "C0", "pubmedclip-legacy": "C1", "mevf-legacy": "C2"}


def save_figure(figure: Figure, path: Path) -> None:
    """A PNG written atomically (the format named: the temporary file has no .png suffix)."""
    replace_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))


def plot_curves(grid: Grid, runs: Path, out: Path) -> None:
    """Validation (solid), test (dashed) and, for runs with a type classifier, routed test accuracy
    (dotted: what ``pubmedclip-legacy`` picks from) per epoch of every run, one panel per row."""
    run_dirs = sorted(p for p in runs.glob("*/s*") if (p / "metrics.csv").is_file())
    if not run_dirs:
        return
    rows = [name for name in grid.rows if name in {p.parent.name for p in run_dirs}]
    figure = Figure(figsize=(7, 2.6 * len(rows)))
    axes = figure.subplots(len(rows), 1, squeeze=False)
    for axis, row in zip(axes[:, 0], rows):
        for colour, run_dir in enumerate(p for p in run_dirs if p.parent.name == row):  # one colour per seed
            metrics = pd.read_csv(run_dir / "metrics.csv")
            if "val_overall" in metrics:  # absent when the run trains on its validation split too
                axis.plot(metrics["epoch"], metrics["val_overall"], color=f"C{colour}", label=f"{run_dir.name} val")
            axis.plot(metrics["epoch"], metrics["test_overall"], "--", color=f"C{colour}",
                      label=f"{run_dir.name} test")
            if "test_routed_overall" in metrics:
                axis.plot(metrics["epoch"], metrics["test_routed_overall"], ":", color=f"C{colour}",
                          label=f"{run_dir.name} test routed")
        axis.set_title(row, fontsize=9)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel("overall %")
        axis.legend(fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("epoch")
    figure.tight_layout()
    save_figure(figure, out / "curves.png")


def plot_selection(grid: Grid, runs: Path, out: Path, min_epochs: int = 40) -> None:
    """What test selection buys as training goes on: after each epoch of every run of ``min_epochs`` or
    more, the test accuracy ``pubmedclip-legacy`` would report (its best test epoch so far, solid) and the
    one ``sound`` would (at its best validation epoch so far, dashed), one panel per row, the published
    figure dotted. Nothing is written when no run trained that long."""
    pair = ("pubmedclip-legacy", "sound")
    run_dirs = [p for p in sorted(runs.glob("*/s*")) if p.parent.name in grid.rows
                and set(pair) <= set(grid.rows[p.parent.name].protocols) and (p / "metrics.csv").is_file()]
    long_runs = {p: metrics for p in run_dirs if len(metrics := pd.read_csv(p / "metrics.csv")) >= min_epochs}
    rows = [name for name in grid.rows if name in {p.parent.name for p in long_runs}]
    if not rows:
        return
    figure = Figure(figsize=(7, 2.8 * len(rows)))
    axes = figure.subplots(len(rows), 1, squeeze=False)
    for axis, row in zip(axes[:, 0], rows):
        for colour, (run_dir, metrics) in enumerate((p, m) for p, m in long_runs.items() if p.parent.name == row):
            epochs = range(1, len(metrics) + 1)
            for protocol, style in zip(pair, ("-", "--")):
                axis.plot(epochs, reported_after_each_epoch(metrics, protocol), style, color=f"C{colour}",
                          label=f"{run_dir.name} {protocol}")
        published = published_overall(grid, row, pair[0])
        if published is not None:
            axis.axhline(published, ls=":", color="black", label=f"published ({pair[0]})")
        axis.set_title(f"{row}: the test accuracy each protocol reports after n epochs", fontsize=9)
        axis.set_ylabel("overall %")
        axis.legend(fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("epochs trained")
    figure.tight_layout()
    save_figure(figure, out / "selection.png")


def published_overall(grid: Grid, row: str, protocol: str) -> float | None:
    """The published overall accuracy of ``row`` under ``protocol``; None where none is given."""
    return (grid.rows[row].published.get(protocol) or (None, None, None))[2]


def plot_spread(grid: Grid, results: pd.DataFrame, out: Path) -> None:
    """Overall accuracy of each seed per row and protocol, top down in table order.

    Runs stopped before the end of their schedule are hollow dots; the published overall is a cross.
    """
    if results.empty:
        return
    groups = list(in_table_order(grid, results).groupby(["row", "protocol"], sort=False))
    figure = Figure(figsize=(7, 0.4 * len(groups) + 1.2))
    axis = figure.subplots()
    for y, ((row, protocol), group) in enumerate(groups):
        finished, colour = group["finished"], PROTOCOL_COLOURS[protocol]
        axis.scatter(group.loc[finished, "overall"], [y] * int(finished.sum()), s=20, color=colour)
        axis.scatter(group.loc[~finished, "overall"], [y] * int((~finished).sum()), s=20, edgecolors=colour,
                     facecolors="none")
        published = published_overall(grid, row, protocol)
        if published is not None:
            axis.scatter([published], [y], marker="x", s=30, color="black")
    axis.set_yticks(range(len(groups)), [f"{row} [{protocol}]" for (row, protocol), _ in groups], fontsize=7)
    axis.invert_yaxis()
    axis.grid(axis="x", alpha=0.3)
    legend = [Line2D([], [], ls="", marker="o", color=PROTOCOL_COLOURS[p], label=p)
              for p in SHOWN_ORDER if p in set(results["protocol"])]
    if not results["finished"].all():
        legend.append(Line2D([], [], ls="", marker="o", color="grey", markerfacecolor="none",
                             label="stopped early"))
    if any(published_overall(grid, row, protocol) is not None for (row, protocol), _ in groups):
        legend.append(Line2D([], [], ls="", marker="x", color="black", label="published"))
    axis.legend(handles=legend, fontsize=7, loc="best")
    axis.set_xlabel("overall accuracy % (one dot per seed)")
    figure.tight_layout()
    save_figure(figure, out / "seed_spread.png")
