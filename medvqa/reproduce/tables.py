"""The report's statistics: mean +- std over seeds per row and protocol, the change each ablation
makes (with its paired test question by question where both rows' predictions are archived), and the
same at matched epochs, replayed from ``metrics.csv``, where runs differ in length."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from medvqa.report.analysis import compare_runs
from medvqa.report.runs import load_runs
from medvqa.report.tables import format_difference
from medvqa.reproduce.results import LATE_EPOCHS, REPLAYABLE, SHOWN_ORDER, late_overall, replay, reported, schedule
from medvqa.reproduce.rows import Ablation, Grid


def mean_std(values: pd.Series) -> str:
    """``mean +- std`` (sample std) of the numbers in ``values``; the mean alone for one, ``-`` for none."""
    values = values.dropna()
    if values.empty:
        return "-"
    return f"{values.mean():.1f}" if len(values) == 1 else f"{values.mean():.1f} +- {values.std(ddof=1):.1f}"


def in_table_order(grid: Grid, results: pd.DataFrame) -> pd.DataFrame:
    """``results`` sorted by the order of the grid's rows, then ``SHOWN_ORDER`` (stable within)."""
    rank = {name: i for i, name in enumerate(grid.rows)}
    return results.sort_values(["row", "protocol"], kind="stable",
                               key=lambda column: column.map(rank if column.name == "row" else SHOWN_ORDER.index))


def table(grid: Grid, results: pd.DataFrame) -> pd.DataFrame:
    """Mean +- std over seeds per (row, protocol, schedule), with the published numbers beside."""
    lines = []
    for (row, protocol, recipe), group in in_table_order(grid, results).groupby(["row", "protocol", "schedule"],
                                                                                 sort=False):
        published = grid.rows[row].published.get(protocol)
        lines.append({"row": row, "protocol": protocol, "seeds": len(group), "schedule": recipe,
                      **{k: mean_std(group[k]) for k in ("open", "closed", "overall")},
                      "published": " / ".join("-" if v is None else f"{v}" for v in published) if published else "",
                      "config": group["config"].iloc[0]})
    return pd.DataFrame(lines)


def compared_whole(ablation: Ablation, finished: Iterable[bool], epochs: Iterable[int]) -> bool:
    """Whether the runs of an ablation's two rows all finished their schedules, all as long (or as long as
    their rows plan, for an ablation of the length): then ``ablation_table`` compares them whole, else
    ``matched_ablation_table`` at matched epochs."""
    return all(finished) and (ablation.length or len(set(epochs)) == 1)


def per_question_change(archive_dir: Path, ablation: Ablation, protocol: str) -> str:
    """The variant's paired change of overall accuracy question by question, over the seeds whose archived runs
    of both rows hold predictions under ``protocol``: ``-1.8 [-4.9, +1.1] p 0.32 (1204)``, ``-`` for none.

    The interval is a bootstrap over questions and p a sign-flip permutation test (``medvqa compare``)."""
    sides = [{run_dir.name: run_dir for run_dir in sorted((archive_dir / name).glob("s*"))
              if (run_dir / f"predictions_{protocol}.csv").is_file()} for name in (ablation.base, ablation.variant)]
    seeds = sorted(sides[0].keys() & sides[1].keys(), key=lambda name: int(name[1:]))
    if not seeds:
        return "-"
    base, variant = (load_runs([side[seed] for seed in seeds], protocol) for side in sides)
    overall = compare_runs(base, variant)["overall"]
    return f"{format_difference(overall)} p {overall['p_value']:.2g} ({','.join(seed[1:] for seed in seeds)})"


def ablation_table(grid: Grid, results: pd.DataFrame, archive_dir: Path) -> pd.DataFrame:
    """Each ablation whose two rows' runs all finished, all as long (each as its row plans, for an ablation of
    the length): mean +- std of each, and the change.

    The change is the difference of the means over all seeds of each row; ``paired`` counts the seeds
    both rows ran, and the std of their per-seed changes follows in brackets when there are two or more;
    ``per question`` tests the change on the seeds whose predictions ``archive_dir`` holds for both rows.
    """
    lines = []
    for ablation in grid.ablations:
        both = results[results["row"].isin([ablation.base, ablation.variant])]
        if not compared_whole(ablation, both["finished"], both["epochs"]):
            continue
        base, variant = (both[both["row"] == name] for name in (ablation.base, ablation.variant))
        for protocol in [p for p in SHOWN_ORDER if p in set(base["protocol"]) & set(variant["protocol"])]:
            a = base[base["protocol"] == protocol].set_index("seed")
            b = variant[variant["protocol"] == protocol].set_index("seed")
            paired = (b["overall"] - a["overall"]).dropna()
            lines.append({"change": ablation.change, "base": ablation.base, "variant": ablation.variant,
                          "protocol": protocol,
                          "base overall (seeds)": f"{mean_std(a['overall'])} ({len(a)})",
                          "variant overall (seeds)": f"{mean_std(b['overall'])} ({len(b)})",
                          "change open / closed / overall": " / ".join(
                              f"{b[k].mean() - a[k].mean():+.1f}" for k in ("open", "closed", "overall")),
                          "paired": f"{len(paired)}" + (f" ({paired.std(ddof=1):.1f})" if len(paired) > 1 else ""),
                          "per question": per_question_change(archive_dir, ablation, protocol)})
    return pd.DataFrame(lines)


def matched_ablation_table(grid: Grid, archive_dir: Path) -> pd.DataFrame:
    """The ablations ``ablation_table`` leaves out (a run stopped early, or runs of different lengths),
    compared at matched epochs over the seeds both rows ran (none in common: in neither table). The
    runs are those ``collect`` reports, so each ablation is in one table at most; an ablation of the
    length is in this one never.

    For each such seed both runs' ``metrics.csv`` are cut to the epochs both finished, and each protocol
    picks its epoch within them (``replay``): the same schedule on both sides, shortened.
    ``picked`` gives the epoch each side chose (base/variant), per seed. The last column compares where
    the curves end instead (``late_overall``: the mean of the last matched epochs, per seed in parentheses),
    which no epoch selection moves.
    """
    lines = []
    for ablation in [ablation for ablation in grid.ablations if not ablation.length]:
        metrics = {run_dir: pd.read_csv(run_dir / "metrics.csv") for name in (ablation.base, ablation.variant)
                   for run_dir in sorted((archive_dir / name).glob("s*")) if reported(grid, run_dir)}
        pairs = [(base_dir, variant_dir) for base_dir in metrics if base_dir.parent.name == ablation.base
                 if (variant_dir := archive_dir / ablation.variant / base_dir.name) in metrics]
        if not pairs or compared_whole(ablation, [schedule(run_dir, len(m))[1] for run_dir, m in metrics.items()],
                                       [len(m) for m in metrics.values()]):
            continue
        for protocol in [p for p in REPLAYABLE
                         if p in grid.rows[ablation.base].protocols and p in grid.rows[ablation.variant].protocols]:
            chosen, epochs, late_changes = [], [], []
            for pair in pairs:
                n = min(len(metrics[run_dir]) for run_dir in pair)
                chosen.append([replay(metrics[run_dir].iloc[:n], protocol) for run_dir in pair])
                base_late, variant_late = (late_overall(metrics[run_dir].iloc[:n], protocol) for run_dir in pair)
                late_changes.append(variant_late - base_late)
                epochs.append(n)
            base, variant = (pd.DataFrame([pair[side] for pair in chosen]) for side in (0, 1))
            lines.append({"change": ablation.change, "base": ablation.base, "variant": ablation.variant,
                          "protocol": protocol, "epochs": "/".join(map(str, epochs)),
                          "base overall": mean_std(base["overall"]), "variant overall": mean_std(variant["overall"]),
                          "change open / closed / overall": " / ".join(
                              f"{(variant[k] - base[k]).mean():+.1f}" for k in ("open", "closed", "overall")),
                          "seeds": ",".join(d.name[1:] for d, _ in pairs),
                          "picked": ",".join(f"{a:.0f}/{b:.0f}" for a, b in zip(base["epoch"], variant["epoch"])),
                          f"change, mean of the last {LATE_EPOCHS} epochs": f"{sum(late_changes) / len(pairs):+.1f} ("
                          + ", ".join(f"{change:+.1f}" for change in late_changes) + ")"})
    return pd.DataFrame(lines)


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``frame``."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"
