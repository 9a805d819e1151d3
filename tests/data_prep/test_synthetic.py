"""The built-in synthetic dataset: deterministic, ROCO-style captions, and learnable."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from data_prep.prepare import PrepareOptions, prepare
from data_prep.synthetic import SyntheticOptions, generate
from medvqa.data import PreparedDataset


@pytest.fixture(scope="module")
def prepared_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "data"
    prepare("synthetic", out, PrepareOptions(image_specs=["gray84", "gray128"], dataset_options=SyntheticOptions(160)))
    return out


def test_deterministic_by_seed() -> None:
    first, again, other = generate(12, seed=3), generate(12, seed=3), generate(12, seed=4)
    assert first.records == again.records and first.captions == again.captions
    image_id = first.records[0].image_id
    assert np.array_equal(np.asarray(first.open_image(image_id)), np.asarray(again.open_image(image_id)))
    assert first.records != other.records


def test_question_mix() -> None:
    records = generate(60, seed=0).records
    types = Counter(r.question_type for r in records)
    assert {"PRES", "COUNT", "POS", "SIZE", "MODALITY", "ORGAN"} <= set(types)
    answer_types = Counter(r.answer_type for r in records)
    assert 0.35 < answer_types["CLOSED"] / len(records) < 0.65
    assert {r.modality for r in records} == {"CT", "MRI", "X-Ray"}


def test_prepared_layout_and_captions(prepared_synthetic: Path) -> None:
    ds = PreparedDataset(prepared_synthetic)
    assert ds.name == "synthetic" and all(ds.records(s) for s in ("train", "val", "test"))
    test_images = {r.image_id for r in ds.records("test")}
    assert not test_images & {r.image_id for r in ds.records("train")}
    captions = (prepared_synthetic / "captions" / "train" / "radiology" / "captions.txt").read_text().splitlines()
    roco_id, text = captions[0].split("\t")
    assert roco_id.startswith("SYNTH_") and len(text.split()) >= 6
    link = (prepared_synthetic / "captions" / "train" / "radiology" / "dlinks.txt").read_text().splitlines()[0]
    assert (prepared_synthetic / "captions" / "train" / "radiology" / "images" / link.split("\t")[2]).is_file()


def test_learnable_beyond_majority(prepared_synthetic: Path) -> None:
    """A linear model on image pixels and the question clearly beats the majority answer."""
    ds = PreparedDataset(prepared_synthetic)
    images = ds.images("gray84").astype(np.float32).reshape(-1, 21, 4, 21, 4).mean((2, 4)).reshape(len(ds.image_ids), -1) / 255
    questions = sorted({r.question for r in ds.all_records})

    def features(records):
        q = np.zeros((len(records), len(questions)), np.float32)
        q[np.arange(len(records)), [questions.index(r.question) for r in records]] = 1
        v = images[[ds.image_row(r.image_id) for r in records]]
        return np.concatenate([q, v, (q[:, :, None] * v[:, None, :].mean(2, keepdims=True)).reshape(len(records), -1)], 1)

    train, test = ds.records("train") + ds.records("val"), ds.records("test")
    model = LogisticRegression(max_iter=300, C=1.0)
    model.fit(features(train), [r.answer for r in train])
    accuracy = float(np.mean(model.predict(features(test)) == np.array([r.answer for r in test])))
    majority = Counter(r.answer for r in train).most_common(1)[0][0]
    baseline = float(np.mean([r.answer == majority for r in test]))
    assert accuracy > baseline + 0.2, (accuracy, baseline)
