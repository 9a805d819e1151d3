"""Tokenizer, dictionary, answer normalisation and vocabularies on hand-made inputs."""
from __future__ import annotations

import pytest

from data_prep.prepare import hold_out_validation
from data_prep.records import VQARecord, normalize_answer_type
from data_prep.text import AnswerVocab, Dictionary, normalize_answer, tokenize


def _record(qid: str, answer: str, raw_type: str = "CLOSED", split: str = "train") -> VQARecord:
    return VQARecord(qid, "img.jpg", "q?", answer, normalize_answer_type(raw_type), "PRES", split,
                     raw_answer_type=raw_type)


@pytest.mark.parametrize("question,tokens", [
    ("Is the x ray normal?", ["is", "the", "x-ray", "normal"]),
    ("What's in the patient's chest, left?", ["what", "'s", "in", "the", "patient", "'s", "chest", "left"]),
    ("Is this normal? -yes/no", ["is", "this", "normal"]),
    ("Where is it... the mass.", ["where", "is", "it", "the", "mass"]),
])
def test_tokenize(question: str, tokens: list[str]) -> None:
    assert tokenize(question) == tokens


def test_dictionary_padding_truncation_and_unknown() -> None:
    dictionary = Dictionary.build(["is there a mass", "where is the mass"])
    assert dictionary.words == ["is", "there", "a", "mass", "where", "the", "<unk>"]
    assert dictionary.encode("is there a lesion") == [0, 1, 2, 6] + [7] * 8
    long = " ".join(["mass"] * 20)
    assert dictionary.encode(long) == [3] * 12
    legacy = Dictionary(dictionary.vocabulary, unknown="last-word")
    assert legacy.encode("is lesion", max_length=3) == [0, 5, 6]
    assert Dictionary.from_dict(dictionary.to_dict()).words == dictionary.words
    with pytest.raises(ValueError, match="unknown-word policy"):
        Dictionary(["a"], unknown="drop")


@pytest.mark.parametrize("raw,normal", [
    ("Yes", "yes"), (" X-ray ", "xray"), ("x ray", "xray"), ("The left lung", "left lung"),
    ("two", "2"), ("1,000", "1000"), ("left, right", "left right"), ("a.m.", "am"), ("3.5 cm", "3.5 cm"),
    ("T2-weighted", "t2 weighted"), ("T2 - weighted", "t2  weighted".replace("  ", " ")),
])
def test_normalize_answer(raw: str, normal: str) -> None:
    assert normalize_answer(raw) == normal


def test_answer_type_normalisation() -> None:
    assert normalize_answer_type("CLOSED ") == "CLOSED" and normalize_answer_type("open") == "OPEN"
    with pytest.raises(ValueError, match="'MAYBE'"):
        normalize_answer_type("MAYBE")


def test_answer_vocab_branches_and_raw_type() -> None:
    records = [_record("1", "Yes"), _record("2", "left lung", "OPEN"), _record("3", "maybe", "CLOSED "),
               _record("4", "No")]
    sound = AnswerVocab.build(records)
    assert sound.all == ["yes", "left lung", "maybe", "no"]
    assert sound.closed == ["yes", "maybe", "no"] and sound.open == ["left lung"]
    published = AnswerVocab.build(records, closed_by="raw-type")
    assert published.open == ["left lung", "maybe"] and published.branch_of(records[2]) == "open"
    assert sound.label("YES") == 0 and sound.label("kidney") is None and sound.label("Left lung", "open") == 0
    assert AnswerVocab.from_dict(sound.to_dict()).closed == sound.closed


def test_hold_out_is_stratified_and_stable() -> None:
    records = [_record(str(i), "yes", "CLOSED" if i % 3 else "OPEN") for i in range(300)]
    held = hold_out_validation(records, 0.1, seed=0)
    val = [r for r in held if r.split == "val"]
    assert len(val) == 30 and sum(r.answer_type == "OPEN" for r in val) == 10
    shuffled = hold_out_validation(list(reversed(records)), 0.1, seed=0)
    assert {r.qid for r in shuffled if r.split == "val"} == {r.qid for r in val}
    assert {r.qid for r in hold_out_validation(records, 0.1, seed=1) if r.split == "val"} != {r.qid for r in val}
