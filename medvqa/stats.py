"""Statistics on accuracies: mean +- std over seeds, bootstrap intervals over test questions, paired tests.

Correctness is a boolean matrix ``[seeds, questions]``: row ``s`` says which test questions the run of
seed ``s`` answered correctly, columns in the same question order for every run compared.

- ``bootstrap_interval(s)``: percentile interval of the accuracy (the mean over seeds of each seed's
  accuracy) when the test questions are resampled with replacement, the same draw for every seed and,
  for several subsets of the questions (open, closed, all), for every subset.
- ``mcnemar_exact``: McNemar's exact test on one pair of runs (a two-sided binomial test of the
  questions only one of them answered correctly).
- ``paired_difference(s)``: the difference of two sets of runs paired by seed and question. Each question's
  score is averaged over the seeds (the question is the unit that is resampled or flipped, so seeds
  answering the same question are not counted as independent evidence); the interval comes from a
  bootstrap over questions and the p-value from a sign-flip permutation test over questions (exact
  enumeration when few questions differ, Monte Carlo otherwise).
- ``adjust_pvalues``: Holm (default), Bonferroni or no multiple-comparison correction.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

CORRECTIONS = ("holm", "bonferroni", "none")
RESAMPLES = 10_000
LEVEL = 0.95
_CHUNK = 1_000  # resamples drawn at a time (bounds memory at _CHUNK x questions)


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1); the std is ``None`` for one value, both for none."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return None, None
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else None


def _as_matrix(values: np.ndarray) -> np.ndarray:
    """``[questions]`` or ``[seeds, questions]`` -> ``[seeds, questions]``."""
    array = np.asarray(values)
    return array[None, :] if array.ndim == 1 else array


def subset_accuracy(correct: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Accuracy in percent of each seed over the questions in ``mask`` (``[questions]`` or per seed
    ``[seeds, questions]``; all questions without one); NaN for a seed whose subset is empty."""
    correct = _as_matrix(correct).astype(float)
    mask = np.ones_like(correct) if mask is None else np.broadcast_to(_as_matrix(mask), correct.shape).astype(float)
    counts = mask.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, 100.0 * (correct * mask).sum(1) / counts, np.nan)


def _resampled_ratios(numerators: np.ndarray, denominators: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """``[resamples, K]``: for each resample of the questions (drawn with replacement, the same draw for all
    ``K`` rows), ``sum(numerators[k] over the draw) / sum(denominators[k] over the draw)``; NaN where 0 / 0.

    ``numerators`` and ``denominators`` are ``[K, questions]``. The draws come from
    ``numpy.random.default_rng(seed)``, ``_CHUNK`` resamples at a time, as counts per question.
    """
    rng, n = np.random.default_rng(seed), numerators.shape[1]
    ratios = []
    for start in range(0, resamples, _CHUNK):
        chunk = min(_CHUNK, resamples - start)
        drawn = rng.integers(0, n, size=(chunk, n)) + n * np.arange(chunk)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=chunk * n).reshape(chunk, n).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios.append((counts @ numerators.T) / (counts @ denominators.T))
    return np.concatenate(ratios)


def _percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float] | None:
    samples = samples[~np.isnan(samples)]
    if not samples.size:
        return None
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_intervals(correct: np.ndarray, masks: Sequence[np.ndarray | None], *, resamples: int = RESAMPLES,
                        seed: int = 0, level: float = LEVEL) -> list[tuple[float, float] | None]:
    """Percentile bootstrap intervals (percent) of the mean over seeds of each seed's accuracy over each mask.

    ``correct``: ``[seeds, questions]``; each mask is ``[questions]``, per seed ``[seeds, questions]``, or
    ``None`` (all questions). Test questions are drawn with replacement, the same draws for every seed and
    every mask; a seed whose subset a draw misses is left out of that draw's mean. ``None`` for a mask
    that is empty for every seed.
    """
    correct = _as_matrix(correct).astype(float)
    seeds, n = correct.shape
    subsets = np.stack([np.ones_like(correct) if m is None else np.broadcast_to(_as_matrix(m), correct.shape)
                        for m in masks]).astype(float).reshape(-1, n)  # [masks * seeds, N]
    ratios = _resampled_ratios(np.tile(correct, (len(masks), 1)) * subsets, subsets, resamples, seed)
    per_seed = 100.0 * ratios.reshape(-1, len(masks), seeds)  # [R, masks, seeds]
    drawn = ~np.isnan(per_seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(drawn, per_seed, 0.0).sum(2) / drawn.sum(2)  # [R, masks]
    return [_percentile_interval(means[:, i], level) for i in range(len(masks))]


def bootstrap_interval(correct: np.ndarray, mask: np.ndarray | None = None, *, resamples: int = RESAMPLES,
                       seed: int = 0, level: float = LEVEL) -> tuple[float, float] | None:
    """``bootstrap_intervals`` of one mask."""
    return bootstrap_intervals(correct, [mask], resamples=resamples, seed=seed, level=level)[0]


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of two runs on the same questions."""

    a_only: int  # questions only run A answered correctly
    b_only: int  # questions only run B answered correctly
    p_value: float  # two-sided exact binomial p-value of a_only among a_only + b_only at 1/2


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> McNemar:
    """McNemar's exact test on paired per-question correctness ``a``, ``b`` (``[questions]`` bool)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired correctness of different shapes {a.shape} and {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
    discordant = a_only + b_only
    p_value = 1.0 if discordant == 0 else float(binomtest(a_only, discordant, 0.5).pvalue)
    return McNemar(a_only, b_only, min(1.0, p_value))


def sign_flip_pvalue(scores: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, bool]:
    """Two-sided p-value of the mean of paired differences ``scores`` (``[questions]``) under random sign flips.

    Questions with a zero difference do not change under a flip, so the ``m`` non-zero ones decide: all
    ``2**m`` flips are enumerated when that is no more than ``resamples`` (exact), else ``resamples``
    random flips give ``(1 + hits) / (1 + resamples)``. Returns ``(p_value, exact)``.
    """
    scores = np.asarray(scores, dtype=float)
    nonzero = scores[scores != 0]
    observed = abs(nonzero.sum())
    if observed == 0:
        return 1.0, True
    tolerance = 1e-9 * max(1.0, observed)
    m = nonzero.size
    if 2 ** m <= resamples:
        bits = (np.arange(2 ** m)[:, None] >> np.arange(m)) & 1
        totals = (1 - 2 * bits) @ nonzero
        return float(np.mean(np.abs(totals) >= observed - tolerance)), True
    rng, hits = np.random.default_rng(seed), 0
    for start in range(0, resamples, _CHUNK):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(_CHUNK, resamples - start), m))
        hits += int((np.abs(signs @ nonzero) >= observed - tolerance).sum())
    return (1 + hits) / (1 + resamples), False


@dataclass(frozen=True)
class PairedDifference:
    """B minus A over paired seeds and questions (percentage points)."""

    difference: float  # mean over questions of the seed-averaged difference of correctness, x 100
    interval: tuple[float, float]  # percentile bootstrap interval over questions
    p_value: float  # two-sided sign-flip permutation test over questions
    exact: bool  # the permutation p-value enumerates every flip
    seeds: int
    questions: int


def paired_differences(a: np.ndarray, b: np.ndarray, masks: Sequence[np.ndarray | None], *,
                       resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> list[PairedDifference | None]:
    """``b - a`` over each subset ``masks`` (``[questions]`` bool, or ``None`` for all) of correctness
    matrices ``[seeds, questions]`` paired row by row and column by column; ``None`` for an empty subset.

    The bootstrap draws all test questions (the same draws for every subset) and takes each subset's
    share of a draw; the permutation test flips the signs of the subset's questions.
    """
    a, b = _as_matrix(a).astype(float), _as_matrix(b).astype(float)
    if a.shape != b.shape or a.shape[1] == 0:
        raise ValueError(f"paired correctness must have one non-empty shape, got {a.shape} and {b.shape}")
    scores = (b - a).mean(0)  # [N]: per question, the difference averaged over seeds
    subsets = np.stack([np.ones_like(scores) if m is None else np.asarray(m, dtype=float) for m in masks])
    ratios = 100.0 * _resampled_ratios(scores * subsets, subsets, resamples, seed)  # [R, masks]
    results: list[PairedDifference | None] = []
    for i, subset in enumerate(subsets.astype(bool)):
        if not subset.any():
            results.append(None)
            continue
        p_value, exact = sign_flip_pvalue(scores[subset], resamples=resamples, seed=seed)
        results.append(PairedDifference(100.0 * float(scores[subset].mean()), _percentile_interval(ratios[:, i], level),
                                        p_value, exact, a.shape[0], int(subset.sum())))
    return results


def paired_difference(a: np.ndarray, b: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0,
                      level: float = LEVEL) -> PairedDifference:
    """``paired_differences`` over all questions."""
    return paired_differences(a, b, [None], resamples=resamples, seed=seed, level=level)[0]


def adjust_pvalues(p_values: Sequence[float], method: str = "holm") -> np.ndarray:
    """P-values adjusted for multiple comparisons: ``holm`` (step-down), ``bonferroni`` or ``none``."""
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}: choose from {', '.join(CORRECTIONS)}")
    p = np.asarray(p_values, dtype=float)
    if method == "none" or p.size == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(1.0, p * p.size)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((p.size - np.arange(p.size)) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, stepped)
    return adjusted


def describe_correction(method: str, tests: int, alpha: float) -> str:
    """One sentence that says how significance was decided."""
    name = {"holm": "Holm's step-down correction", "bonferroni": "Bonferroni correction",
            "none": "no multiple-comparison correction"}[method]
    return f"significant: p < {alpha:g} after {name} over {tests} test{'s' if tests != 1 else ''}"
