"""VQA-RAD: split counts, and exact equality with the published dictionary, vocabularies, targets,
GloVe rows, tf-idf embedding and image index."""
from __future__ import annotations

import json
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_prep import vqa_rad
from data_prep.embeddings import glove_init, load_glove, tfidf_glove_init, tfidf_matrix
from data_prep.text import Dictionary
from medvqa.data import PreparedDataset

CACHE_FILES = [f"cache/{p}_{k}.pkl" for p in ("trainval", "close", "open") for k in ("ans2label", "label2ans")] + [
    f"cache/{s}_{t}.pkl" for s in ("train", "test") for t in ("target", "openclose_target")]


@pytest.fixture(scope="module")
def published(data_root: Path) -> Path:
    return data_root / "vqa_rad" / "data_RAD"


def _load_pickle(path: Path):
    with path.open("rb") as handle:
        return pickle.load(handle)


def test_split_folder_counts(data_root: Path) -> None:
    records = vqa_rad.read(data_root / "vqa_rad").records
    assert sum(r.split == "train" for r in records) == 3064
    test = [r for r in records if r.split == "test"]
    assert len(test) == 451
    assert sum(r.answer_type == "CLOSED" for r in test) == 272
    assert sum(r.raw_answer_type == "CLOSED " for r in records) == 2


def test_raw_release_test_split(data_root: Path) -> None:
    records = vqa_rad.read(data_root / "vqa_rad", layout="raw").records
    test = [r for r in records if r.split == "test"]
    assert len(test) == 451
    assert sum(r.phrase_type == "freeform" for r in test) == 308
    assert sum(r.phrase_type == "para" for r in test) == 143
    assert len(records) - len(test) == 2248 - 451


def test_prepared_counts_and_validation_split(prepared_vqa_rad: Path) -> None:
    ds = PreparedDataset(prepared_vqa_rad)
    train, val = ds.records("train"), ds.records("val")
    assert len(train) + len(val) == 3064 and len(ds.records("test")) == 451
    assert len(val) == 306
    val_closed = sum(r.answer_type == "CLOSED" for r in val) / len(val)
    train_closed = sum(r.answer_type == "CLOSED" for r in train) / len(train)
    assert abs(val_closed - train_closed) < 0.01  # stratified by answer type
    splits = json.loads((prepared_vqa_rad / "splits.json").read_text())
    assert sorted(splits["val_qids"]) == sorted(r.qid for r in val)


def test_dictionary_equals_published(prepared_vqa_rad: Path, published: Path) -> None:
    word2idx, idx2word = _load_pickle(published / "dictionary.pkl")
    ds = PreparedDataset(prepared_vqa_rad)
    assert ds.dictionary.vocabulary == idx2word and len(idx2word) == 1177
    assert {w: i for i, w in enumerate(ds.dictionary.vocabulary)} == word2idx
    unknown = "is the zzyzx visible?"
    assert ds.dictionary.encode(unknown)[2] == 1177 and ds.dictionary.padding_idx == 1178
    legacy = ds.dictionary_with("last-word")
    assert legacy.encode(unknown)[2] == 1176 and legacy.padding_idx == 1177


@pytest.mark.parametrize("name", CACHE_FILES + ["dictionary.pkl"])
def test_legacy_files_equal_published(prepared_vqa_rad: Path, published: Path, name: str) -> None:
    assert _load_pickle(prepared_vqa_rad / "legacy" / name) == _load_pickle(published / name)


def test_legacy_glove_and_image_index(prepared_vqa_rad: Path, published: Path) -> None:
    ours = np.load(prepared_vqa_rad / "legacy" / "glove6b_init_300d.npy")
    assert ours.dtype == np.float32 and np.array_equal(ours, np.load(published / "glove6b_init_300d.npy"))
    assert json.loads((prepared_vqa_rad / "legacy" / "imgid2idx.json").read_text()) == \
        json.loads((published / "imgid2idx.json").read_text())


def test_sound_answer_vocab_strips_answer_type(prepared_vqa_rad: Path) -> None:
    ds = PreparedDataset(prepared_vqa_rad)
    assert (len(ds.answers.all), len(ds.answers.closed), len(ds.answers.open)) == (458, 56, 429)
    published_style = ds.answer_vocab("train", closed_by="raw-type")
    assert len(published_style.open) == 431 and "yes" in published_style.open
    summary = json.loads((prepared_vqa_rad / "summary.json").read_text())
    assert summary["unanswerable_test"]["train"] == {"total": 43, "CLOSED": 6, "OPEN": 37}
    assert summary["unanswerable_test"]["train+test"]["total"] == 0


def test_glove_rows_from_subset(data_root: Path, published: Path) -> None:
    _, idx2word = _load_pickle(published / "dictionary.pkl")
    glove = load_glove(data_root / "glove" / "glove6b_300d_subset.npz")
    ours = glove_init(idx2word, glove)
    reference = np.load(published / "glove6b_init_300d.npy")
    covered = np.array([w in glove for w in idx2word])
    assert covered.sum() > 1000
    np.testing.assert_array_equal(ours[covered], reference[covered])


def test_glove_text_format(tmp_path: Path) -> None:
    vector = " ".join(str(i / 10) for i in range(300))
    (tmp_path / "glove.txt").write_text(f"cat {vector}\ndog {vector}\n")
    table = load_glove(tmp_path / "glove.txt")
    assert set(table) == {"cat", "dog"} and table["cat"][3] == pytest.approx(0.3)


def _published_tfidf_weight(path: Path) -> np.ndarray:
    """``emb_.weight`` from the pickled legacy module, whose class is stood in for."""
    module = types.ModuleType("language_model")
    module.WordEmbedding = type("WordEmbedding", (torch.nn.Module,), {})
    sys.modules.setdefault("language_model", module)
    with pytest.warns(Warning):
        whole = torch.load(path, weights_only=False, map_location="cpu")
    return whole.state_dict()["emb_.weight"].numpy()


def test_tfidf_embedding_matches_published(data_root: Path, published: Path, prepared_vqa_rad: Path) -> None:
    questions = [r["question"] for r in json.loads((published / "trainset.json").read_text())]
    _, idx2word = _load_pickle(published / "dictionary.pkl")
    dictionary = Dictionary(idx2word, unknown="last-word")
    glove = np.load(published / "glove6b_init_300d.npy")
    reference = _published_tfidf_weight(published / "embed_tfidf_weights.pkl")[:1177]
    ours = tfidf_glove_init(tfidf_matrix(questions, dictionary, "published"), glove)
    np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=0)
    corrected = tfidf_glove_init(tfidf_matrix(questions, dictionary, "corrected"), glove)
    assert np.abs(corrected - reference).max() > 0.1
    _, prepared = PreparedDataset(prepared_vqa_rad).word_embeddings("published")
    assert prepared.shape == (1178, 300) and not prepared[-1].any()
    np.testing.assert_allclose(prepared[:1177], reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec,size", [("gray84", 84), ("gray128", 128)])
def test_gray_caches_equal_pil(prepared_vqa_rad: Path, data_root: Path, spec: str, size: int) -> None:
    ds = PreparedDataset(prepared_vqa_rad)
    cache = ds.images(spec)
    assert cache.dtype == np.uint8 and cache.shape == (315, size, size)
    for image_id in ds.image_ids[::40]:
        with Image.open(data_root / "vqa_rad" / "VQA_RAD Image Folder" / image_id) as image:
            expected = np.asarray(image.convert("L").resize((size, size)), dtype=np.float64) / 255
        got = cache[ds.image_row(image_id)].astype(np.float64) / 255
        assert np.abs(got - expected).max() <= 1 / 255


def test_clip_caches_are_resized_and_centre_cropped(prepared_vqa_rad: Path, data_root: Path) -> None:
    ds = PreparedDataset(prepared_vqa_rad)
    image_id = ds.image_ids[0]
    with Image.open(data_root / "vqa_rad" / "VQA_RAD Image Folder" / image_id) as image:
        rgb = image.convert("RGB")
        scale = 224 / min(rgb.size)
        resized = rgb.resize((round(rgb.size[0] * scale), round(rgb.size[1] * scale)), Image.Resampling.BICUBIC)
    left, top = (resized.size[0] - 224) // 2, (resized.size[1] - 224) // 2
    expected = np.asarray(resized.crop((left, top, left + 224, top + 224)), dtype=np.int16)
    got = ds.images("rgb224")[ds.image_row(image_id)].astype(np.int16)
    assert got.shape == (224, 224, 3)
    assert np.abs(got - expected).mean() < 1.0
