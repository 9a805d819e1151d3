"""The report as one self-contained HTML page: inline style, images as ``data:`` URIs, no scripts."""
from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from html import escape

from medvqa.report.examples import Example
from medvqa.report.runs import METRICS
from medvqa.report.tables import MARK, entry_text, legend, table_rows, tests_rows

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: middle; }
th { background: #f1f3f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.right { color: #1a7f37; } .wrong { color: #cf222e; }
.note { color: #555; font-size: 13px; }
img.thumb { width: 96px; height: auto; image-rendering: pixelated; }
img.figure { max-width: 100%; }
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    """A table of already-escaped cells; columns from ``numeric_from`` are right-aligned."""
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td{' class=num' if i >= numeric_from else ''}>{cell}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def accuracy_table(stats: dict) -> str:
    datasets, rows = table_rows(stats)
    header = ["head", "encoder", *[f"{escape(d)} {m}" for d in datasets for m in METRICS]]
    cells = [[escape(row.head), escape(row.encoder) + (" <i>(baseline)</i>" if row.baseline else ""),
              *[escape(entry_text(row, d, m)) for d in datasets for m in METRICS]] for row in rows]
    return _table(header, cells, numeric_from=2) + f"<p class=note>{escape(legend(stats))}</p>"


def tests_table(stats: dict) -> str:
    """Every comparison with the baseline: the paired difference, its p-values and McNemar per seed."""
    header, rows = tests_rows(stats)
    if not rows:
        return "<p class=note>No encoder has a baseline to be tested against.</p>"
    return _table([escape(cell) for cell in header], [[escape(cell) for cell in row] for row in rows], numeric_from=4)


def breakdown_tables(breakdowns: dict) -> str:
    """Overall accuracy (mean over seeds) per question type, organ and modality, per dataset."""
    parts = []
    for dataset, fields in breakdowns.items():
        for field, table in fields.items():
            columns = list(table["columns"])
            rows = [[escape(key), str(values["questions"]),
                     *[("-" if values["accuracy"].get(c) is None else f"{values['accuracy'][c]:.1f}") for c in columns]]
                    for key, values in table["rows"].items()]
            parts.append(f"<h3>{escape(dataset)}: accuracy by {escape(field.replace('_', ' '))}</h3>"
                         + _table([field.replace("_", " "), "questions", *map(escape, columns)], rows))
    return "".join(parts) or "<p class=note>The test questions carry no question type, organ or modality.</p>"


def _answer_cell(answer) -> str:
    probability = "" if answer.probability is None else f" ({answer.probability:.2f})"
    verdict = "<span class=right>&#10003; right</span>" if answer.correct else "<span class=wrong>&#10007; wrong</span>"
    return f"{escape(answer.prediction)}{probability}<br>{verdict}"


def examples_table(examples: Sequence[Example], thumbnail: Callable[[str], str | None]) -> str:
    """Image, question, gold answer, and each encoder's prediction with its probability, right or wrong."""
    if not examples:
        return "<p class=note>None.</p>"
    header = ["image", "question", "gold", *[escape(f"{a.encoder} (seed {a.seed})") for a in examples[0].answers]]
    rows = []
    for example in examples:
        uri = thumbnail(example.image_id)
        image = (f'<img class=thumb src="{uri}" alt="{escape(example.image_id)}">' if uri
                 else escape(example.image_id))
        rows.append([image, escape(example.question), escape(example.gold), *map(_answer_cell, example.answers)])
    return _table(header, rows, numeric_from=len(header))


def page(title: str, stats: dict, bars: bytes, curves: bytes | None, breakdowns: dict, example_sections: str) -> str:
    notes = "".join(f"<li>{escape(note)}</li>" for note in stats["notes"])
    curves_html = (f'<img class=figure src="{_data_uri(curves)}" alt="training curves">' if curves
                   else "<p class=note>No run has a metrics.json.</p>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
<p>Protocol <b>{escape(stats['protocol'])}</b>; baseline encoder <b>{escape(stats['baseline'])}</b>;
{stats['run_count']} evaluated runs. Research use only, not for diagnosis.</p>
{f'<h2>Notes</h2><ul>{notes}</ul>' if notes else ''}
<h2>Accuracy</h2>
{accuracy_table(stats)}
<img class=figure src="{_data_uri(bars)}" alt="accuracy by encoder with 95% intervals">
<p class=note>Bars: mean over seeds; error bars: 95 % bootstrap interval over test questions; {MARK}: significant
difference from the baseline.</p>
<h2>Paired tests against the baseline</h2>
{tests_table(stats)}
<p class=note>{escape(stats['correction']['statement'])}.</p>
<h2>Accuracy by question type, organ and modality</h2>
{breakdown_tables(breakdowns)}
<h2>Training curves</h2>
{curves_html}
{example_sections}
<h2>Methods</h2>
<p class=note>{escape(stats['methods'])}</p>
</body></html>
"""
