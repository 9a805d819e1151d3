"""Compare two sets of evaluated runs: ``medvqa compare RUN_A RUN_B`` or ``--a RUN... --b RUN...``.

Runs are paired by seed (``train.seed``) and questions by qid; runs evaluated on other test questions
are refused. For open, closed and overall accuracy it prints each side's mean +- std over seeds with a
bootstrap 95 % interval over questions, the paired difference B - A with its interval, the sign-flip
permutation p-value over questions (raw and corrected for the three tests) and McNemar's exact test per
seed (raw and corrected over all the per-seed tests). ``--out DIR`` also writes ``compare.json`` and ``compare.md``.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from infra.cli import Parser
from infra.errors import UserError
from infra.files import write_text_atomic
from medvqa.protocols import PROTOCOLS, get_protocol
from medvqa.report.analysis import ALPHA, compare_runs, correct_family, methods_text, summarize_runs
from medvqa.report.runs import METRICS, load_runs
from medvqa.report.tables import format_accuracy, format_difference
from medvqa.stats import CORRECTIONS, RESAMPLES


def compare(a: list[Path], b: list[Path], *, labels: tuple[str, str] = ("A", "B"), protocol: str = "sound",
            correction: str = "holm", alpha: float = ALPHA, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Everything ``medvqa compare`` reports, as one JSON-ready dict."""
    get_protocol(protocol)
    runs_a, runs_b = load_runs(a, protocol), load_runs(b, protocol)
    comparison = compare_runs(runs_a, runs_b, resamples=resamples, seed=seed, pair_lone_runs=True)
    return {"protocol": protocol, "labels": list(labels),
            "a": summarize_runs(runs_a, resamples=resamples, seed=seed),
            "b": summarize_runs(runs_b, resamples=resamples, seed=seed),
            "difference": comparison, "correction": correct_family([comparison], correction, alpha),
            "methods": methods_text(resamples)}


def _mcnemar_text(entry: dict) -> str:
    """``s88 0.000227 / 0.00204, ...``: each seed's McNemar p, raw / corrected over all the per-seed tests."""
    return ", ".join(f"s{t['seed_a']}" + (f"/{t['seed_b']}" if t["seed_b"] != t["seed_a"] else "")
                     + f" {t['p_value']:.3g} / {t['p_adjusted']:.3g}" for t in entry["mcnemar"])


def table_lines(result: dict) -> list[tuple[str, ...]]:
    """Rows of the comparison table, the header first."""
    label_a, label_b = result["labels"]
    correction = result["correction"]["method"]
    rows = [("metric", label_a, label_b, f"{label_b} - {label_a} [95% CI]", "p", f"p ({correction})",
             f"McNemar p per seed (raw / {correction})")]
    for metric in METRICS:
        test = result["difference"][metric]
        rows.append((metric, format_accuracy(result["a"][metric], "+-"), format_accuracy(result["b"][metric], "+-"),
                     format_difference(test), f"{test['p_value']:.3g}" if test else "-",
                     f"{test['p_adjusted']:.3g}{' *' if test['significant'] else ''}" if test else "-",
                     _mcnemar_text(test) if test else "-"))
    return rows


def header(result: dict) -> str:
    def side(label: str, summary: dict) -> str:
        seeds = ", ".join(map(str, summary["seeds"]))
        return f"{label}: {len(summary['seeds'])} run{'s' if len(summary['seeds']) != 1 else ''} (seed {seeds})"

    label_a, label_b = result["labels"]
    pairs = len(result["difference"]["pairs"])
    text = (f"{side(label_a, result['a'])}; {side(label_b, result['b'])}; protocol {result['protocol']}; "
            f"{result['a']['questions']} test questions, {pairs} seed pair{'s' if pairs != 1 else ''}")
    if result["difference"]["unpaired"]:
        text += f"; left out of the paired tests (no partner seed): {', '.join(result['difference']['unpaired'])}"
    return text


def format_text(result: dict) -> str:
    rows = table_lines(result)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [header(result), *("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)]
    return "\n".join(lines + [f"* {result['correction']['statement']}", textwrap.fill(result["methods"], 110)]) + "\n"


def format_markdown(result: dict) -> str:
    rows = table_lines(result)
    lines = [header(result), "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines + ["", f"\\* {result['correction']['statement']}.", "", result["methods"]]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="medvqa compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="RUN_A RUN_B: two single runs")
    parser.add_argument("--a", nargs="+", type=Path, default=[], metavar="RUN", help="the runs of set A (e.g. its seeds)")
    parser.add_argument("--b", nargs="+", type=Path, default=[], metavar="RUN", help="the runs of set B")
    parser.add_argument("--labels", nargs=2, default=["A", "B"], metavar=("NAME_A", "NAME_B"))
    parser.add_argument("--protocol", default="sound", help=f"one of: {', '.join(PROTOCOLS)}")
    parser.add_argument("--correction", default="holm", choices=CORRECTIONS,
                        help="multiple-comparison correction over the open / closed / overall tests")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="significance level after the correction")
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap and permutation resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    parser.add_argument("--out", type=Path, help="folder for compare.json and compare.md")
    args = parser.parse_args(argv)
    if args.runs and (args.a or args.b):
        raise UserError("medvqa compare: give RUN_A RUN_B or --a/--b, not both")
    if args.runs and len(args.runs) != 2:
        raise UserError(f"medvqa compare: RUN_A RUN_B are two runs, got {len(args.runs)}: use --a RUN... --b RUN... "
                        "for sets of runs")
    a, b = (args.runs[:1], args.runs[1:]) if args.runs else (args.a, args.b)
    if not a or not b:
        raise UserError("medvqa compare: give RUN_A RUN_B, or --a RUN... --b RUN...")
    if args.resamples < 1 or not 0 < args.alpha < 1:
        raise UserError("medvqa compare: --resamples must be positive and --alpha in (0, 1)")
    result = compare(a, b, labels=tuple(args.labels), protocol=args.protocol, correction=args.correction,
                     alpha=args.alpha, resamples=args.resamples, seed=args.seed)
    print(format_text(result), end="")
    if args.out:
        write_text_atomic(args.out / "compare.json", json.dumps(result, indent=1) + "\n")
        write_text_atomic(args.out / "compare.md", format_markdown(result))
        print(f"wrote {args.out / 'compare.json'} and {args.out / 'compare.md'}")
    return 0
