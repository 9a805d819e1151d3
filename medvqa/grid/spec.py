"""Grid files: {datasets} x {heads} x {visual encoders} x {seeds} read into one planned cell per run.

A grid file (YAML)::

    title: Encoder study                      # the report's title
    datasets: {vqa_rad: data/vqa_rad}         # name -> prepared data folder (relative: from the working folder)
    heads:                                    # name -> the head's config; {dataset} is the dataset's name
      mevf_ban: configs/{dataset}/mevf_ban.yaml
    encoders:                                 # name -> how the visual branch differs from the head's config
      maml+cdae: {}                           # registered encoders, named by the entry's name joined with '+'
      pubmedclip_vit32: {clip: checkpoints/pubmedclip_vit32.pth, cdae: true}   # frozen CLIP beside the CDAE
      clip_tuned: {clip: checkpoints/clip.pth, freeze: false, lr: 1.0e-5}      # fine-tuned at its own lr
    seeds: [1204, 1, 2]
    protocols: [sound]                        # the first one is the report's
    baseline: maml+cdae                       # every encoder is tested against it
    overrides: [train.epochs=20]              # dotted config overrides for every cell
    plugins: [my_encoders.py]                 # modules or .py files (relative to the grid file) to import

An encoder entry's keys: ``visual`` (registered encoder names, in order; default: the entry's name split
on '+', or ``[clip]`` with ``clip``), ``clip`` (any checkpoint the PubMedCLIP loader reads) and ``arch``,
``cdae`` (the CDAE beside the CLIP, with the head config's CDAE settings), ``freeze`` (true, false or
encoder names; default: a CLIP tower is frozen, the other encoders as the head's config says), ``lr`` (the
learning rate of the encoders trained, on the run's schedule), ``encoders`` (settings per encoder) and
``overrides``.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.config import apply_override, build, read_config_mapping, read_yaml_mapping
from infra.errors import UserError
from infra.plugins import import_plugins, resolve_plugins
from medvqa.config import Config, resolve_model
from medvqa.models.visual import PREPARED_WEIGHTS

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # a grid name is a folder name of the cell directories


@dataclass
class EncoderEntry:
    visual: list[str] = field(default_factory=list)  # registered encoders in order (default: from the name)
    clip: str = ""  # a CLIP checkpoint (OpenAI, PubMedCLIP, open_clip, Hugging Face, a fine-tuning run)
    arch: str = ""  # its architecture, where the file does not name it
    cdae: bool = False  # the CDAE beside the CLIP tower (as PubMedCLIP)
    freeze: bool | list[str] | None = None  # None: a CLIP tower frozen, the others as the head config says
    lr: float | None = None  # learning rate of the trained encoders (None: the head's)
    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)  # settings per encoder
    overrides: list[str] = field(default_factory=list)  # dotted config overrides of this encoder's cells


@dataclass
class GridFile:
    datasets: dict[str, str]
    heads: dict[str, str]
    encoders: dict[str, EncoderEntry]
    title: str = "Encoder study"
    seeds: list[int] = field(default_factory=lambda: [0])
    protocols: list[str] = field(default_factory=lambda: ["sound"])
    baseline: str | None = None
    overrides: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CellPlan:
    """One run of the grid: its config and where it goes; ``skip`` says why it cannot run (else "")."""

    dataset: str
    head: str
    encoder: str
    seed: int
    config: dict[str, Any]  # the resolved run config (train.seed included)
    run_dir: Path
    protocols: tuple[str, ...]
    skip: str = ""

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.head}/{self.encoder}/s{self.seed}"


@dataclass
class Grid:
    path: Path
    spec: GridFile
    cells: list[CellPlan]

    @property
    def title(self) -> str:
        return self.spec.title


def read_grid_file(path: Path) -> GridFile:
    """The grid file validated (an unknown key, a wrong type or an unknown name is a one-line error)."""
    data = read_yaml_mapping(path, allow_empty=False)
    for section in ("datasets", "heads", "encoders"):
        if not data.get(section) or not isinstance(data[section], dict):
            raise UserError(f"{path}: {section} must be a non-empty mapping of names (see medvqa/grid/spec.py)")
    data["encoders"] = {name: entry or {} for name, entry in data["encoders"].items()}
    grid = build(GridFile, data, str(path))
    for section in ("datasets", "heads", "encoders"):
        for name in getattr(grid, section):
            if not NAME.match(str(name)):
                raise UserError(f"{path}: {section}.{name}: a name may hold letters, digits and _ . + - only")
    if grid.baseline is not None and grid.baseline not in grid.encoders:
        raise UserError(f"{path}: baseline {grid.baseline!r} is not one of the encoders ({', '.join(grid.encoders)})")
    if not grid.seeds or not grid.protocols:
        raise UserError(f"{path}: seeds and protocols each need at least one entry")
    if len(set(grid.seeds)) != len(grid.seeds):
        raise UserError(f"{path}: seeds {grid.seeds} name a seed twice")
    from medvqa.protocols import get_protocol

    for protocol in grid.protocols:
        get_protocol(protocol)
    return grid


def encoder_model(entry: EncoderEntry, name: str, model: dict[str, Any]) -> dict[str, Any]:
    """The head config's ``model`` section with the visual branch of encoder ``name`` in place."""
    visual = list(entry.visual) or (["clip"] if entry.clip else name.split("+"))
    if entry.cdae and "cdae" not in visual:
        visual.append("cdae")
    if entry.cdae and not entry.clip:
        raise ValueError("cdae: true adds the CDAE beside a CLIP tower and needs clip: CHECKPOINT; for the CDAE "
                         "without a CLIP, name the encoder cdae (or list cdae in visual)")
    unused = sorted(set(entry.encoders) - set(visual))
    if unused:
        raise ValueError(f"settings for {', '.join(unused)}, which this encoder does not use "
                         f"(it uses {', '.join(visual)})")
    base_settings = model.get("encoders") or {}
    encoders = {n: dict(base_settings.get(n) or {}) for n in visual}
    if entry.clip:
        encoders["clip"] = {**encoders.get("clip", {}), "weights": entry.clip, "arch": entry.arch}
    encoders = {n: {**settings, **(entry.encoders.get(n) or {})} for n, settings in encoders.items()}
    freeze = entry.freeze
    if freeze is None:  # a CLIP tower frozen; the other encoders as the head's config freezes them
        configured = model.get("freeze_visual", False)
        listed = configured if isinstance(configured, list) else []
        if "clip" in visual:
            freeze = [n for n in visual if n == "clip" or configured is True or n in listed]
        else:
            freeze = [n for n in listed if n in visual] if isinstance(configured, list) else configured
    return {**model, "visual": visual, "encoders": encoders, "freeze_visual": freeze}


def missing_inputs(config: Config) -> str:
    """Why a cell cannot run on this machine (prepared data or a weights file missing), or ""."""
    root = Path(config.data.root)
    if not (root / "summary.json").is_file():
        return f"prepared data not found at {root} (medvqa prepare ... --out {root})"
    from medvqa.data import PreparedDataset

    ds = PreparedDataset(root)
    for name, settings in config.model.encoders.items():
        weights = settings.get("weights")
        if weights == PREPARED_WEIGHTS and ds.encoder_weights(name) is None:
            return f"{root} carries no {name} weights (prepare it with --encoder-weights DIR)"
        if weights and weights != PREPARED_WEIGHTS and not Path(weights).exists():
            return f"{name} weights not found: {weights}"
    return ""


def plan_cell(grid: GridFile, where: Path, dataset: str, head: str, encoder: str, seed: int,
              out: Path, overrides: Sequence[str] = ()) -> CellPlan:
    """The resolved config of one cell (a bad head config or encoder entry is a one-line error naming it).

    Overrides apply in order: the grid's, the encoder entry's, ``overrides`` (the command line's), the seed.
    """
    cell = f"{where}: cell {dataset}/{head}/{encoder}"
    config_path = Path(grid.heads[head].replace("{dataset}", dataset))
    data = read_config_mapping(config_path)
    try:
        data["model"] = encoder_model(grid.encoders[encoder], encoder, dict(data.get("model") or {}))
    except ValueError as error:
        raise UserError(f"{where}: encoders.{encoder}: {error}") from None
    data.setdefault("data", {})["root"] = grid.datasets[dataset]
    entry = grid.encoders[encoder]
    for override in [*grid.overrides, *entry.overrides, *overrides, f"train.seed={seed}"]:
        apply_override(data, override)
    if entry.lr is not None:
        apply_override(data, f"train.visual_lr={entry.lr}")
    data["plugins"] = [*resolve_plugins(data.get("plugins") or [], config_path.parent),
                       *resolve_plugins(grid.plugins, where.parent)]
    import_plugins(data["plugins"], f"{config_path}: plugins")
    config = resolve_model(build(Config, data, cell), cell)
    run_dir = out / "cells" / dataset / head / encoder / f"s{seed}"
    return CellPlan(dataset, head, encoder, seed, config.to_dict(), run_dir, tuple(grid.protocols),
                    missing_inputs(config))


def load_grid(path: str | Path, out: Path, overrides: Sequence[str] = ()) -> Grid:
    """Read ``path`` and plan every cell under ``out`` (``overrides``: for every cell, after the grid's and the
    encoder entries')."""
    path = Path(path)
    spec = read_grid_file(path)
    import_plugins(resolve_plugins(spec.plugins, path.parent), f"{path}: plugins")
    cells = [plan_cell(spec, path, dataset, head, encoder, seed, out, overrides)
             for dataset in spec.datasets for head in spec.heads for encoder in spec.encoders for seed in spec.seeds]
    return Grid(path, spec, cells)


def dump_config(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)
