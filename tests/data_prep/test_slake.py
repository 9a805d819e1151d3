"""SLAKE 1.0: English split counts, language selection, organ / modality fields."""
from __future__ import annotations

import json
from pathlib import Path

from data_prep import slake
from medvqa.data import PreparedDataset


def test_english_counts(prepared_slake: Path) -> None:
    ds = PreparedDataset(prepared_slake)
    assert [len(ds.records(s)) for s in ("train", "val", "test")] == [4919, 1053, 1061]
    assert ds.official_train_splits == ("train",)
    record = ds.records("train")[0]
    assert record.image_id == "xmlab1/source.jpg" and record.modality == "MRI" and record.organ == "Abdomen"
    assert ds.images("gray84").shape == (642, 84, 84)
    summary = json.loads((prepared_slake / "summary.json").read_text())
    assert summary["counts"]["test"]["total"] == 1061 and summary["language"] == "en"


def test_language_selection(data_root: Path) -> None:
    source = data_root / "slake" / "Slake1.0"
    chinese = slake.read(source, language="zh").records
    every = slake.read(source, language="all").records
    assert sum(r.split == "train" for r in every) == 9835
    assert sum(r.split == "train" for r in chinese) == 9835 - 4919


def test_answer_sources(prepared_slake: Path) -> None:
    ds = PreparedDataset(prepared_slake)
    train, with_test = ds.answer_vocab("train"), ds.answer_vocab("train+test")
    assert set(train.all) < set(with_test.all)
    test = ds.records("test")
    assert all(with_test.label(r.answer) is not None for r in test)
