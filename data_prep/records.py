"""The one record type every dataset reader produces."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SPLITS = ("train", "val", "test")
ANSWER_TYPES = ("CLOSED", "OPEN")


def normalize_answer_type(raw: str) -> str:
    """``"CLOSED "`` / ``"closed"`` -> ``"CLOSED"``; raises on anything that is not open or closed."""
    value = str(raw).strip().upper()
    if value not in ANSWER_TYPES:
        raise ValueError(f"answer_type {raw!r} is neither OPEN nor CLOSED")
    return value


@dataclass(frozen=True)
class VQARecord:
    """One question-answer pair about one image.

    ``answer_type`` is normalised (stripped, upper-case); ``raw_answer_type`` keeps the file's value,
    which the published vocabularies compared without stripping. ``image_id`` is the image's path
    relative to the dataset's image folder (``synpic54610.jpg``, ``xmlab1/source.jpg``).
    """

    qid: str
    image_id: str
    question: str
    answer: str
    answer_type: str
    question_type: str
    split: str
    phrase_type: str = ""
    organ: str = ""
    modality: str = ""
    raw_answer_type: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VQARecord":
        return cls(**data)
