"""Question tokenizer, word dictionary, answer normalisation and answer vocabularies.

The tokenizer and answer normaliser follow the published MEVF/QCR preprocessing exactly, so the
vocabularies built here equal the released ``dictionary.pkl`` and ``cache/*ans2label.pkl`` files.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from data_prep.records import VQARecord

MAX_QUESTION_LENGTH = 12
UNKNOWN_TOKEN = "<unk>"


def tokenize(question: str) -> list[str]:
    """Split a question into words as the published MEVF/QCR dictionary does."""
    text = question.lower()
    for suffix in ("? -yes/no", "? -open", "? - open"):
        text = text.replace(suffix, "")
    text = text.replace(",", "").replace("?", "").replace("'s", " 's").replace("...", "")
    text = text.replace("x ray", "x-ray").replace(".", "")
    return text.split()


@dataclass
class Dictionary:
    """Word <-> index map for questions.

    ``unknown="token"`` (default) appends an explicit ``<unk>`` word after the vocabulary;
    ``unknown="last-word"`` reproduces the published mapping of every unknown word to index
    ``ntoken - 1``. Padding uses index ``ntoken`` (the embedding has ``ntoken + 1`` rows).
    """

    words: list[str]
    unknown: str = "token"

    def __post_init__(self) -> None:
        if self.unknown not in ("token", "last-word"):
            raise ValueError(f"unknown-word policy {self.unknown!r}: expected 'token' or 'last-word'")
        if self.unknown == "token" and (not self.words or self.words[-1] != UNKNOWN_TOKEN):
            self.words = [*self.words, UNKNOWN_TOKEN]
        self.word2idx = {word: index for index, word in enumerate(self.words)}

    @classmethod
    def build(cls, questions: Iterable[str], unknown: str = "token") -> "Dictionary":
        """Words in order of first appearance over ``questions``."""
        seen: dict[str, None] = {}
        for question in questions:
            seen.update(dict.fromkeys(tokenize(question)))
        return cls(list(seen), unknown=unknown)

    @property
    def ntoken(self) -> int:
        return len(self.words)

    @property
    def padding_idx(self) -> int:
        return len(self.words)

    @property
    def unknown_idx(self) -> int:
        return len(self.words) - 1

    @property
    def vocabulary(self) -> list[str]:
        """The real words, without the explicit unknown token."""
        return self.words[:-1] if self.unknown == "token" else list(self.words)

    def encode(self, question: str, max_length: int = MAX_QUESTION_LENGTH) -> list[int]:
        """Token ids, truncated to ``max_length`` and padded at the end with ``padding_idx``."""
        ids = [self.word2idx.get(word, self.unknown_idx) for word in tokenize(question)][:max_length]
        return ids + [self.padding_idx] * (max_length - len(ids))

    def count_unknown(self, question: str) -> int:
        return sum(word not in self.word2idx for word in tokenize(question))

    def to_dict(self) -> dict:
        return {"words": self.words, "unknown": self.unknown}

    @classmethod
    def from_dict(cls, data: dict) -> "Dictionary":
        return cls(list(data["words"]), unknown=data["unknown"])


# --- answers -------------------------------------------------------------------------------------
# VQA-evaluation answer processing, as used by the published soft-score script.
_PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
                "`", ",", "?", "!"]
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"(?!<=\d)(\.)(?!\d)")
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                 "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}


def _process_punctuation(text: str) -> str:
    out = text
    has_number_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in _PUNCTUATION:
        touches_space = (mark + " " in text) or (" " + mark in text)
        out = out.replace(mark, "" if touches_space or has_number_comma else " ")
    # The reference passes re.UNICODE (32) as the count argument: at most 32 periods go.
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=32)


def _process_digits_and_articles(text: str) -> str:
    words = (_NUMBER_WORDS.get(word, word) for word in text.lower().split())
    return " ".join(word for word in words if word not in _ARTICLES)


def normalize_answer(answer: str) -> str:
    """The published answer normalisation (lower-case, ``x-ray`` -> ``xray``, VQA punctuation rules,
    number words to digits, articles dropped)."""
    text = str(answer).lower().replace("\n", " ").replace("\t", " ").strip()
    text = text.replace("x-ray", "xray").replace("x ray", "xray")
    return _process_digits_and_articles(_process_punctuation(text))


ANSWER_SOURCES = ("train", "train+val", "train+test")
BRANCHES = ("all", "closed", "open")


@dataclass
class AnswerVocab:
    """Normalised answer sets: ``all`` for single-classifier models, ``closed``/``open`` for QCR.

    ``closed_by`` is ``"answer_type"`` (normalised type, the sound default) or ``"raw-type"`` (the
    published unstripped comparison, under which ``"CLOSED "`` records count as open).
    """

    all: list[str]
    closed: list[str]
    open: list[str]
    source: str = "train"
    closed_by: str = "answer_type"

    def __post_init__(self) -> None:
        self._index = {branch: {a: i for i, a in enumerate(getattr(self, branch))} for branch in BRANCHES}

    @staticmethod
    def is_closed(record: VQARecord, closed_by: str) -> bool:
        if closed_by == "raw-type":
            return record.raw_answer_type == "CLOSED"
        return record.answer_type == "CLOSED"

    @classmethod
    def build(cls, records: Iterable[VQARecord], source: str = "train",
              closed_by: str = "answer_type") -> "AnswerVocab":
        """First-appearance answer lists over ``records`` (already filtered by ``source``)."""
        if closed_by not in ("answer_type", "raw-type"):
            raise ValueError(f"closed_by {closed_by!r}: expected 'answer_type' or 'raw-type'")
        lists: dict[str, dict[str, None]] = {branch: {} for branch in BRANCHES}
        for record in records:
            answer = normalize_answer(record.answer)
            lists["all"][answer] = None
            lists["closed" if cls.is_closed(record, closed_by) else "open"][answer] = None
        return cls(*(list(lists[b]) for b in BRANCHES), source=source, closed_by=closed_by)

    normalize = staticmethod(normalize_answer)

    def label(self, answer: str, branch: str = "all") -> int | None:
        """Index of the normalised ``answer`` in ``branch``, or None when it is not in the set."""
        return self._index[branch].get(normalize_answer(answer))

    def branch_of(self, record: VQARecord) -> str:
        return "closed" if self.is_closed(record, self.closed_by) else "open"

    def to_dict(self) -> dict:
        return {"source": self.source, "closed_by": self.closed_by,
                **{branch: getattr(self, branch) for branch in BRANCHES}}

    @classmethod
    def from_dict(cls, data: dict) -> "AnswerVocab":
        return cls(data["all"], data["closed"], data["open"], data["source"], data["closed_by"])
