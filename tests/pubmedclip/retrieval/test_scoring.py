"""Caption scores against values worked out by hand and the libraries' own documented examples, the Java-free
fallback, and the bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pubmedclip.retrieval import scoring
from pubmedclip.retrieval.scoring import bootstrap_interval, caption_scores, java_free_scores

# rouge-score's README example (target, prediction): LCS "the quick brown jumps the" = 5 of 9 and 8 words
ROUGE_TARGET, ROUGE_PREDICTION = "The quick brown fox jumps over the lazy dog", "The quick brown dog jumps on the log."
# BLEU by hand: unigrams 5/6 (the x2, cat, on, mat), bigrams 3/5 (the cat, on the, the mat), equal lengths
CAT_REF, CAT_HYP = "the cat is on the mat", "the cat sat on the mat"


def test_java_free_scores_match_the_documented_and_hand_values() -> None:
    scores = java_free_scores([CAT_REF, ROUGE_TARGET], [CAT_HYP, ROUGE_PREDICTION])
    assert scores.scorer == scoring.JAVA_FREE and "METEOR" not in scores.corpus
    rouge = (5 / 6 + 2 * (5 / 8) * (5 / 9) / (5 / 8 + 5 / 9)) / 2  # mean F1: 0.8333 and 0.5882 (the README's)
    assert scores.corpus["ROUGE-L"] == pytest.approx(rouge)
    single = java_free_scores([CAT_REF], [CAT_HYP]).corpus
    assert single["BLEU-1"] == pytest.approx(5 / 6) and single["BLEU-2"] == pytest.approx(math.sqrt(5 / 6 * 3 / 5))


def test_sacrebleu_documented_example_through_the_resampled_statistics() -> None:
    # sacrebleu's README example: BLEU 48.53 against its two reference streams; against the first stream alone,
    # the per-sentence statistics the bootstrap resamples must give sacrebleu's own corpus figure.
    from sacrebleu.metrics import BLEU

    refs = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    expected = BLEU(lowercase=True).corpus_score(hyps, [refs]).score / 100
    scores = java_free_scores(refs, hyps)
    assert scores.corpus["BLEU-4"] == pytest.approx(expected)
    assert scores.resample(np.array([0, 0, 2]))["BLEU-4"] == pytest.approx(
        BLEU(lowercase=True).corpus_score([hyps[0], hyps[0], hyps[2]], [[refs[0], refs[0], refs[2]]]).score / 100)
    assert BLEU().corpus_score(hyps, [refs, ["The dog had bit the man.", "No one was surprised.",
                                             "The man had bitten the dog."]]).score == pytest.approx(48.53, abs=0.01)


@pytest.mark.skipif(not scoring.java_available(), reason="pycocoevalcap needs Java")
def test_pycocoevalcap_scores_by_hand_and_resampling() -> None:
    refs = [CAT_REF + ".", ROUGE_TARGET, "Axial CT of the chest."]
    hyps = [CAT_HYP, ROUGE_PREDICTION, "axial ct of the chest"]
    scores = caption_scores(refs, hyps)
    assert scores.scorer == scoring.COCO and set(scores.corpus) == set(scoring.METRICS)
    beta2 = 1.2 ** 2  # pycocoevalcap's ROUGE-L weighs recall by beta = 1.2

    def rouge(p: float, r: float) -> float:
        return (1 + beta2) * p * r / (r + beta2 * p)

    assert scores.corpus["ROUGE-L"] == pytest.approx((rouge(5 / 6, 5 / 6) + rouge(5 / 8, 5 / 9) + 1.0) / 3)
    everything = scores.resample(np.arange(3))
    for name in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"):
        assert everything[name] == pytest.approx(scores.corpus[name])
    alone = scores.resample(np.array([0]))
    assert alone["BLEU-1"] == pytest.approx(5 / 6) and alone["BLEU-2"] == pytest.approx(math.sqrt(0.5))
    assert scores.resample(np.array([2]))["METEOR"] > 0.9 > scores.resample(np.array([1]))["METEOR"]


def test_without_java_the_fallback_is_used_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scoring.shutil, "which", lambda name: None)
    assert not scoring.java_available()
    assert caption_scores([CAT_REF], [CAT_HYP]).scorer == scoring.JAVA_FREE


def test_bootstrap_interval_over_groups() -> None:
    values = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    interval = bootstrap_interval(lambda items: {"mean": float(values[items].mean())}, [[0, 1], [2, 3], [4, 5]],
                                  resamples=500)["mean"]
    assert 0.5 <= interval[0] < 2 / 3 < interval[1] <= 1.0  # group means 0.5, 0.5, 1
    flat = bootstrap_interval(lambda items: {"x": 0.25}, [[0], [1]], resamples=50)["x"]
    assert flat == [0.25, 0.25]
    with pytest.raises(ValueError):
        caption_scores([], [])
