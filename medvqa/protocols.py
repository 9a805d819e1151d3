"""The evaluation protocols: which test questions, which routing and which epoch each one reports.

One definition serves the three places that apply it: training keeps the checkpoint of each epoch
a protocol can pick (``EpochSelector``), evaluation reads that checkpoint (``PROTOCOLS``), and the
reproduction report replays the choice from ``metrics.csv`` (``select_epoch``).

- ``sound`` (default): all test QA, gold answer types, the epoch with the best validation accuracy
  (the last epoch when the run trained on its validation split).
- ``mevf-legacy``: VQA-RAD's freeform test QA only, the last epoch (MEVF's own numbers).
- ``pubmedclip-legacy``: all test QA, the epoch with the best test accuracy; heads routed by question
  type are routed by the type classifier, and open / closed accuracies use the routed counts.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from infra.errors import UserError


@dataclass(frozen=True)
class Protocol:
    name: str
    checkpoint: str  # the file under checkpoints/ that holds the epoch it reports
    selected_by: str  # "val": best validation accuracy; "test": best test accuracy; "last": the last epoch
    phrase_types: tuple[str, ...] | None  # test QA kept by phrase type (None: all)
    routing: str  # "gold": by answer type; "classifier": heads routed by type use the type classifier
    test_selected: bool  # the epoch is chosen on the test set: optimistic, for comparisons only
    published: bool  # a published paper's protocol: results note where the run's answer set differs from its

    def score(self, metrics: Mapping[str, Any]) -> float | None:
        """The number this protocol maximises over one epoch's metrics row; ``None``: pick the latest epoch."""
        if self.selected_by == "val":
            return _number(metrics.get("val_overall"))  # absent when the run trains on its validation split
        if self.selected_by == "test":
            routed = _number(metrics.get("test_routed_overall"))
            return metrics["test_overall"] if routed is None else routed
        return None


def _number(value: Any) -> float | None:
    """``value``, or ``None`` where it is missing (``None``, or NaN as pandas reads an empty cell)."""
    return None if value is None or math.isnan(value) else value


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("sound", "best_val", "val", None, "gold", test_selected=False, published=False),
    Protocol("mevf-legacy", "last", "last", ("freeform",), "gold", test_selected=False, published=True),
    Protocol("pubmedclip-legacy", "best_test", "test", None, "classifier", test_selected=True, published=True),
)}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise UserError(f"unknown protocol {name!r}: choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def kept_checkpoints() -> dict[str, Protocol]:
    """Checkpoint name -> the protocol whose choice it holds (one file per distinct choice)."""
    return {p.checkpoint: p for p in PROTOCOLS.values()}


class EpochSelector:
    """Follows one protocol's choice epoch by epoch: the first maximum of its score, or the latest epoch."""

    def __init__(self, protocol: Protocol, best: float | None = None) -> None:
        self.protocol, self.best = protocol, best

    def update(self, metrics: Mapping[str, Any]) -> bool:
        """Whether the epoch of ``metrics`` becomes the chosen one."""
        score = self.protocol.score(metrics)
        if score is None:
            return True
        if self.best is not None and score <= self.best:
            return False
        self.best = score
        return True


def chosen_after_each_epoch(history: Iterable[Mapping[str, Any]], protocol: str | Protocol) -> Iterator[Mapping[str, Any]]:
    """For each epoch of ``history``, the metrics row ``protocol`` reports had training stopped there."""
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    selector, chosen = EpochSelector(protocol), None
    for row in history:
        if selector.update(row):
            chosen = row
        yield chosen


def select_epoch(history: Iterable[Mapping[str, Any]], protocol: str | Protocol) -> Mapping[str, Any]:
    """The metrics row of the epoch ``protocol`` reports after the epochs of ``history`` (as training keeps it)."""
    chosen = None
    for chosen in chosen_after_each_epoch(history, protocol):
        pass
    if chosen is None:
        raise UserError("no epochs to select from: the run has not finished an epoch")
    return chosen
