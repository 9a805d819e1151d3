"""The accuracy tables in the paper's layout: rows are head x encoder, columns open / closed / overall per dataset.

Each entry reads ``mean +- std [95 % interval]`` over seeds (the std is left out for one seed), with
``*`` where the difference from the baseline encoder of the same dataset and head is significant.
The tables read the ``stats.json`` structure that ``medvqa.report.write_report`` builds.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from medvqa.report.runs import METRICS

MARK = "*"


def format_accuracy(entry: dict | None, plus_minus: str = "±") -> str:
    """``61.2 ± 1.3 [58.0, 64.4]`` (``61.2 [58.0, 64.4]`` for one seed); ``-`` for no questions."""
    if not entry or entry.get("mean") is None:
        return "-"
    text = f"{entry['mean']:.1f}"
    if entry.get("std") is not None:
        text += f" {plus_minus} {entry['std']:.1f}"
    if entry.get("interval"):
        low, high = entry["interval"]
        text += f" [{low:.1f}, {high:.1f}]"
    return text


def format_difference(entry: dict | None) -> str:
    """``+2.1 [-0.4, 4.6]`` for a paired difference entry."""
    if not entry:
        return "-"
    low, high = entry["interval"]
    return f"{entry['difference']:+.1f}" + (f" [{low:+.1f}, {high:+.1f}]" if low is not None else "")


@dataclass
class Row:
    head: str
    encoder: str
    baseline: bool
    seeds: dict[str, int] = field(default_factory=dict)  # dataset -> seeds
    summaries: dict[str, dict | None] = field(default_factory=dict)  # dataset -> summarize_runs (None: not run)
    tests: dict[str, dict] = field(default_factory=dict)  # dataset -> compare_runs against the baseline
    notes: dict[str, str] = field(default_factory=dict)  # dataset -> why an entry is missing


def table_rows(stats: dict) -> tuple[list[str], list[Row]]:
    """The datasets (column groups) and the rows, heads in order of appearance, each head's baseline first."""
    datasets = list(dict.fromkeys(cell["dataset"] for cell in stats["cells"]))
    rows: dict[tuple[str, str], Row] = {}
    for cell in stats["cells"]:
        row = rows.setdefault((cell["head"], cell["encoder"]), Row(cell["head"], cell["encoder"], cell["baseline"]))
        row.summaries[cell["dataset"]] = cell["summary"]
        row.seeds[cell["dataset"]] = len(cell["summary"]["seeds"]) if cell["summary"] else 0
        if cell.get("note"):
            row.notes[cell["dataset"]] = cell["note"]
    for comparison in stats["comparisons"]:
        rows[(comparison["head"], comparison["encoder"])].tests[comparison["dataset"]] = comparison
    heads = list(dict.fromkeys(head for head, _ in rows))
    ordered = sorted(rows.values(), key=lambda r: (heads.index(r.head), not r.baseline))
    return datasets, ordered


def entry_text(row: Row, dataset: str, metric: str, plus_minus: str = "±", mark: str = MARK) -> str:
    """One table entry: the accuracy, marked where significant; ``not run`` for a cell without runs."""
    if dataset not in row.summaries:
        return ""
    summary = row.summaries[dataset]
    if summary is None:
        return "not run"
    test = (row.tests.get(dataset) or {}).get(metric)
    return format_accuracy(summary[metric], plus_minus) + (mark if test and test.get("significant") else "")


def _seeds_text(row: Row) -> str:
    counts = sorted(set(row.seeds.values()))
    return "/".join(str(row.seeds[d]) for d in row.seeds) if len(counts) > 1 else str(counts[0])


def legend(stats: dict) -> str:
    return (f"Protocol {stats['protocol']}. Entries: mean ± std over seeds [95 % bootstrap interval over test "
            f"questions]. {MARK}: differs from the baseline encoder {stats['baseline']!r} of the same dataset and head "
            f"on the same questions, over the seeds both have run; {stats['correction']['statement']}.")


def markdown_table(stats: dict) -> str:
    datasets, rows = table_rows(stats)
    header = ["head", "encoder", "seeds", *[f"{d} {m}" for d in datasets for m in METRICS]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        encoder = f"{row.encoder} (baseline)" if row.baseline else row.encoder
        cells = [row.head, encoder, _seeds_text(row), *[entry_text(row, d, m) for d in datasets for m in METRICS]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + legend(stats) + "\n"


def tests_rows(stats: dict) -> tuple[list[str], list[list[str]]]:
    """Every comparison with the baseline, one row per metric: the paired difference with its interval, the
    p-value before and after correction, and McNemar's test per seed, its p also both ways (plain text)."""
    rows = []
    for comparison in stats["comparisons"]:
        for metric in METRICS:
            test = comparison[metric]
            if not test:
                continue
            mcnemar = ", ".join(f"s{t['seed_a']}: {t['a_only']}/{t['b_only']}, p {t['p_value']:.3g} / {t['p_adjusted']:.3g}"
                                for t in test["mcnemar"])
            rows.append([comparison["dataset"], comparison["head"], f"{comparison['encoder']} - {comparison['baseline']}",
                         metric, ", ".join(str(pair["seed_a"]) for pair in comparison["pairs"]),
                         format_difference(test), f"{test['p_value']:.3g}",
                         f"{test['p_adjusted']:.3g}" + (f" {MARK}" if test["significant"] else ""), mcnemar])
    method = stats["correction"]["method"]
    header = ["dataset", "head", "difference", "metric", "paired seeds", "points [95% CI]", "p", f"p ({method})",
              f"McNemar per seed (baseline only / encoder only right, p raw / {method})"]
    return header, rows


def markdown_tests(stats: dict) -> str:
    """The tests against the baseline as a Markdown table (a sentence where there are none)."""
    header, rows = tests_rows(stats)
    if not rows:
        return "No encoder has a baseline to be tested against.\n"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + f"\n\n{MARK}: {stats['correction']['statement']}.\n"


def csv_table(stats: dict) -> str:
    """The same layout with numbers in their own columns: per dataset and metric the mean, std, interval,
    difference from the baseline, its p-values and whether it is significant."""
    datasets, rows = table_rows(stats)
    fields = ("mean", "std", "ci_low", "ci_high", "seeds", "difference", "p_value", "p_adjusted", "significant")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["head", "encoder", "baseline", *[f"{d}_{m}_{f}" for d in datasets for m in METRICS for f in fields]])
    for row in rows:
        values: list = [row.head, row.encoder, row.baseline]
        for dataset in datasets:
            summary = row.summaries.get(dataset)
            for metric in METRICS:
                entry = (summary or {}).get(metric) or {}
                test = (row.tests.get(dataset) or {}).get(metric) or {}
                interval = entry.get("interval") or [None, None]
                values += [entry.get("mean"), entry.get("std"), *interval,
                           row.seeds.get(dataset) if summary else None, test.get("difference"),
                           test.get("p_value"), test.get("p_adjusted"), test.get("significant")]
        writer.writerow(["" if v is None else v for v in values])
    return buffer.getvalue()


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "<": r"$<$", ">": r"$>$"}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(char, char) for char in text)


def latex_table(stats: dict) -> str:
    """A booktabs table (``\\usepackage{booktabs}``): one column group per dataset."""
    datasets, rows = table_rows(stats)
    columns = "ll" + "ccc" * len(datasets)
    lines = [r"\begin{table}[t]", r"\centering", r"\footnotesize", rf"\begin{{tabular}}{{{columns}}}", r"\toprule",
             " & & " + " & ".join(rf"\multicolumn{{3}}{{c}}{{{_tex(d)}}}" for d in datasets) + r" \\",
             "".join(rf"\cmidrule(lr){{{3 + 3 * i}-{5 + 3 * i}}}" for i in range(len(datasets))),
             "Head & Encoder & " + " & ".join("Open & Closed & Overall" for _ in datasets) + r" \\", r"\midrule"]
    for row in rows:
        entries = [entry_text(row, d, m, plus_minus=r"$\pm$", mark=r"$^{*}$") for d in datasets for m in METRICS]
        encoder = _tex(row.encoder) + (" (baseline)" if row.baseline else "")
        lines.append(f"{_tex(row.head)} & {encoder} & " + " & ".join(entries) + r" \\")
    caption = _tex(legend(stats)).replace("±", r"$\pm$").replace(f"{MARK}:", r"$^{*}$:")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"
