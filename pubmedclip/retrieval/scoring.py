"""Caption scores as the captioning literature reports them, with bootstrap 95 % intervals.

``pycocoevalcap`` (the COCO caption evaluation: Stanford PTB tokenizer, BLEU-1..4, METEOR, ROUGE-L, CIDEr-D)
needs Java. Without it the Java-free scorer takes over and says so in its name: sacrebleu's corpus BLEU-1..4
(13a tokenizer, lower-cased, sacrebleu's default exponential smoothing), rouge-score's ROUGE-L F1 and
pycocoevalcap's pure-Python CIDEr-D on lower-cased word tokens; METEOR is left out.

Intervals: percentile bootstrap over images (each image's hypotheses together), the corpus figure recomputed on
each resample: BLEU from its n-gram statistics, the other metrics as means of per-item scores (CIDEr-D and
ROUGE-L are such means; for METEOR the interval is that of the per-item mean around Java's corpus figure).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from infra.errors import UserError

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
COCO = "pycocoevalcap"
JAVA_FREE = "sacrebleu+rouge-score+CIDEr (Java not found: METEOR left out)"


def java_available() -> bool:
    """Whether a working ``java`` is on the PATH (pycocoevalcap's tokenizer and METEOR run it)."""
    java = shutil.which("java")
    if java is None:
        return False
    try:
        return subprocess.run([java, "-version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@dataclass
class CaptionScores:
    """Corpus scores of hypotheses against references, and how to recompute them on a resample of items."""

    scorer: str
    corpus: dict[str, float]
    resample: Callable[[np.ndarray], dict[str, float]]  # item indices (with repeats) -> corpus scores


def _coco_tokenize(texts: Sequence[str]) -> list[str]:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokens = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    return [tokens[i][0] or "_" for i in range(len(texts))]  # a caption of punctuation only scores zero


def _as_coco(references: Sequence[str], hypotheses: Sequence[str], items: Sequence[int]):
    return ({j: [references[i]] for j, i in enumerate(items)}, {j: [hypotheses[i]] for j, i in enumerate(items)})


def _coco_bleu_stats(references: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
    """Per item [hypothesis length, reference length, n-gram guesses (4), clipped matches (4)], as pycocoevalcap
    counts them on tokenized text."""
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    scorer = BleuScorer(n=4)
    for ref, hyp in zip(references, hypotheses):
        scorer += (hyp, [ref])
    return np.array([[c["testlen"], c["reflen"][0], *c["guess"], *c["correct"]] for c in scorer.ctest], np.float64)


def _coco_bleu(stats: np.ndarray) -> dict[str, float]:
    """pycocoevalcap's corpus BLEU-1..4 from summed statistics (its 1e-15 / 1e-9 guards included)."""
    hyp_len, ref_len, guesses, matches = stats[0], stats[1], stats[2:6], stats[6:10]
    brevity = math.exp(1 - (ref_len + 1e-9) / (hyp_len + 1e-15)) if hyp_len + 1e-15 < ref_len + 1e-9 else 1.0
    precisions = np.cumprod((matches + 1e-15) / (guesses + 1e-9))
    return {f"BLEU-{n}": float(precisions[n - 1] ** (1 / n) * brevity) for n in range(1, 5)}


def coco_scores(references: Sequence[str], hypotheses: Sequence[str]) -> CaptionScores:
    """pycocoevalcap BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of one hypothesis per reference (Java needed)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    tokens = _coco_tokenize([*references, *hypotheses])  # one Java start for both
    refs, hyps = tokens[:len(references)], tokens[len(references):]
    gts, res = _as_coco(refs, hyps, range(len(refs)))
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor = Meteor()
    meteor_corpus, meteor_items = meteor.compute_score(gts, res)
    del meteor  # ends its Java process
    rouge_corpus, rouge_items = Rouge().compute_score(gts, res)
    cider_corpus, cider_items = Cider().compute_score(gts, res)
    bleu_stats = _coco_bleu_stats(refs, hyps)
    per_item = {"METEOR": np.asarray(meteor_items), "ROUGE-L": np.asarray(rouge_items),
                "CIDEr": np.asarray(cider_items)}
    corpus = {**{f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)}, "METEOR": float(meteor_corpus),
              "ROUGE-L": float(rouge_corpus), "CIDEr": float(cider_corpus)}

    def resample(items: np.ndarray) -> dict[str, float]:
        return {**_coco_bleu(bleu_stats[items].sum(axis=0)),
                **{name: float(values[items].mean()) for name, values in per_item.items()}}

    return CaptionScores(COCO, corpus, resample)


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower())) or "_"


def java_free_scores(references: Sequence[str], hypotheses: Sequence[str]) -> CaptionScores:
    """sacrebleu BLEU-1..4, rouge-score ROUGE-L F1 and CIDEr-D, without Java (no METEOR)."""
    from pycocoevalcap.cider.cider import Cider
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import BLEU

    bleus = {n: BLEU(lowercase=True, max_ngram_order=n) for n in range(1, 5)}
    rouge = RougeScorer(["rougeL"])
    rouge_items = np.array([rouge.score(r, h)["rougeL"].fmeasure for r, h in zip(references, hypotheses)])
    words_ref, words_hyp = [_words(t) for t in references], [_words(t) for t in hypotheses]
    _, cider_items = Cider().compute_score(*_as_coco(words_ref, words_hyp, range(len(references))))
    cider_items = np.asarray(cider_items)

    stats = {n: np.array(bleu._extract_corpus_statistics(list(hypotheses), [list(references)]), np.int64)
             for n, bleu in bleus.items()}  # per sentence: lengths, n-gram matches and totals

    def resample(items: np.ndarray) -> dict[str, float]:
        return {**{f"BLEU-{n}": bleu._compute_score_from_stats(stats[n][items].sum(axis=0).tolist()).score / 100.0
                   for n, bleu in bleus.items()},
                "ROUGE-L": float(rouge_items[items].mean()), "CIDEr": float(cider_items[items].mean())}

    return CaptionScores(JAVA_FREE, resample(np.arange(len(references))), resample)


def caption_scores(references: Sequence[str], hypotheses: Sequence[str], java: bool | None = None) -> CaptionScores:
    """pycocoevalcap when Java works (``java=None`` checks), else the Java-free scorer."""
    if len(references) != len(hypotheses) or not references:
        raise ValueError(f"{len(references)} references for {len(hypotheses)} hypotheses")
    try:
        import pycocoevalcap  # noqa: F401
        import rouge_score  # noqa: F401
        import sacrebleu  # noqa: F401
    except ImportError as error:
        raise UserError(f"caption scores need {error.name}: pip install 'medvqa-clip[retrieval]'") from None
    return coco_scores(references, hypotheses) if (java_available() if java is None else java) else \
        java_free_scores(references, hypotheses)


def bootstrap_interval(statistic: Callable[[np.ndarray], dict[str, float]], groups: Sequence[Sequence[int]],
                       resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap: resample ``groups`` (the item indices of each image) with replacement and
    recompute ``statistic(item indices)``; returns ``{name: [low, high]}``."""
    rng = np.random.default_rng(seed)
    groups = [np.asarray(g, dtype=np.int64) for g in groups]
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        chosen = rng.integers(0, len(groups), len(groups))
        for name, value in statistic(np.concatenate([groups[g] for g in chosen])).items():
            draws.setdefault(name, []).append(value)
    tail = 100 * (1 - level) / 2
    return {name: [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))] for name, v in draws.items()}


def with_intervals(values: dict[str, float], intervals: dict[str, list[float]]) -> dict[str, dict[str, object]]:
    """``{name: {"value": v, "ci95": [low, high]}}``."""
    return {name: {"value": value, "ci95": intervals.get(name)} for name, value in values.items()}
