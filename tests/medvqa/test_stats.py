"""The statistics of medvqa.stats against scipy and statsmodels on hand-made per-question correctness."""
import itertools
import statistics

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from medvqa.stats import (
    adjust_pvalues,
    bootstrap_interval,
    bootstrap_intervals,
    describe_correction,
    mcnemar_exact,
    mean_std,
    paired_difference,
    paired_differences,
    sign_flip_pvalue,
    subset_accuracy,
)


def _pair(n: int, p_a: float, p_b: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(n) < p_a, rng.random(n) < p_b


@pytest.mark.parametrize("n, p_a, p_b, seed", [(40, 0.6, 0.6, 0), (120, 0.5, 0.7, 1), (451, 0.66, 0.7, 2),
                                               (30, 0.9, 0.2, 3), (25, 0.5, 0.5, 4)])
def test_mcnemar_exact_matches_statsmodels(n, p_a, p_b, seed):
    a, b = _pair(n, p_a, p_b, seed)
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    ours = mcnemar_exact(a, b)
    assert (ours.a_only, ours.b_only) == (table[0][1], table[1][0])
    assert ours.p_value == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-9, abs=1e-15)


def test_mcnemar_without_discordant_questions_is_one():
    a = np.array([True, False, True])
    assert mcnemar_exact(a, a).p_value == 1.0
    assert mcnemar([[2, 0], [0, 1]], exact=True).pvalue == 1.0


@pytest.mark.parametrize("method, name", [("holm", "holm"), ("bonferroni", "bonferroni")])
def test_corrections_match_statsmodels(method, name):
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 0.9, 0.0001])
    assert adjust_pvalues(p, method) == pytest.approx(multipletests(p, method=name)[1], abs=1e-15)
    rejected = multipletests(p, alpha=0.05, method=name)[0]
    assert list(adjust_pvalues(p, method) < 0.05) == list(rejected)
    assert list(adjust_pvalues(p, "none")) == list(p)
    with pytest.raises(ValueError, match="unknown correction 'fdr'"):
        adjust_pvalues(p, "fdr")
    assert "Holm's step-down correction over 8 tests" in describe_correction("holm", 8, 0.05)


def test_one_seed_sign_flip_test_is_mcnemars_exact_test():
    a, b = _pair(24, 0.55, 0.7, 5)  # 13 discordant questions: 2**13 <= resamples, enumerated exactly
    p_value, exact = sign_flip_pvalue(b.astype(float) - a.astype(float), resamples=2 ** 14)
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    assert exact and p_value == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-9)


def test_paired_difference_over_seeds_matches_scipy_exact_permutation_test():
    rng = np.random.default_rng(9)
    a, b = rng.random((3, 12)) < 0.5, rng.random((3, 12)) < 0.6  # 3 seeds x 12 questions
    scores = (b.astype(float) - a.astype(float)).mean(0)
    reference = scipy_stats.permutation_test((scores,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                             vectorized=True)
    result = paired_difference(a, b, resamples=5000)
    assert result.exact and result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.difference == pytest.approx(100 * (b.mean() - a.mean()))
    assert (result.seeds, result.questions) == (3, 12)


def test_monte_carlo_permutation_p_value_is_close_to_scipy():
    rng = np.random.default_rng(7)
    a, b = rng.random((2, 400)) < 0.6, rng.random((2, 400)) < 0.66
    scores = (b.astype(float) - a.astype(float)).mean(0)
    reference = scipy_stats.permutation_test((scores,), np.mean, permutation_type="samples", n_resamples=20000,
                                             vectorized=True, random_state=np.random.default_rng(1)).pvalue
    first = paired_difference(a, b, resamples=20000, seed=3)
    assert not first.exact and first.p_value == pytest.approx(reference, abs=0.01)
    assert paired_difference(a, b, resamples=20000, seed=3) == first  # seeded: the same numbers again


def test_bootstrap_interval_matches_scipy_percentile_bootstrap():
    correct = np.random.default_rng(8).random(300) < 0.7
    ours = bootstrap_interval(correct, resamples=20000, seed=0)
    reference = scipy_stats.bootstrap((100.0 * correct,), np.mean, method="percentile", n_resamples=20000,
                                      random_state=np.random.default_rng(0)).confidence_interval
    assert ours[0] == pytest.approx(reference.low, abs=0.7) and ours[1] == pytest.approx(reference.high, abs=0.7)
    assert ours[0] < 100 * correct.mean() < ours[1]
    assert bootstrap_interval(correct, resamples=20000, seed=0) == ours
    assert bootstrap_interval(np.ones(50, bool)) == (100.0, 100.0)


def test_bootstrap_over_seeds_resamples_the_same_questions_for_every_seed():
    # Seed 1 answers exactly the questions seed 0 misses: every resample averages to 50 %.
    seed0 = np.array([True, False] * 20)
    assert bootstrap_interval(np.stack([seed0, ~seed0]), resamples=2000) == (50.0, 50.0)


def test_subset_accuracy_with_per_seed_masks():
    correct = np.array([[True, False, True, True], [False, False, True, False]])
    masks = np.array([[True, True, False, False], [False, True, True, True]])
    assert list(subset_accuracy(correct, masks)) == [50.0, pytest.approx(100 / 3)]
    assert np.isnan(subset_accuracy(correct, np.zeros(4, bool))).all()
    assert bootstrap_interval(correct, np.zeros(4, bool)) is None
    low, high = bootstrap_interval(correct, masks, resamples=3000)
    assert 0 <= low <= (50 + 100 / 3) / 2 <= high <= 100


def test_mean_std_is_the_sample_std():
    assert mean_std([61.2, 63.0, 59.9]) == (pytest.approx(statistics.mean([61.2, 63.0, 59.9])),
                                            pytest.approx(statistics.stdev([61.2, 63.0, 59.9])))
    assert mean_std([70.0]) == (70.0, None)
    assert mean_std([]) == (None, None)


def test_sign_flip_enumeration_is_exhaustive():
    scores = np.array([1.0, -0.5, 0.0, 1.0, 0.5])
    flips = [np.dot(signs, scores) for signs in itertools.product([-1, 1], repeat=len(scores))]
    expected = np.mean(np.abs(flips) >= abs(scores.sum()) - 1e-12)
    assert sign_flip_pvalue(scores) == (pytest.approx(expected), True)
    assert sign_flip_pvalue(np.zeros(7)) == (1.0, True)


def test_subsets_share_the_resampled_questions():
    rng = np.random.default_rng(10)
    a, b = rng.random((2, 200)) < 0.6, rng.random((2, 200)) < 0.7
    closed = rng.random(200) < 0.6
    tests = paired_differences(a, b, [closed, ~closed, None], resamples=4000, seed=2)
    for test, subset in zip(tests, (closed, ~closed, np.ones(200, bool))):
        alone = paired_difference(a[:, subset], b[:, subset], resamples=4000, seed=2)
        assert (test.difference, test.p_value, test.questions) == (pytest.approx(alone.difference), alone.p_value,
                                                                   int(subset.sum()))
        assert test.interval[0] < test.difference < test.interval[1]
    assert tests[2] == paired_difference(a, b, resamples=4000, seed=2)
    assert paired_differences(a, b, [np.zeros(200, bool)])[0] is None
    intervals = bootstrap_intervals(a, [closed, None], resamples=4000)
    assert intervals[1] == bootstrap_interval(a, resamples=4000)
    assert intervals[0][0] < np.mean(subset_accuracy(a, closed)) < intervals[0][1]
