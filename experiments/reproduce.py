"""Reproduce the published MEVF / QCR rows, and give the sound number beside each.

    python experiments/reproduce.py list
    python experiments/reproduce.py run ROW [--seeds 1204,1,2] [--runs runs/repro] [--data vqa_rad=DIR] [key=value ...]
        (key=value: config overrides for every seed, e.g. train.device=cuda train.epochs=5)
    python experiments/reproduce.py evaluate ROW [--seeds 1204,1,2] [--runs runs/repro]
        (runs as they stand, e.g. stopped before the end of their schedule)
    python experiments/reproduce.py report [--runs runs/repro] [--out experiments/results] [--readme README.md]
    python experiments/reproduce.py status [--runs runs/repro] [--out experiments/results]
        (how far each run trained and was archived, whether its results are current, what to run next)

``run`` trains each seed of a row (resumable: a finished run is not redone, an interrupted one is
continued) and evaluates it under every protocol of the row; it refuses data prepared with another
resize filter than the row's. ``report`` archives the light files of every evaluated run
(``config.yaml``, ``metrics.csv``, ``results_<protocol>.json``) under ``OUT/runs/<row>/s<seed>/``
(before it copies anything it refuses a run whose results no longer report the epoch their protocol
picks, and one with another config or fewer epochs than the run archived for its row and seed), then
builds from that archive Markdown and CSV tables (mean +- std over seeds, the schedule each number
was measured with, the published number beside it), an ablation table (``ablation.md``: the change
each of ``ABLATIONS`` makes, over the seeds of both rows; ``ablation_matched.md``: the same at
matched epochs, replayed from ``metrics.csv``, where a run stopped early or runs differ in length)
and plots accuracy-per-epoch curves and the seed spread. The archive accumulates: a report on a
machine that holds only some of the runs keeps the others' archived results. To drop a run from the
table, delete its archived directory and the run itself (or report from another --runs folder), else
the next report archives it again. ``--readme`` copies the new tables into the blocks of a Markdown
file that quote them (``update_readme``).
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from medvqa import evaluate, train  # noqa: E402
from medvqa.config import frozen_encoders, load_config, run_identity  # noqa: E402
from medvqa.data import PreparedDataset  # noqa: E402
from infra.errors import UserError  # noqa: E402
from infra.files import replace_atomic, write_text_atomic  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUNS, DEFAULT_OUT = Path("runs/repro"), Path("experiments/results")
PROTOCOLS = ("pubmedclip-legacy", "mevf-legacy", "sound")  # evaluation order: results.json ends as sound's
SHOWN_ORDER = ("sound", "pubmedclip-legacy", "mevf-legacy")  # tables: the honest number first


@dataclass(frozen=True)
class Row:
    """One line of the table: a config, the protocols it is reported under, the published numbers."""

    config: str
    protocols: tuple[str, ...]
    published: dict[str, tuple[float | None, float | None, float | None]] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()
    resize_filter: str = "bicubic"  # of the square gray image caches the data was prepared with

    @property
    def config_path(self) -> Path:
        """The config file, wherever the script is run from (``config`` is relative to the repository)."""
        return REPO / self.config

    @property
    def dataset(self) -> str:
        """The dataset the row trains on: its config's folder (``configs/vqa_rad/...``: ``vqa_rad``)."""
        return Path(self.config).parent.name


MEVF_BAN_RAD = {"pubmedclip-legacy": (49.2, 77.2, 66.1), "mevf-legacy": (43.9, 75.1, None)}  # published
QCR_RAD = {"pubmedclip-legacy": (60.0, 79.3, 71.6)}
ROWS: dict[str, Row] = {
    "vqa_rad-mevf_ban": Row("configs/vqa_rad/mevf_ban.yaml", PROTOCOLS, MEVF_BAN_RAD),
    "vqa_rad-mevf_ban-all-train": Row("configs/vqa_rad/mevf_ban.yaml", ("pubmedclip-legacy", "mevf-legacy"),
                                      MEVF_BAN_RAD, ("data.train_splits=[train,val]",)),
    "vqa_rad-mevf_ban-nearest": Row("configs/vqa_rad/mevf_ban.yaml", PROTOCOLS, MEVF_BAN_RAD, resize_filter="nearest"),
    "vqa_rad-mevf_ban-frozen": Row("configs/vqa_rad/mevf_ban_frozen.yaml", PROTOCOLS),
    "vqa_rad-mevf_ban-frozen-nearest": Row("configs/vqa_rad/mevf_ban_frozen.yaml", PROTOCOLS, resize_filter="nearest"),
    "vqa_rad-mevf_ban-frozen-bf16": Row("configs/vqa_rad/mevf_ban_frozen.yaml", PROTOCOLS, overrides=("train.bf16=true",)),
    "vqa_rad-qcr": Row("configs/vqa_rad/qcr.yaml", ("pubmedclip-legacy", "sound"), QCR_RAD),
    "vqa_rad-qcr-all-train": Row("configs/vqa_rad/qcr.yaml", ("pubmedclip-legacy",), QCR_RAD,
                                 ("data.train_splits=[train,val]",)),
    # the published QCR code never loads the MAML weights: its MAML branch is trained from random weights
    "vqa_rad-qcr-maml-unloaded": Row("configs/vqa_rad/qcr.yaml", ("pubmedclip-legacy", "sound"), QCR_RAD,
                                     ("model.weights.maml=",)),
    "vqa_rad-qcr-frozen": Row("configs/vqa_rad/qcr_frozen.yaml", ("pubmedclip-legacy", "sound")),
    # pubmedclip-legacy on a train-answer-set run: test-selected epoch, but not the published answer set
    "slake-mevf_ban": Row("configs/slake/mevf_ban.yaml", ("sound", "pubmedclip-legacy")),
    "slake-mevf_ban-published-vocab": Row("configs/slake/mevf_ban.yaml", ("pubmedclip-legacy",),
                                          {"pubmedclip-legacy": (77.8, 79.8, 78.6)}, ("data.answer_vocab=train+test",)),
    "slake-mevf_ban-frozen": Row("configs/slake/mevf_ban_frozen.yaml", ("sound", "pubmedclip-legacy")),
    "slake-qcr": Row("configs/slake/qcr.yaml", ("sound", "pubmedclip-legacy")),
    "slake-qcr-published-vocab": Row("configs/slake/qcr.yaml", ("pubmedclip-legacy",),
                                     {"pubmedclip-legacy": (76.8, 80.6, 78.3)}, ("data.answer_vocab=train+test",)),
    "slake-qcr-frozen": Row("configs/slake/qcr_frozen.yaml", ("sound", "pubmedclip-legacy")),
}


DATASETS = tuple(dict.fromkeys(row.dataset for row in ROWS.values()))


@dataclass(frozen=True)
class Ablation:
    """Two rows that differ in one choice: the report gives the variant's change per protocol."""

    change: str
    base: str
    variant: str


FROZEN = "freeze the visual branches (published weights, cached features)"
ABLATIONS = (
    Ablation(FROZEN, "vqa_rad-mevf_ban", "vqa_rad-mevf_ban-frozen"),
    Ablation(FROZEN, "slake-mevf_ban", "slake-mevf_ban-frozen"),
    Ablation(FROZEN, "vqa_rad-qcr", "vqa_rad-qcr-frozen"),
    Ablation(FROZEN, "slake-qcr", "slake-qcr-frozen"),
    Ablation("train on all of train (validation tenth included)", "vqa_rad-mevf_ban", "vqa_rad-mevf_ban-all-train"),
    Ablation("train on all of train (validation tenth included)", "vqa_rad-qcr", "vqa_rad-qcr-all-train"),
    Ablation("MAML branch from random weights (the published QCR code)", "vqa_rad-qcr", "vqa_rad-qcr-maml-unloaded"),
    Ablation("nearest resize of the gray caches (Pillow 6 default)", "vqa_rad-mevf_ban", "vqa_rad-mevf_ban-nearest"),
    Ablation("nearest resize of the gray caches (Pillow 6 default)", "vqa_rad-mevf_ban-frozen",
             "vqa_rad-mevf_ban-frozen-nearest"),
    Ablation("bf16 autocast", "vqa_rad-mevf_ban-frozen", "vqa_rad-mevf_ban-frozen-bf16"),
)


def saved_config(run_dir: Path) -> dict[str, Any]:
    """The config mapping a run saved, as written (no validation: archived runs stay readable)."""
    return yaml.safe_load((run_dir / "config.yaml").read_text()) or {}


def planned_epochs(config: dict) -> int | None:
    """``train.epochs`` of a saved run config, read leniently."""
    return (config.get("train") or {}).get("epochs")


def schedule(run_dir: Path, done: int) -> tuple[str, bool]:
    """How a run was trained, in words, from its saved config and the ``done`` epochs it got through,
    and whether it finished its schedule.

    The config is read leniently (only the keys named here), so archived runs stay readable when
    config keys are added or renamed later.
    """
    config = saved_config(run_dir)
    model, train_config = config.get("model") or {}, config.get("train") or {}
    epochs = planned_epochs(config)
    visual = model.get("visual") or []
    frozen = frozen_encoders(model.get("freeze_visual") or False, visual)
    if frozen and set(frozen) == set(visual):
        branches = "frozen branches"
    else:
        branches = f"{'+'.join(frozen)} frozen, other branches fine-tuned" if frozen else "fine-tuned branches"
    recipe = f"{epochs} epochs, {branches}{', bf16 autocast' if train_config.get('bf16') else ''}"
    finished = epochs is not None and done >= epochs
    return (recipe, True) if finished else (f"{recipe} (stopped after {done})", False)


def check_resize_filter(name: str, data_root: Path) -> None:
    """Refuse data whose image caches were resized with another filter than the row states."""
    found = PreparedDataset(data_root).summary.get("square_filter", "bicubic")
    wanted = ROWS[name].resize_filter
    if found != wanted:
        raise UserError(f"row {name} needs data prepared with --resize-filter {wanted}, but "
                        f"{data_root / 'summary.json'} says {found}: pass --data {ROWS[name].dataset}=DIR")


def run_row(name: str, seeds: list[int], runs: Path, data: dict[str, str], overrides: list[str]) -> None:
    row = ROWS[name]
    extra = [f"data.root={data[row.dataset]}"] if row.dataset in data else []
    check_resize_filter(name, Path(load_config(row.config_path, [*extra, *row.overrides, *overrides]).data.root))
    for seed in seeds:
        run_dir = runs / name / f"s{seed}"
        status = train.main(["--config", str(row.config_path), "--out", str(run_dir), f"train.seed={seed}", *extra,
                             *row.overrides, *overrides])
        if status != 0:
            raise UserError(f"training {run_dir} failed with status {status}")
        evaluate_row(name, [seed], runs)


def evaluate_row(name: str, seeds: list[int], runs: Path) -> None:
    """Evaluate the runs of a row as they stand under its protocols (a stopped run: its best epochs so far)."""
    for seed in seeds:
        for protocol in ROWS[name].protocols:
            evaluate.evaluate_run(runs / name / f"s{seed}", protocol)


def reported(run_dir: Path) -> bool:
    """Whether a run holds a result under a protocol of its row: the runs ``collect`` reports."""
    return any((run_dir / f"results_{protocol}.json").is_file() for protocol in ROWS[run_dir.parent.name].protocols)


def evaluated_runs(runs: Path) -> list[Path]:
    """The run directories ``runs/<row>/s<seed>`` that hold at least one result file, sorted."""
    return sorted({path.parent for path in runs.glob("*/s*/results_*.json")})


def collect(runs: Path) -> pd.DataFrame:
    """One line per (row, seed, protocol) result file found under ``runs``, for the protocols of its row.

    Other protocols' files are passed over: training evaluates every run under ``sound``, which is no
    validation choice for a row trained on its validation split.
    """
    lines = []
    for run_dir in evaluated_runs(runs):
        row = run_dir.parent.name
        if row not in ROWS:
            raise UserError(f"{run_dir.parent} is not a row of this script (renamed?): rename or delete it")
        metrics = pd.read_csv(run_dir / "metrics.csv")
        recipe, finished = schedule(run_dir, len(metrics))
        for protocol in ROWS[row].protocols:
            path = run_dir / f"results_{protocol}.json"
            if not path.is_file():
                continue
            result = json.loads(path.read_text())
            check_current(path, result, metrics)
            resize_filter = (result.get("data") or {}).get("square_filter") or ROWS[row].resize_filter
            lines.append({"row": row, "seed": int(run_dir.name[1:]), "protocol": protocol,
                          "open": result["open"], "closed": result["closed"], "overall": result["overall"],
                          "n_open": result["n_open"], "n_closed": result["n_closed"], "epoch": result["epoch"],
                          "epochs": len(metrics), "finished": finished,
                          "schedule": recipe + ("" if resize_filter == "bicubic" else f", {resize_filter} resize"),
                          "config": ROWS[row].config})
    return pd.DataFrame(lines)


def picked_epoch(protocol: str, metrics: pd.DataFrame) -> int:
    """The epoch ``protocol`` reports after the epochs of ``metrics`` (``mevf-legacy``: the last)."""
    return int(metrics["epoch"].iloc[-1]) if protocol == "mevf-legacy" else int(select_epoch(metrics, protocol)["epoch"])


def check_current(path: Path, result: dict, metrics: pd.DataFrame) -> None:
    """Refuse a result evaluated before its run trained on: its protocol would pick another epoch now."""
    protocol = result["protocol"]
    now = picked_epoch(protocol, metrics)
    if now != result["epoch"]:
        run_dir = path.parent
        raise UserError(f"{path} holds epoch {result['epoch']}, but after the {len(metrics)} epochs of its "
                        f"metrics.csv {protocol} picks epoch {now}: evaluate again (reproduce.py evaluate "
                        f"{run_dir.parent.name} --seeds {run_dir.name[1:]} --runs {run_dir.parent.parent})")


def _mean_std(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "-"
    return f"{values.mean():.1f}" if len(values) == 1 else f"{values.mean():.1f} +- {values.std(ddof=1):.1f}"


def in_table_order(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` sorted by the order of ``ROWS``, then ``SHOWN_ORDER`` (stable within)."""
    rank = {name: i for i, name in enumerate(ROWS)}
    return results.sort_values(["row", "protocol"], kind="stable",
                               key=lambda column: column.map(rank if column.name == "row" else SHOWN_ORDER.index))


def table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean +- std over seeds per (row, protocol, schedule), with the published numbers beside."""
    lines = []
    for (row, protocol, recipe), group in in_table_order(results).groupby(["row", "protocol", "schedule"], sort=False):
        published = ROWS[row].published.get(protocol)
        lines.append({"row": row, "protocol": protocol, "seeds": len(group), "schedule": recipe,
                      **{k: _mean_std(group[k]) for k in ("open", "closed", "overall")},
                      "published": " / ".join("-" if v is None else f"{v}" for v in published) if published else "",
                      "config": group["config"].iloc[0]})
    return pd.DataFrame(lines)


def compared_whole(finished: Iterable[bool], epochs: Iterable[int]) -> bool:
    """Whether the runs of an ablation's two rows all finished their schedules, all as long: then
    ``ablation_table`` compares them whole, else ``matched_ablation_table`` at matched epochs."""
    return all(finished) and len(set(epochs)) == 1


def ablation_table(results: pd.DataFrame) -> pd.DataFrame:
    """Each ablation whose two rows' runs all finished, all as long: mean +- std of each, and the change.

    The change is the difference of the means over all seeds of each row; ``paired`` counts the seeds
    both rows ran, and the std of their per-seed changes follows in brackets when there are two or more.
    """
    lines = []
    for ablation in ABLATIONS:
        both = results[results["row"].isin([ablation.base, ablation.variant])]
        if not compared_whole(both["finished"], both["epochs"]):
            continue
        base, variant = (both[both["row"] == name] for name in (ablation.base, ablation.variant))
        for protocol in [p for p in SHOWN_ORDER if p in set(base["protocol"]) & set(variant["protocol"])]:
            a = base[base["protocol"] == protocol].set_index("seed")
            b = variant[variant["protocol"] == protocol].set_index("seed")
            paired = (b["overall"] - a["overall"]).dropna()
            lines.append({"change": ablation.change, "base": ablation.base, "variant": ablation.variant,
                          "protocol": protocol,
                          "base overall (seeds)": f"{_mean_std(a['overall'])} ({len(a)})",
                          "variant overall (seeds)": f"{_mean_std(b['overall'])} ({len(b)})",
                          "change open / closed / overall": " / ".join(
                              f"{b[k].mean() - a[k].mean():+.1f}" for k in ("open", "closed", "overall")),
                          "paired": f"{len(paired)}" + (f" ({paired.std(ddof=1):.1f})" if len(paired) > 1 else "")})
    return pd.DataFrame(lines)


def select_epoch(metrics: pd.DataFrame, protocol: str) -> pd.Series:
    """The test accuracy (``open``, ``closed``, ``overall``, ``epoch``) that ``protocol`` reports for the
    run whose per-epoch ``metrics.csv`` is ``metrics``: the first maximum, as training keeps its checkpoints.

    ``sound``: the best validation epoch (the last one without a validation split), gold answer types;
    ``pubmedclip-legacy``: the best test epoch, routed by the type classifier where the run has one
    (QCR: evaluation routes only QCR, so a MEVF run trained with a type classifier gets its epoch here,
    not its gold-type accuracies).
    """
    if protocol == "sound":
        chosen = metrics.loc[metrics["val_overall"].idxmax()] if "val_overall" in metrics else metrics.iloc[-1]
        prefix = "test_"
    elif protocol == "pubmedclip-legacy":
        prefix = "test_routed_" if "test_routed_overall" in metrics else "test_"
        chosen = metrics.loc[metrics[f"{prefix}overall"].idxmax()]
    else:
        raise ValueError(f"{protocol}: needs the freeform test subset, which metrics.csv does not hold")
    return pd.Series({k: chosen[f"{prefix}{k}"] for k in ("open", "closed", "overall")} | {"epoch": int(chosen["epoch"])})


MATCHED_PROTOCOLS = ("sound", "pubmedclip-legacy")  # the protocols select_epoch can replay


def matched_ablation_table(archive_dir: Path) -> pd.DataFrame:
    """The ablations ``ablation_table`` leaves out (a run stopped early, or runs of different lengths),
    compared at matched epochs over the seeds both rows ran (none in common: in neither table). The
    runs are those ``collect`` reports, so each ablation is in one table at most.

    For each such seed both runs' ``metrics.csv`` are cut to the epochs both finished, and each protocol
    picks its epoch within them (``select_epoch``): the same schedule on both sides, shortened.
    ``picked`` gives the epoch each side chose (base/variant), per seed.
    """
    lines = []
    for ablation in ABLATIONS:
        metrics = {run_dir: pd.read_csv(run_dir / "metrics.csv") for name in (ablation.base, ablation.variant)
                   for run_dir in sorted((archive_dir / name).glob("s*")) if reported(run_dir)}
        pairs = [(base_dir, variant_dir) for base_dir in metrics if base_dir.parent.name == ablation.base
                 if (variant_dir := archive_dir / ablation.variant / base_dir.name) in metrics]
        if not pairs or compared_whole([schedule(run_dir, len(m))[1] for run_dir, m in metrics.items()],
                                       [len(m) for m in metrics.values()]):
            continue
        for protocol in [p for p in MATCHED_PROTOCOLS
                         if p in ROWS[ablation.base].protocols and p in ROWS[ablation.variant].protocols]:
            chosen, epochs = [], []
            for pair in pairs:
                n = min(len(metrics[run_dir]) for run_dir in pair)
                chosen.append([select_epoch(metrics[run_dir].iloc[:n], protocol) for run_dir in pair])
                epochs.append(n)
            base, variant = (pd.DataFrame([pair[side] for pair in chosen]) for side in (0, 1))
            lines.append({"change": ablation.change, "base": ablation.base, "variant": ablation.variant,
                          "protocol": protocol, "epochs": "/".join(map(str, epochs)),
                          "base overall": _mean_std(base["overall"]), "variant overall": _mean_std(variant["overall"]),
                          "change open / closed / overall": " / ".join(
                              f"{(variant[k] - base[k]).mean():+.1f}" for k in ("open", "closed", "overall")),
                          "seeds": ",".join(d.name[1:] for d, _ in pairs),
                          "picked": ",".join(f"{a:.0f}/{b:.0f}" for a, b in zip(base["epoch"], variant["epoch"]))})
    return pd.DataFrame(lines)


def save_figure(figure: plt.Figure, path: Path) -> None:
    """A PNG written atomically (the format named: the temporary file has no .png suffix)."""
    replace_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))


def plot_curves(runs: Path, out: Path) -> None:
    """Validation (solid), test (dashed) and, for runs with a type classifier, routed test accuracy
    (dotted: what ``pubmedclip-legacy`` picks from) per epoch of every run, one panel per row."""
    run_dirs = sorted(p for p in runs.glob("*/s*") if (p / "metrics.csv").is_file())
    if not run_dirs:
        return
    rows = [name for name in ROWS if name in {p.parent.name for p in run_dirs}]
    figure, axes = plt.subplots(len(rows), 1, figsize=(7, 2.6 * len(rows)), squeeze=False)
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
    plt.close(figure)


def published_overall(row: str, protocol: str) -> float | None:
    return (ROWS[row].published.get(protocol) or (None, None, None))[2]


PROTOCOL_COLOURS = {"sound": "C0", "pubmedclip-legacy": "C1", "mevf-legacy": "C2"}


def plot_spread(results: pd.DataFrame, out: Path) -> None:
    """Overall accuracy of each seed per row and protocol, top down in table order.

    Runs stopped before the end of their schedule are hollow dots; the published overall is a cross.
    """
    if results.empty:
        return
    groups = list(in_table_order(results).groupby(["row", "protocol"], sort=False))
    figure, axis = plt.subplots(figsize=(7, 0.4 * len(groups) + 1.2))
    for y, ((row, protocol), group) in enumerate(groups):
        finished, colour = group["finished"], PROTOCOL_COLOURS[protocol]
        axis.scatter(group.loc[finished, "overall"], [y] * int(finished.sum()), s=20, color=colour)
        axis.scatter(group.loc[~finished, "overall"], [y] * int((~finished).sum()), s=20, edgecolors=colour,
                     facecolors="none")
        published = published_overall(row, protocol)
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
    if any(published_overall(row, protocol) is not None for (row, protocol), _ in groups):
        legend.append(Line2D([], [], ls="", marker="x", color="black", label="published"))
    axis.legend(handles=legend, fontsize=7, loc="best")
    axis.set_xlabel("overall accuracy % (one dot per seed)")
    figure.tight_layout()
    save_figure(figure, out / "seed_spread.png")
    plt.close(figure)


ARCHIVED = ("config.yaml", "metrics.csv", "results_*.json")


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """A config mapping as dotted settings (``model.weights.maml``), runtime settings aside (``run_identity``)."""
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(run_identity(config), "")
    return flat


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Setting -> (old value, new value) for the settings both configs hold with different values.

    Settings only one of them holds are passed over, so archived runs stay comparable when keys are added later.
    """
    a, b = settings(old), settings(new)
    return {key: (a[key], b[key]) for key in sorted(a.keys() & b.keys()) if a[key] != b[key]}


def override(key: str, value: Any) -> str:
    """``key=value`` as a config override that sets ``value``, quoted for a shell."""
    return shlex.quote(f"{key}={value if isinstance(value, str) else json.dumps(value)}")


def check_replaces(run_dir: Path, target: Path) -> None:
    """Refuse ``run_dir`` as the new copy of the run archived in ``target``: another config, or fewer epochs."""
    if changes := config_changes(saved_config(target), saved_config(run_dir)):
        differences = "; ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())
        raise UserError(f"{run_dir} is another run than the one archived in {target} (its config differs: "
                        f"{differences}): report it to another --out, or delete {target} to replace it")
    trained, stored = (len(pd.read_csv(d / "metrics.csv")) for d in (run_dir, target))
    if trained < stored:
        raise UserError(f"{run_dir} has trained {trained} epochs, its archived copy {target} {stored}: "
                        f"train it on before reporting it, or delete {target} to go back to {trained}")


def archive(runs: Path, archive_dir: Path) -> int:
    """Copy the light files of every evaluated run under ``runs`` into ``archive_dir``; returns how many.

    Each archived run is replaced whole (stale protocol files go) and only once its copy is complete;
    nothing is copied where one run would replace an archived run of another config (say a run with
    ``train.epochs=200`` over the 20-epoch run of its row and seed) or one that trained longer.
    """
    if archive_dir.resolve() in (runs.resolve(), *runs.resolve().parents):
        raise UserError(f"--runs {runs} is inside the archive {archive_dir}: archiving would replace the runs "
                        "with their light files; pass the folder the runs were trained in")
    for leftover in [*archive_dir.glob("*/.s*.partial"), *archive_dir.glob("*/.s*.retired")]:
        target = leftover.with_name(leftover.name[1:].rsplit(".", 1)[0])
        if leftover.suffix == ".retired" and not target.exists():  # a report stopped between its two renames
            leftover.rename(target)
        else:  # an unfinished copy, or a replaced run whose new copy is complete
            shutil.rmtree(leftover)
    targets = {run_dir: archive_dir / run_dir.parent.name / run_dir.name
               for run_dir in evaluated_runs(runs)}
    for run_dir, target in targets.items():
        if (target / "config.yaml").is_file():
            check_replaces(run_dir, target)
    for run_dir, target in targets.items():
        staging, retired = (target.with_name(f".{target.name}.{kind}") for kind in ("partial", "retired"))
        staging.mkdir(parents=True)
        for pattern in ARCHIVED:
            for path in run_dir.glob(pattern):
                shutil.copy2(path, staging / path.name)
        if target.exists():
            target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    return len(targets)


def report(runs: Path, out: Path) -> pd.DataFrame:
    collect(runs)  # a stale or unknown run is refused before it replaces its archived copy
    print(f"archived {archive(runs, out / 'runs')} runs from {runs} under {out / 'runs'}")
    results = collect(out / "runs")
    if results.empty:
        raise UserError(f"no results_*.json under {runs}/<row>/s<seed>/ or {out / 'runs'}: run some rows first")
    summary, ablations = table(results), ablation_table(results)
    write_text_atomic(out / "runs.csv", results.to_csv(index=False))
    write_text_atomic(out / "table.csv", summary.to_csv(index=False))
    write_text_atomic(out / "table.md", markdown(summary))
    write_text_atomic(out / "ablation.csv", ablations.to_csv(index=False))
    write_text_atomic(out / "ablation.md", markdown(ablations) if not ablations.empty else "no ablation has both rows\n")
    matched = matched_ablation_table(out / "runs")
    write_text_atomic(out / "ablation_matched.csv", matched.to_csv(index=False))
    write_text_atomic(out / "ablation_matched.md",
                      markdown(matched) if not matched.empty else "no ablation with a run stopped early\n")
    plot_curves(out / "runs", out)
    plot_spread(results, out)
    return summary


def _run_metrics(run_dir: Path) -> pd.DataFrame | None:
    """The run's ``metrics.csv`` (empty before its first epoch); None where there is no run."""
    if not (run_dir / "config.yaml").is_file():
        return None
    return pd.read_csv(run_dir / "metrics.csv") if (run_dir / "metrics.csv").is_file() else pd.DataFrame()


def _result_state(run_dir: Path, protocol: str, metrics: pd.DataFrame) -> str:
    """``protocol``'s result in ``run_dir`` in a word: the epoch it reports, ``stale`` or ``none``."""
    path = run_dir / f"results_{protocol}.json"
    if not path.is_file():
        return f"{protocol} none"
    epoch = json.loads(path.read_text())["epoch"]
    current = not metrics.empty and picked_epoch(protocol, metrics) == epoch
    return f"{protocol} {'epoch ' + str(epoch) if current else 'stale'}"


def own_overrides(row: str, seed: int, config: dict[str, Any]) -> list[str]:
    """The overrides that ``run ROW --seeds SEED`` needs to train the run whose saved config is ``config``."""
    row_config = load_config(ROWS[row].config_path, [*ROWS[row].overrides, f"train.seed={seed}"]).to_dict()
    return [override(key, value) for key, (_, value) in config_changes(row_config, config).items()]


def run_status(runs: Path, out: Path) -> pd.DataFrame:
    """One line per run trained under ``runs`` or archived in the report folder ``out``: epochs trained
    and archived against its schedule, whether its results are current, and the command that comes next
    (with the overrides the run was trained with beyond its row's)."""
    archive_dir = out / "runs"
    found = sorted({(path.parent.parent.name, path.parent.name) for base in (runs, archive_dir)
                    for path in base.glob("*/s*/config.yaml")})
    where = "" if runs == DEFAULT_RUNS else f" --runs {shlex.quote(str(runs))}"
    report_to = "" if out == DEFAULT_OUT else f" --out {shlex.quote(str(out))}"
    lines = []
    for row, seed_dir in found:
        here, stored, seed = runs / row / seed_dir, archive_dir / row / seed_dir, seed_dir[1:]
        trained, archived = _run_metrics(here), _run_metrics(stored)
        source, metrics = (here, trained) if trained is not None else (stored, archived)
        config = saved_config(source)
        planned = planned_epochs(config)
        if row not in ROWS:
            results, next_step = [], "not a row of this script (renamed?): rename or delete it"
        else:
            results = [_result_state(source, protocol, metrics) for protocol in ROWS[row].protocols]
            if planned and len(metrics) < planned:
                next_step = " ".join([f"run {row} --seeds {seed}{where}", *own_overrides(row, int(seed), config)])
                if trained is None:
                    next_step += f" (starts again: no run directory under {runs})"
            elif trained is None:
                next_step = "done"
            elif any(state.endswith(("stale", "none")) for state in results):
                next_step = f"evaluate {row} --seeds {seed}{where}"
            elif archived is None or len(archived) != len(trained):
                next_step = f"report{where}{report_to}"
            else:
                next_step = "done"
        lines.append({"row": row, "seed": seed,
                      "trained": "-" if trained is None else f"{len(trained)}/{planned}",
                      "archived": "-" if archived is None else f"{len(archived)}/{planned}",
                      "results": ", ".join(results) or "-", "next": next_step})
    return pd.DataFrame(lines, columns=["row", "seed", "trained", "archived", "results", "next"])


README_OPENER = re.compile(r"<!-- reproduce: (\S+) -->\n")
README_BLOCK = re.compile(rf"({README_OPENER.pattern})(?:(?!<!-- reproduce: ).)*?(?=<!-- /reproduce -->)", re.S)


def update_readme(readme: Path, out: Path) -> int:
    """Refresh every block of ``readme`` that quotes a file of ``out``; returns how many.

    A block is ``<!-- reproduce: experiments/results/cpu/table.md -->``, the file's text between
    blank lines, then ``<!-- /reproduce -->``; the path is relative to the README's folder.
    """
    if not readme.is_file():
        raise UserError(f"--readme {readme} is not a file")
    text, updated = readme.read_text(), 0
    closed = {match.start() for match in README_BLOCK.finditer(text)}
    for opener in README_OPENER.finditer(text):
        if opener.start() not in closed:
            raise UserError(f"{readme} line {text.count(chr(10), 0, opener.start()) + 1}: the block quoting "
                            f"{opener[1]} has no '<!-- /reproduce -->' before the next block or the end")

    def quote(match: re.Match) -> str:
        nonlocal updated
        path = (readme.parent / match[2]).resolve()
        if path.parent != out.resolve():
            return match[0]
        if not path.is_file():
            raise UserError(f"{readme} quotes {match[2]}, which the report did not write")
        updated += 1
        return f"{match[1]}\n{path.read_text()}\n"  # blank lines: Markdown sees a table, not HTML

    text = README_BLOCK.sub(quote, text)
    if not updated:
        raise UserError(f"{readme} has no block quoting a file of {out}: add '<!-- reproduce: "
                        f"{out}/table.md -->' and '<!-- /reproduce -->' on lines of their own")
    write_text_atomic(readme, text)
    return updated


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``frame``."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def data_location(text: str) -> tuple[str, str]:
    dataset, sep, root = text.partition("=")
    if not sep or not root or dataset not in DATASETS:
        raise argparse.ArgumentTypeError(f"{text!r} is not DATASET=DIR (DATASET one of {', '.join(DATASETS)}), "
                                         "e.g. vqa_rad=data/vqa_rad_nearest")
    return dataset, root


def seed_list(text: str) -> list[int]:
    try:
        return [int(seed) for seed in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    runs = argparse.ArgumentParser(add_help=False)
    runs.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="the folder the runs are trained in")
    seeds = argparse.ArgumentParser(add_help=False, parents=[runs])
    seeds.add_argument("row", choices=list(ROWS))
    seeds.add_argument("--seeds", type=seed_list, default="1204", help="comma-separated seeds")
    out = argparse.ArgumentParser(add_help=False, parents=[runs])
    out.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the report's folder (its archive)")
    sub.add_parser("list")
    run = sub.add_parser("run", parents=[seeds])
    run.add_argument("--data", type=data_location, action="append", default=[],
                     help=f"DATASET=DIR prepared data, DATASET one of {', '.join(DATASETS)}")
    sub.add_parser("evaluate", parents=[seeds],
                   help="evaluate the runs of a row as they stand, e.g. after stopping them")
    sub.add_parser("status", parents=[out], help="how far each run trained, and what to run next")
    rep = sub.add_parser("report", parents=[out])
    rep.add_argument("--readme", type=Path, help="also refresh the blocks of this file that quote the report's files")
    args, extra = parser.parse_known_args(argv)
    overrides = [item for item in extra if "=" in item and not item.startswith("-")]
    if args.command != "run" and extra or len(overrides) != len(extra):
        parser.error(f"unrecognized arguments: {' '.join(i for i in extra if i not in overrides) or ' '.join(extra)}")
    try:
        if args.command == "list":
            for name, row in ROWS.items():
                print(f"{name:<32} {row.config:<38} {', '.join(row.protocols)}")
        elif args.command == "run":
            run_row(args.row, args.seeds, args.runs, dict(args.data), overrides)
        elif args.command == "evaluate":
            evaluate_row(args.row, args.seeds, args.runs)
        elif args.command == "status":
            states = run_status(args.runs, args.out)
            print(states.to_string(index=False) if not states.empty else f"no runs under {args.runs} or {args.out}")
        else:
            print(report(args.runs, args.out).to_string(index=False))
            if args.readme:
                print(f"refreshed {update_readme(args.readme, args.out)} blocks of {args.readme}")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
