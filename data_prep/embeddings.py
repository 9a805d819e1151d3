"""GloVe initialisation of the question embedding and the tf-idf weighted second embedding."""
from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy import sparse

from data_prep.text import Dictionary, tokenize
from infra.errors import UserError

GLOVE_DIM = 300
TFIDF_WEIGHTINGS = ("published", "corrected")


def load_glove(path: str | Path) -> dict[str, np.ndarray]:
    """Word vectors from a ``glove.6B.300d.txt``-style text file or an ``.npz`` with ``words``/``vectors``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"GloVe file not found: {path}")
    if path.suffix == ".npz":
        with np.load(path) as archive:
            missing = {"words", "vectors"} - set(archive.files)
            if missing:
                raise UserError(f"{path}: missing array(s) {sorted(missing)} (expected 'words' and 'vectors')")
            words, vectors = archive["words"], archive["vectors"].astype(np.float32)
        return dict(zip(words.tolist(), vectors))
    table: dict[str, np.ndarray] = {}
    with path.open(encoding="utf8") as handle:
        for line_number, line in enumerate(handle, 1):
            word, *values = line.rstrip("\n").split(" ")
            if len(values) != GLOVE_DIM:
                raise UserError(f"{path}:{line_number}: expected {GLOVE_DIM} values, found {len(values)}")
            table[word] = np.asarray(values, dtype=np.float32)
    return table


def glove_init(words: list[str], glove: dict[str, np.ndarray]) -> np.ndarray:
    """``[len(words), 300]`` float32 rows from GloVe; zero rows for words GloVe lacks."""
    weights = np.zeros((len(words), GLOVE_DIM), dtype=np.float32)
    for index, word in enumerate(words):
        if word in glove:
            weights[index] = glove[word]
    return weights


def tfidf_matrix(questions: Iterable[str], dictionary: Dictionary,
                 weighting: str = "published") -> sparse.csr_matrix:
    """Row-stochastic word co-occurrence matrix ``[ntoken, ntoken]`` over ``questions``.

    Every unordered pair of token positions in a question adds entries (i, j) and (j, i);
    ``df`` counts token occurrences. ``weighting="corrected"`` divides each entry by the df of its
    column. ``"published"`` reproduces the released weights, whose code divided the value list at
    position ``col`` (not at the entry's position) once per entry with that column.
    """
    if weighting not in TFIDF_WEIGHTINGS:
        raise ValueError(f"tf-idf weighting {weighting!r}: expected one of {TFIDF_WEIGHTINGS}")
    n = dictionary.ntoken
    rows: list[int] = []
    cols: list[int] = []
    df = np.zeros(n, dtype=np.int64)
    for question in questions:
        ids = [dictionary.word2idx[w] for w in tokenize(question) if w in dictionary.word2idx]
        np.add.at(df, ids, 1)
        for i, j in combinations(ids, 2):
            rows += (i, j)
            cols += (j, i)
    row_ids, col_ids = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    if weighting == "corrected":
        values = 1.0 / df[col_ids]
    else:
        values = np.ones(len(col_ids))
        per_column = np.bincount(col_ids, minlength=n)
        touched = np.flatnonzero(per_column[: len(values)])
        with np.errstate(under="ignore", over="ignore"):
            values[touched] = 1.0 / np.power(df[touched].astype(np.float64), per_column[touched])
    row_sums = np.bincount(row_ids, weights=values, minlength=n)
    values = values / row_sums[row_ids]
    return sparse.csr_matrix((values, (row_ids, col_ids)), shape=(n, n))


def tfidf_glove_init(tfidf: sparse.csr_matrix, glove_weights: np.ndarray) -> np.ndarray:
    """The second embedding's initialisation: ``tfidf @ glove`` as float32."""
    return np.asarray(tfidf @ glove_weights.astype(np.float64), dtype=np.float32)
