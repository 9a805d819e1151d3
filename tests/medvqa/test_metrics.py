"""Protocol metrics on hand-made predictions: gold vs routed denominators, breakdowns, unanswerable counts."""
import pandas as pd

from medvqa.data import VQARecord
from medvqa.metrics import accuracy, breakdown, prediction_frame, summarize


def _record(qid, answer, answer_type, qtype="PRES", phrase="freeform", organ="CHEST"):
    return VQARecord(qid=qid, image_id="i.jpg", question="q?", answer=answer, answer_type=answer_type,
                     question_type=qtype, split="test", phrase_type=phrase, organ=organ)


RECORDS = [
    _record("1", "Yes", "CLOSED"),
    _record("2", "no", "CLOSED", qtype="POS, PRES"),
    _record("3", "left lung", "OPEN", qtype="POS", phrase="para", organ="HEAD"),
    _record("4", "the x-ray", "OPEN", qtype="MODALITY", organ="HEAD"),
    _record("5", "rare", "OPEN", qtype="ABN"),
]
ANSWERS = {"yes", "no", "left lung", "xray"}


def test_prediction_frame_normalises_gold_answers():
    frame = prediction_frame(RECORDS, ["yes", "yes", "left lung", "xray", "yes"],
                             ["CLOSED", "CLOSED", "OPEN", "OPEN", "OPEN"], ANSWERS)
    assert frame["answer"].tolist() == ["yes", "no", "left lung", "xray", "rare"]
    assert frame["correct"].tolist() == [True, False, True, True, False]
    assert frame["answerable"].tolist() == [True, True, True, True, False]


def test_gold_and_routed_denominators_differ():
    # question 3 (open) is routed to the closed branch by a type classifier
    frame = prediction_frame(RECORDS, ["yes", "no", "yes", "xray", "yes"],
                             ["CLOSED", "CLOSED", "CLOSED", "OPEN", "OPEN"], ANSWERS)
    gold = accuracy(frame, by="answer_type")
    routed = accuracy(frame, by="route")
    assert (gold["n_closed"], gold["n_open"]) == (2, 3)
    assert (routed["n_closed"], routed["n_open"]) == (3, 2)
    assert gold["closed"] == 100.0 and gold["open"] == round(100 / 3, 2)
    assert routed["closed"] == round(200 / 3, 2) and routed["open"] == 50.0
    assert gold["overall"] == routed["overall"] == 60.0
    summary = summarize(frame)
    assert summary["n_misrouted"] == 1 and summary["n_unanswerable"] == 1


def test_breakdowns_split_comma_joined_question_types():
    frame = prediction_frame(RECORDS, ["yes", "no", "x", "x", "x"], ["CLOSED"] * 2 + ["OPEN"] * 3, ANSWERS)
    by_type = breakdown(frame, "question_type")
    assert by_type["PRES"]["n"] == 2 and by_type["PRES"]["overall"] == 100.0
    assert by_type["POS"]["n"] == 2 and by_type["POS"]["overall"] == 50.0
    summary = summarize(frame)
    assert summary["by_phrase_type"]["para"]["n"] == 1
    assert summary["by_organ"]["HEAD"]["n"] == 2
    assert "by_modality" not in summary  # empty column: no table


def test_empty_branch_reports_none():
    frame = pd.DataFrame({"route": ["CLOSED"], "answer_type": ["CLOSED"], "correct": [True]})
    assert accuracy(frame)["open"] is None and accuracy(frame)["n_open"] == 0
