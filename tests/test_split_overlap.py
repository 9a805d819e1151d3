"""experiments/split_overlap.py: the share of evaluation QA that overlaps training."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvqa.cli import main as medvqa_main
from medvqa.data import PreparedDataset, VQARecord, normalize_answer


@pytest.fixture(scope="module")
def split_overlap(experiment):
    return experiment("split_overlap")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("overlap") / "synthetic"
    assert medvqa_main(["prepare", "synthetic", "--out", str(out), "--synthetic-images", "16",
                        "--image-specs", "gray84"]) == 0
    return out


def test_same_image_same_answer_share(split_overlap, data: Path) -> None:
    ds = PreparedDataset(data)
    seen = {(r.image_id, normalize_answer(r.answer)) for r in ds.records("train")}
    lines = split_overlap.overlap_table(ds)
    assert [line["split"] for line in lines] == ["val", "test"]
    for line in lines:
        records = ds.records(line["split"])
        expected = 100 * sum((r.image_id, normalize_answer(r.answer)) in seen for r in records) / len(records)
        assert line["all"] == pytest.approx(expected) and line["QA"] == len(records)
    assert lines[0]["all"] > 0  # synthetic validation QA share images and answers with training


def test_shares_by_answer_type(split_overlap) -> None:
    records = [VQARecord(str(i), "img", "q", "a", kind, "PRES", "test") for i, kind in
               enumerate(["OPEN", "OPEN", "CLOSED", "CLOSED", "CLOSED"])]
    flags = {"0": True, "1": False, "2": True, "3": True, "4": False}
    share = split_overlap.shares(records, lambda r: flags[r.qid])
    assert share == {"all": 60.0, "OPEN": 50.0, "CLOSED": pytest.approx(200 / 3)}


def test_question_groups_link_wordings_across_splits(split_overlap, data: Path, tmp_path: Path, capsys) -> None:
    ds = PreparedDataset(data)
    train, test = ds.records("train")[0], ds.records("test")[0]
    raw = [{"qid_linked_id": "g1", "image_name": train.image_id, "question": train.question,
            "question_rephrase": "NULL"},
           {"qid_linked_id": "g1", "image_name": test.image_id, "question": f"  {test.question.upper()} "}]
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    groups = split_overlap.question_groups(tmp_path / "raw.json")
    linked = [line for line in split_overlap.overlap_table(ds, groups) if line["overlap"].startswith("question group")]
    test_line = next(line for line in linked if line["split"] == "test")
    assert test_line["all"] == pytest.approx(100 / len(ds.records("test")))  # only the one linked test QA
    assert f"({len(ds.records('test')) - 1} QA unmatched)" in test_line["overlap"]

    (tmp_path / "bad.json").write_text(json.dumps([{"question": "x"}]))
    assert split_overlap.main(["--data", str(data), "--linked", str(tmp_path / "bad.json")]) == 2
    assert "item 0 has no qid_linked_id" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"qid_linked_id": "x"}))
    assert split_overlap.main(["--data", str(data), "--linked", str(tmp_path / "bad.json")]) == 2
    assert "expected a list of QA objects" in capsys.readouterr().err
