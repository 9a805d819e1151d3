"""The numbers of a comparison: each set of runs summarised, and one set tested against another.

``summarize_runs`` gives, per metric (open / closed / overall, counted by route as the results files
count them), the mean +- std over seeds and a bootstrap 95 % interval over test questions.
``compare_runs`` pairs two sets by seed and question and gives, per metric (open / closed by gold
answer type, so both sides count the same questions), the difference with its bootstrap interval, the
sign-flip permutation p-value over questions, and McNemar's exact test per seed. ``correct_family``
adjusts the permutation p-values of many comparisons together (one family) and marks the significant ones.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from infra.errors import UserError
from medvqa.report.runs import METRICS, EvaluatedRun, check_same_questions, pair_by_seed
from medvqa.stats import (
    LEVEL,
    RESAMPLES,
    adjust_pvalues,
    bootstrap_intervals,
    describe_correction,
    mcnemar_exact,
    mean_std,
    paired_differences,
    subset_accuracy,
)

ALPHA = 0.05


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), digits)


def summarize_runs(runs: Sequence[EvaluatedRun], *, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Mean +- std over the runs' seeds and a bootstrap interval over questions, per metric.

    The runs must share their test questions (``check_same_questions``).
    """
    for run in runs[1:]:
        check_same_questions(runs[0], run)
    correct = np.stack([run.correct() for run in runs])  # [S, N]
    summary: dict = {"seeds": [run.seed for run in runs], "runs": [str(run.path) for run in runs],
                     "questions": int(correct.shape[1])}
    masks = [np.stack([run.routed(metric) for run in runs]) for metric in METRICS]
    intervals = bootstrap_intervals(correct, masks, resamples=resamples, seed=seed)
    for metric, mask, interval in zip(METRICS, masks, intervals):
        per_seed = subset_accuracy(correct, mask)
        mean, std = mean_std(per_seed[~np.isnan(per_seed)])
        summary[metric] = {"mean": _rounded(mean), "std": _rounded(std), "per_seed": [_rounded(v) for v in per_seed],
                           "interval": None if interval is None else [_rounded(v) for v in interval],
                           "questions": int(mask[0].sum())}
    return summary


def compare_runs(a: Sequence[EvaluatedRun], b: Sequence[EvaluatedRun], *, resamples: int = RESAMPLES,
                 seed: int = 0, pair_lone_runs: bool = False) -> dict:
    """``b`` against ``a`` on the same questions, paired by seed (``pair_by_seed``); runs without a partner are
    listed."""
    for run in [*a, *b]:
        check_same_questions(a[0], run)
    pairs = pair_by_seed(a, b, pair_lone_runs=pair_lone_runs)
    if not pairs:
        raise UserError(f"the two sets of runs share no seed (seeds {sorted(r.seed for r in a)} and "
                        f"{sorted(r.seed for r in b)}): pair runs of the same seeds")
    paired = {id(run) for pair in pairs for run in pair}
    comparison: dict = {
        "pairs": [{"seed_a": run_a.seed, "seed_b": run_b.seed, "a": str(run_a.path), "b": str(run_b.path)}
                  for run_a, run_b in pairs],
        "unpaired": [str(run.path) for run in [*a, *b] if id(run) not in paired],
        "questions": len(a[0].qids)}
    correct_a = np.stack([run_a.correct() for run_a, _ in pairs])
    correct_b = np.stack([run_b.correct() for _, run_b in pairs])
    masks = [a[0].gold(metric) for metric in METRICS]
    tests = paired_differences(correct_a, correct_b, masks, resamples=resamples, seed=seed)
    for metric, mask, test in zip(METRICS, masks, tests):
        if test is None:
            comparison[metric] = None
            continue
        comparison[metric] = {
            "difference": _rounded(test.difference), "interval": [_rounded(v) for v in test.interval or (None, None)],
            "p_value": float(test.p_value), "exact": test.exact, "questions": test.questions,
            "mcnemar": [{"seed_a": run_a.seed, "seed_b": run_b.seed, **asdict(mcnemar_exact(x[mask], y[mask]))}
                        for (run_a, run_b), x, y in zip(pairs, correct_a, correct_b)]}
    return comparison


def correct_family(comparisons: Sequence[dict], method: str = "holm", alpha: float = ALPHA) -> dict:
    """Adjust the permutation p-values of every metric of every comparison as one family (in place:
    ``p_adjusted`` and ``significant`` are added); McNemar p-values are adjusted as a second family.
    Returns what was done, with the sentence that states it."""
    tests = [entry for comparison in comparisons for metric in METRICS if (entry := comparison.get(metric))]
    for entry, adjusted in zip(tests, adjust_pvalues([e["p_value"] for e in tests], method)):
        entry["p_adjusted"] = float(adjusted)
        entry["significant"] = bool(adjusted < alpha)
    mcnemar = [seed_test for entry in tests for seed_test in entry["mcnemar"]]
    for seed_test, adjusted in zip(mcnemar, adjust_pvalues([t["p_value"] for t in mcnemar], method)):
        seed_test["p_adjusted"] = float(adjusted)
    return {"method": method, "alpha": alpha, "tests": len(tests), "mcnemar_tests": len(mcnemar),
            "statement": describe_correction(method, len(tests), alpha) + " (paired permutation tests; McNemar "
                         f"p-values adjusted the same way over their {len(mcnemar)} per-seed tests)"}


def methods_text(resamples: int = RESAMPLES) -> str:
    """How every number of a comparison or report is computed, in a few sentences."""
    return (f"Accuracy: mean +- sample std over seeds, with a {LEVEL:.0%} percentile bootstrap interval over test "
            f"questions ({resamples} resamples of the questions, the same draw for every seed). Differences: runs "
            "paired by seed and questions by qid; each question's correctness difference is averaged over the seeds, "
            "the interval is a bootstrap over questions and the p-value a two-sided sign-flip permutation test over "
            "questions (exact when few questions differ). McNemar's exact test is given per seed. Open and closed "
            "are counted by route in the accuracies and by gold answer type in the paired tests.")
