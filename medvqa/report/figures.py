"""The report's figures as PNG bytes: accuracy bars with interval error bars, and per-epoch curves."""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from medvqa.report.runs import METRICS, EvaluatedRun
from medvqa.report.tables import table_rows


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def accuracy_bars(stats: dict) -> bytes:
    """One panel per dataset: for each head the open, closed and overall accuracy of every encoder (mean
    over seeds), with the 95 % bootstrap interval as error bars and ``*`` over significant differences."""
    datasets, rows = table_rows(stats)
    measured = [row for row in rows if any(summary for summary in row.summaries.values())]  # encoders not run: no slot
    encoders = list(dict.fromkeys(row.encoder for row in measured))
    heads = list(dict.fromkeys(row.head for row in rows))
    bars = len(heads) * len(METRICS) * len(encoders)
    figure = Figure(figsize=(min(16.0, max(6.0, 2.0 + 0.3 * bars)), 3.4 * len(datasets)))
    axes = figure.subplots(len(datasets), 1, squeeze=False)[:, 0]
    width = 0.8 / max(1, len(encoders))
    for axis, dataset in zip(axes, datasets):
        groups = [(head, metric) for head in heads for metric in METRICS]
        for e, encoder in enumerate(encoders):
            by_head = {row.head: row for row in measured if row.encoder == encoder}
            means, errors, marks = [], [[], []], []
            for head, metric in groups:
                summary = by_head[head].summaries.get(dataset) if head in by_head else None
                entry = (summary or {}).get(metric) or {}
                mean, interval = entry.get("mean"), entry.get("interval")
                means.append(np.nan if mean is None else mean)
                errors[0].append(0.0 if mean is None or not interval else mean - interval[0])
                errors[1].append(0.0 if mean is None or not interval else interval[1] - mean)
                test = ((by_head[head].tests.get(dataset) or {}).get(metric) or {}) if head in by_head else {}
                marks.append(bool(test.get("significant")))
            x = np.arange(len(groups)) + (e - (len(encoders) - 1) / 2) * width
            axis.bar(x, means, width, yerr=np.array(errors), capsize=2, label=encoder, color=f"C{e}")
            for xi, mean, high, mark in zip(x, means, errors[1], marks):
                if mark:
                    axis.text(xi, mean + high + 1, "*", ha="center", fontsize=10)
        axis.set_xticks(np.arange(len(groups)), [f"{head}\n{metric}" for head, metric in groups], fontsize=8)
        axis.set_ylabel("accuracy %")
        axis.set_ylim(0, 105)
        axis.set_title(dataset, fontsize=10)
        axis.legend(fontsize=7, ncol=min(4, len(encoders)), loc="upper left")
    figure.tight_layout()
    return png_bytes(figure)


def training_curves(groups: Sequence[tuple[str, str, Sequence[tuple[str, Sequence[EvaluatedRun]]]]]) -> bytes | None:
    """Per (dataset, head): overall validation (solid) and test (dashed) accuracy per epoch, and the
    training loss, one colour per encoder and one line per seed. ``groups``: (dataset, head,
    [(encoder, runs)]). ``None`` where no run has a ``metrics.json``."""
    groups = [g for g in groups if any(run.history for _, runs in g[2] for run in runs)]
    if not groups:
        return None
    figure = Figure(figsize=(10, 2.8 * len(groups)))
    axes = figure.subplots(len(groups), 2, squeeze=False)
    for (dataset, head, encoders), (accuracy_axis, loss_axis) in zip(groups, axes):
        for e, (encoder, runs) in enumerate(encoders):
            for s, run in enumerate(runs):
                epochs = [row["epoch"] for row in run.history]
                label = encoder if s == 0 else None
                for key, style in (("val_overall", "-"), ("test_overall", "--")):
                    values = [row.get(key) for row in run.history]
                    if any(v is not None for v in values):
                        accuracy_axis.plot(epochs, [np.nan if v is None else v for v in values], style,
                                           color=f"C{e}", label=label if key == "val_overall" else None, lw=1)
                loss_axis.plot(epochs, [row.get("train_loss", np.nan) for row in run.history], color=f"C{e}",
                               label=label, lw=1)
        accuracy_axis.set_title(f"{dataset} {head}: overall accuracy (val solid, test dashed)", fontsize=9)
        accuracy_axis.set_ylabel("%")
        loss_axis.set_title(f"{dataset} {head}: training loss", fontsize=9)
        for axis in (accuracy_axis, loss_axis):
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.set_xlabel("epoch")
            axis.legend(fontsize=7)
    figure.tight_layout()
    return png_bytes(figure)
