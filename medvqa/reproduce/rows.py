"""The grid a reproduction works through: rows (a config, the protocols it is reported under, the
published numbers beside it) and ablations (two rows that differ in one choice)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infra.errors import UserError
from medvqa.protocols import PROTOCOLS

Published = tuple[float | None, float | None, float | None]  # open, closed, overall accuracy %; None: not given


@dataclass(frozen=True)
class Row:
    """One line of the table: a config, the protocols it is reported under, the published numbers."""

    config: str  # relative to the grid's ``root``
    protocols: tuple[str, ...]  # evaluation order: the run's results.json ends as the last one's
    published: dict[str, Published] = field(default_factory=dict)  # protocol -> published numbers
    overrides: tuple[str, ...] = ()  # config overrides of every run of the row
    resize_filter: str = "bicubic"  # of the square gray image caches the data was prepared with

    @property
    def dataset(self) -> str:
        """The dataset the row trains on: its config's folder (``configs/vqa_rad/...``: ``vqa_rad``)."""
        return Path(self.config).parent.name


@dataclass(frozen=True)
class Ablation:
    """Two rows that differ in one choice: the report gives the variant's change per protocol.

    ``length``: the choice is how many epochs the runs train, so the rows are compared once both
    finished, and never cut to the epochs both ran (that would compare the same epochs twice).
    """

    change: str
    base: str
    variant: str
    length: bool = False


@dataclass(frozen=True)
class Grid:
    """Named rows and the ablations between them, with the folders the commands default to.

    Runs live under ``<runs>/<row>/s<seed>/``; the report and its archive under ``<out>``.
    """

    rows: Mapping[str, Row]
    ablations: tuple[Ablation, ...] = ()
    root: Path = Path(".")  # the folder the rows' configs are relative to
    runs: Path = Path("runs/repro")  # the commands' default --runs
    out: Path | None = None  # the commands' default --out; None: --out is required (e.g. one archive per machine)

    def __post_init__(self) -> None:
        if not self.rows:
            raise UserError("a grid needs at least one row")
        for name, row in self.rows.items():
            unknown = [protocol for protocol in row.protocols if protocol not in PROTOCOLS]
            if unknown or not row.protocols:
                raise UserError(f"row {name}: protocols {list(row.protocols)} must name some of "
                                f"{', '.join(PROTOCOLS)}")
        for ablation in self.ablations:
            missing = [name for name in (ablation.base, ablation.variant) if name not in self.rows]
            if missing:
                raise UserError(f"ablation {ablation.change!r} compares {missing[0]}, which is not a row of the grid")

    def config_path(self, name: str) -> Path:
        """The config file of row ``name``."""
        return self.root / self.rows[name].config

    @property
    def datasets(self) -> tuple[str, ...]:
        """The datasets the rows train on, in row order."""
        return tuple(dict.fromkeys(row.dataset for row in self.rows.values()))
