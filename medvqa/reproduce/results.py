"""What the runs of a grid hold: their saved configs and schedules, their result files, and the
epoch each protocol picks from their ``metrics.csv`` (replayed with ``medvqa.protocols``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from infra.errors import UserError
from medvqa.config import ADDED_KEYS, upgrade_run_config
from medvqa.models.visual import frozen_encoders
from medvqa.protocols import PROTOCOLS, Protocol, chosen_after_each_epoch, get_protocol, select_epoch
from medvqa.reproduce.rows import Grid

SHOWN_ORDER = ("sound", "pubmedclip-legacy", "mevf-legacy")  # tables: the honest number first
# the protocols whose reported accuracies metrics.csv holds (not those of a subset of the test QA)
REPLAYABLE = tuple(name for name in SHOWN_ORDER if PROTOCOLS[name].phrase_types is None)
LATE_EPOCHS = 5  # the end of a training curve that ``late_overall`` averages


def saved_config(run_dir: Path) -> dict[str, Any]:
    """The config mapping a run saved, in today's layout (``upgrade_run_config``) but not validated,
    so archived runs of earlier versions stay readable and compare with new ones."""
    return upgrade_run_config(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})


def planned_epochs(config: dict[str, Any]) -> int | None:
    """``train.epochs`` of a saved run config, read leniently."""
    return (config.get("train") or {}).get("epochs")


TF32_WORDS = {"ieee": "", "cudnn": ", TF32 convolutions and RNNs", "all": ", TF32 convolutions, RNNs and matrix products"}


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
    precision = ""
    if train_config.get("bf16"):  # a config from before bf16_visual existed ran its encoders as ADDED_KEYS says
        visual_bf16 = train_config.get("bf16_visual", ADDED_KEYS["train"]["bf16_visual"])
        precision = ", bf16 autocast" + ("" if visual_bf16 else " (visual branches float32)")
    if str(train_config.get("device", "")).startswith("cuda"):  # TF32 is a CUDA matter; a config without it had
        mode = train_config.get("tf32", ADDED_KEYS["train"]["tf32"])  # PyTorch's default
        precision += TF32_WORDS.get(mode, f", train.tf32={mode}")
    recipe = f"{epochs} epochs, {branches}{precision}"
    finished = epochs is not None and done >= epochs
    return (recipe, True) if finished else (f"{recipe} (stopped after {done})", False)


def evaluated_runs(runs: Path) -> list[Path]:
    """The run directories ``runs/<row>/s<seed>`` that hold at least one result file, sorted."""
    return sorted({path.parent for path in runs.glob("*/s*/results_*.json")})


def reported(grid: Grid, run_dir: Path) -> bool:
    """Whether a run holds a result under a protocol of its row: the runs ``collect`` reports."""
    protocols = grid.rows[run_dir.parent.name].protocols
    return any((run_dir / f"results_{protocol}.json").is_file() for protocol in protocols)


def epoch_rows(metrics: pd.DataFrame) -> list[dict[str, Any]]:
    """The lines of a ``metrics.csv`` as mappings, an empty cell as ``None``."""
    return metrics.astype(object).where(metrics.notna(), None).to_dict("records")


def picked_epoch(protocol: str, metrics: pd.DataFrame) -> int:
    """The epoch ``protocol`` reports after the epochs of ``metrics`` (``mevf-legacy``: the last)."""
    return int(select_epoch(epoch_rows(metrics), protocol)["epoch"])


def _test_accuracies(chosen: dict[str, Any], rules: Protocol) -> dict[str, float]:
    """The test ``open``, ``closed`` and ``overall`` of a chosen metrics row: routed ones where the protocol
    routes by the type classifier and the run has one."""
    routed = rules.routing == "classifier" and chosen.get("test_routed_overall") is not None
    prefix = "test_routed_" if routed else "test_"
    return {k: chosen[f"{prefix}{k}"] for k in ("open", "closed", "overall")}


def _replayable(protocol: str) -> Protocol:
    rules = get_protocol(protocol)
    if rules.phrase_types is not None:
        raise ValueError(f"{protocol}: needs the {'/'.join(rules.phrase_types)} test subset, "
                         "which metrics.csv does not hold")
    return rules


def replay(metrics: pd.DataFrame, protocol: str) -> pd.Series:
    """The test accuracy (``open``, ``closed``, ``overall``, ``epoch``) that ``protocol`` reports for the
    run whose per-epoch ``metrics.csv`` is ``metrics``, picked as training keeps its checkpoints.

    Routed accuracies where the protocol routes by the type classifier and the run has one (QCR:
    evaluation routes only QCR, so a MEVF run trained with a type classifier gets its epoch here,
    not its gold-type accuracies).
    """
    rules = _replayable(protocol)
    chosen = select_epoch(epoch_rows(metrics), rules)
    return pd.Series(_test_accuracies(chosen, rules) | {"epoch": int(chosen["epoch"])})


def late_overall(metrics: pd.DataFrame, protocol: str, epochs: int = LATE_EPOCHS) -> float:
    """The mean overall test accuracy of the last ``epochs`` rows of ``metrics`` under ``protocol``'s routing.

    A figure of where the training curve ends that no epoch selection moves: on a curve still rising
    several points an epoch, the epoch a protocol picks swings a single run's number far more than this.
    """
    rules = _replayable(protocol)
    last = epoch_rows(metrics)[-epochs:]
    if not last:
        raise ValueError("late_overall: the metrics hold no epochs")
    return sum(_test_accuracies(row, rules)["overall"] for row in last) / len(last)


def reported_after_each_epoch(metrics: pd.DataFrame, protocol: str) -> list[float]:
    """The overall test accuracy ``protocol`` would report had the run stopped after each epoch of
    ``metrics``: entry ``n`` is ``replay(metrics[:n + 1], protocol)["overall"]``."""
    rules = _replayable(protocol)
    return [_test_accuracies(chosen, rules)["overall"] for chosen in chosen_after_each_epoch(epoch_rows(metrics), rules)]


def check_current(path: Path, result: dict[str, Any], metrics: pd.DataFrame) -> None:
    """Refuse a result evaluated before its run trained on: its protocol would pick another epoch now."""
    protocol = result["protocol"]
    now = picked_epoch(protocol, metrics)
    if now != result["epoch"]:
        run_dir = path.parent
        raise UserError(f"{path} holds epoch {result['epoch']}, but after the {len(metrics)} epochs of its "
                        f"metrics.csv {protocol} picks epoch {now}: evaluate again (evaluate "
                        f"{run_dir.parent.name} --seeds {run_dir.name[1:]} --runs {run_dir.parent.parent})")


def collect(grid: Grid, runs: Path) -> pd.DataFrame:
    """One line per (row, seed, protocol) result file found under ``runs``, for the protocols of its row.

    Other protocols' files are passed over: training evaluates every run under ``sound``, which is no
    validation choice for a row trained on its validation split.
    """
    lines = []
    for run_dir in evaluated_runs(runs):
        name = run_dir.parent.name
        if name not in grid.rows:
            raise UserError(f"{run_dir.parent} is not a row of this script (renamed?): rename or delete it")
        row, metrics = grid.rows[name], pd.read_csv(run_dir / "metrics.csv")
        recipe, finished = schedule(run_dir, len(metrics))
        for protocol in row.protocols:
            path = run_dir / f"results_{protocol}.json"
            if not path.is_file():
                continue
            result = json.loads(path.read_text())
            check_current(path, result, metrics)
            resize_filter = (result.get("data") or {}).get("square_filter") or row.resize_filter
            lines.append({"row": name, "seed": int(run_dir.name[1:]), "protocol": protocol,
                          "open": result["open"], "closed": result["closed"], "overall": result["overall"],
                          "n_open": result["n_open"], "n_closed": result["n_closed"], "epoch": result["epoch"],
                          "epochs": len(metrics), "finished": finished,
                          "schedule": recipe + ("" if resize_filter == "bicubic" else f", {resize_filter} resize"),
                          "config": row.config})
    return pd.DataFrame(lines)
