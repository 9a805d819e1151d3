"""``write_report``: the encoder study's tables, statistics, figures and HTML page from evaluated runs."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from infra.errors import UserError
from infra.files import replace_atomic, write_text_atomic
from medvqa.metrics import breakdown
from medvqa.protocols import get_protocol
from medvqa.report import examples as ex
from medvqa.report.analysis import ALPHA, compare_runs, correct_family, methods_text, summarize_runs
from medvqa.report.figures import accuracy_bars, training_curves
from medvqa.report.html import examples_table, page
from medvqa.report.runs import EvaluatedRun, check_same_questions, load_runs, pair_by_seed
from medvqa.report.tables import csv_table, latex_table, markdown_table, markdown_tests
from medvqa.stats import RESAMPLES

BREAKDOWN_FIELDS = ("question_type", "organ", "modality")


@dataclass(frozen=True)
class Cell:
    dataset: str  # e.g. "vqa_rad"
    head: str  # e.g. "mevf_ban"
    encoder: str  # label of the visual encoder, e.g. "maml+cdae", "clip:pubmedclip-rn50"
    runs: tuple[Path, ...]  # one evaluated run directory per seed


def _check_cells(cells: Sequence[Cell], baseline: str | None) -> str:
    if not cells:
        raise UserError("write_report: no cells to report")
    seen = set()
    for cell in cells:
        key = (cell.dataset, cell.head, cell.encoder)
        if key in seen:
            raise UserError(f"write_report: cell {'/'.join(key)} is given twice")
        seen.add(key)
    baseline = cells[0].encoder if baseline is None else baseline
    encoders = list(dict.fromkeys(cell.encoder for cell in cells))
    if baseline not in encoders:
        raise UserError(f"write_report: baseline encoder {baseline!r} is in no cell (encoders: {', '.join(encoders)})")
    return baseline


def _seed_notes(label: str, runs: Sequence[EvaluatedRun], group: Sequence[Sequence[EvaluatedRun]]) -> list[str]:
    """A note where a cell has fewer seeds than the others of its dataset and head."""
    everywhere = sorted({run.seed for runs_ in group for run in runs_})
    mine = sorted(run.seed for run in runs)
    if runs and mine != everywhere:
        missing = [s for s in everywhere if s not in mine]
        return [f"{label}: seeds {', '.join(map(str, mine))} only (missing {', '.join(map(str, missing))}): its "
                "mean and std are over fewer seeds"]
    return []


def _breakdowns(dataset_cells: Sequence[tuple[Cell, Sequence[EvaluatedRun]]]) -> dict:
    """Per field: rows = values (question type, organ, modality), columns = head / encoder, mean over seeds."""
    tables = {}
    for field in BREAKDOWN_FIELDS:
        rows: dict[str, dict] = {}
        for cell, runs in dataset_cells:
            column = f"{cell.head} / {cell.encoder}"
            per_seed = [breakdown(run.predictions, field) for run in runs if field in run.predictions]
            for key in sorted({key for table in per_seed for key in table}):
                values = [table[key]["overall"] for table in per_seed if key in table]
                row = rows.setdefault(key, {"questions": max(t[key]["n"] for t in per_seed if key in t), "accuracy": {}})
                row["accuracy"][column] = round(float(np.mean(values)), 2)
        if rows:
            columns = [f"{cell.head} / {cell.encoder}" for cell, runs in dataset_cells if runs]
            tables[field] = {"columns": columns, "rows": dict(sorted(rows.items()))}
    return tables


def write_report(cells: Sequence[Cell], out_dir: Path, *, baseline: str | None = None, protocol: str = "sound",
                 title: str = "Encoder study") -> Path:
    """Write ``tables.{md,csv,tex}``, ``tests.md``, ``stats.json``, ``accuracy.png``, ``curves.png`` and ``report.html``
    into ``out_dir`` and return the path of ``report.html``.

    Every cell's encoder is tested against ``baseline`` (default: the first cell's encoder) on the same
    dataset and head; the p-values of all these tests are Holm-corrected together. A run that is not
    evaluated under ``protocol`` is a one-line error; a cell without runs, or with fewer seeds than the
    others of its dataset and head, is kept with a note.
    """
    get_protocol(protocol)
    baseline = _check_cells(cells, baseline)
    out_dir = Path(out_dir)
    loaded = [(cell, load_runs(cell.runs, protocol)) for cell in cells]
    groups: dict[tuple[str, str], list[tuple[Cell, list[EvaluatedRun]]]] = {}
    for cell, runs in loaded:
        groups.setdefault((cell.dataset, cell.head), []).append((cell, runs))

    notes, cell_stats, comparisons = [], [], []
    for (dataset, head), members in groups.items():
        with_runs = [runs for _, runs in members if runs]
        for runs in with_runs[1:]:
            check_same_questions(with_runs[0][0], runs[0])
        base_runs = next((runs for cell, runs in members if cell.encoder == baseline and runs), None)
        for cell, runs in members:
            label = f"{dataset} / {head} / {cell.encoder}"
            note = None if runs else "no finished runs"
            if note:
                notes.append(f"{label}: {note}")
            notes += _seed_notes(label, runs, with_runs)
            cell_stats.append({"dataset": dataset, "head": head, "encoder": cell.encoder,
                               "baseline": cell.encoder == baseline, "note": note,
                               "summary": summarize_runs(runs) if runs else None})
            if cell.encoder == baseline or not runs:
                continue
            if base_runs is None:
                notes.append(f"{label}: not tested, the baseline {baseline!r} has no runs on {dataset} / {head}")
                continue
            if not pair_by_seed(base_runs, runs):
                notes.append(f"{label}: not tested, no seed in common with the baseline {baseline!r}")
                continue
            comparisons.append({"dataset": dataset, "head": head, "encoder": cell.encoder, "baseline": baseline,
                                **compare_runs(base_runs, runs)})
    correction = correct_family(comparisons, "holm", ALPHA)
    stats = {"title": title, "protocol": protocol, "baseline": baseline, "correction": correction,
             "methods": methods_text(RESAMPLES), "run_count": sum(len(runs) for _, runs in loaded),
             "cells": cell_stats, "comparisons": comparisons, "notes": notes}

    breakdowns = {}
    for dataset in dict.fromkeys(cell.dataset for cell in cells):
        tables = _breakdowns([(cell, runs) for cell, runs in loaded if cell.dataset == dataset])
        if tables:
            breakdowns[dataset] = tables
    stats["breakdowns"] = breakdowns

    bars = accuracy_bars(stats)
    curves = training_curves([(dataset, head, [(cell.encoder, runs) for cell, runs in members if runs])
                              for (dataset, head), members in groups.items()])
    example_html = _example_sections(groups, baseline, notes)
    write_text_atomic(out_dir / "stats.json", json.dumps(stats, indent=1) + "\n")
    write_text_atomic(out_dir / "tables.md", markdown_table(stats))
    write_text_atomic(out_dir / "tests.md", markdown_tests(stats))
    write_text_atomic(out_dir / "tables.csv", csv_table(stats))
    write_text_atomic(out_dir / "tables.tex", latex_table(stats))
    replace_atomic(out_dir / "accuracy.png", lambda tmp: tmp.write_bytes(bars))
    if curves:
        replace_atomic(out_dir / "curves.png", lambda tmp: tmp.write_bytes(curves))
    return write_text_atomic(out_dir / "report.html", page(title, stats, bars, curves, breakdowns, example_html))


def _example_sections(groups: dict[tuple[str, str], list[tuple[Cell, list[EvaluatedRun]]]], baseline: str,
                      notes: list[str]) -> str:
    """Example predictions per dataset and head, then the questions each encoder and the baseline disagree on.

    A missing thumbnail (the prepared data is not at the run's ``data.root``) adds a note to ``notes``,
    which the page shows; the notes are written after this runs.
    """
    parts = ["<h2>Example predictions</h2>"]
    disagreement_parts = ["<h2>Where encoders disagree</h2>"]
    missing_data: set[str] = set()
    for (dataset, head), members in groups.items():
        encoders = sorted([(cell.encoder, runs) for cell, runs in members if runs], key=lambda e: e[0] != baseline)
        if not encoders:
            continue
        data_root = encoders[0][1][0].data_root

        def thumbnail(image_id: str, data_root: str = data_root) -> str | None:
            uri = ex.thumbnail(data_root, image_id)
            if uri is None:
                missing_data.add(data_root)
            return uri

        parts.append(f"<h3>{escape(dataset)} / {escape(head)}</h3>"
                     + examples_table(ex.example_predictions(encoders), thumbnail))
        if encoders[0][0] != baseline:
            continue
        base_run = encoders[0][1][0]
        for name, runs in encoders[1:]:
            run = ex.matched_run(runs, base_run.seed)
            shown, other_only, base_only = ex.disagreements((baseline, base_run), (name, run))
            disagreement_parts.append(
                f"<h3>{escape(dataset)} / {escape(head)}: {escape(name)} against {escape(baseline)}</h3>"
                f"<p class=note>Seed {run.seed} against seed {base_run.seed}: {other_only} questions only {escape(name)} "
                f"answered correctly, {base_only} only {escape(baseline)}.</p>" + examples_table(shown, thumbnail))
    notes += [f"thumbnails left out: no prepared dataset at {root or '(no data.root)'} (the runs' data.root)"
              for root in sorted(missing_data)]
    return "".join(parts + disagreement_parts)
