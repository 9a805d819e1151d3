"""The embedding index: search equals brute force (FAISS, chunked torch, approximate at full probe), exclusions,
resuming an interrupted build, and refusing another model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infra.errors import UserError
from pubmedclip.encoder import ImageEncoder
from pubmedclip.models import LoadedClip
from pubmedclip.retrieval import index as index_module
from pubmedclip.retrieval.bank import Caption, read_captions
from pubmedclip.retrieval.index import EmbeddingIndex, build_caption_index, build_image_index, search_exact_torch

WORDS = "chest ct mri brain axial lung mass lesion left right x-ray scan shows fracture effusion".split()


def captions(n: int, seed: int = 0) -> list[Caption]:
    rng = np.random.default_rng(seed)
    return [Caption(f"c{i}", " ".join(rng.choice(WORDS, 6)) + f" {i}") for i in range(n)]


@pytest.fixture(scope="module")
def bank(loaded: LoadedClip, tmp_path_factory: pytest.TempPathFactory) -> EmbeddingIndex:
    return build_caption_index(loaded, captions(300), tmp_path_factory.mktemp("idx") / "bank", chunk_size=128)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


def test_search_equals_brute_force_on_every_backend(bank: EmbeddingIndex) -> None:
    queries = index_module.unit_rows(np.random.default_rng(1).standard_normal((7, bank.dim)))
    expected = brute_force(np.asarray(bank.vectors), queries, 10)
    for backend in ("faiss", "torch"):
        scores, rows = bank.search(queries, 10, backend=backend)
        np.testing.assert_array_equal(rows, expected)
        np.testing.assert_allclose(scores, np.take_along_axis(queries @ np.asarray(bank.vectors).T, expected, 1),
                                   atol=1e-5)
    assert [item["id"] for item in bank.items[:2]] == ["c0", "c1"] and bank.count == 300


def test_torch_search_in_many_blocks(bank: EmbeddingIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "SCORE_BLOCK_BYTES", 1)  # 1,024-row blocks: force several on a bigger bank
    rng = np.random.default_rng(2)
    vectors = index_module.unit_rows(rng.standard_normal((5000, 16)))
    file = bank.folder.parent / "random.f32"
    vectors.tofile(file)
    queries = index_module.unit_rows(rng.standard_normal((4, 16)))
    scores, rows = search_exact_torch(file, 5000, 16, queries, 20)
    np.testing.assert_array_equal(rows, brute_force(vectors, queries, 20))


def test_exclusions_are_never_returned(bank: EmbeddingIndex) -> None:
    queries = np.asarray(bank.vectors[:5])  # each query's best match is its own row
    banned = [{q, q + 1} for q in range(5)]
    for backend in ("faiss", "torch"):
        _, rows = bank.search(queries, 5, exclude=banned, backend=backend)
        assert all(not (set(rows[q]) & banned[q]) for q in range(5))
    _, rows = bank.search(queries, 1)
    assert rows[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_approximate_index_at_full_probe_equals_exact(loaded: LoadedClip, bank: EmbeddingIndex, tmp_path: Path) -> None:
    approx = build_caption_index(loaded, captions(300), tmp_path / "ivf", approximate=True)
    assert approx.manifest["approximate"] and (tmp_path / "ivf" / "ivf.faiss").is_file()
    queries = np.asarray(bank.vectors[10:14])
    _, exact = bank.search(queries, 5, backend="torch")
    _, rows = approx.search(queries, 5, nprobe=10_000)
    np.testing.assert_array_equal(rows, exact)


def test_interrupted_build_resumes_where_it_stopped(loaded: LoadedClip, bank: EmbeddingIndex, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = index_module.encode_texts

    def failing(model, texts, *args, **kwargs):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(model, texts, *args, **kwargs)

    monkeypatch.setattr(index_module, "encode_texts", failing)
    with pytest.raises(KeyboardInterrupt):
        build_caption_index(loaded, captions(300), tmp_path / "bank", chunk_size=128)
    assert json.loads((tmp_path / "bank" / "progress.json").read_text())["done"] == 128
    with pytest.raises(UserError, match="did not finish"):
        EmbeddingIndex(tmp_path / "bank")
    resumed = build_caption_index(loaded, captions(300), tmp_path / "bank", chunk_size=128)
    assert calls == [128, 128, 128, 44]  # the first chunk was not encoded again
    np.testing.assert_allclose(np.asarray(resumed.vectors), np.asarray(bank.vectors), atol=1e-6)
    assert not (tmp_path / "bank" / "progress.json").exists()


def test_another_checkpoint_invalidates_the_index(bank: EmbeddingIndex, other_checkpoint: Path, loaded: LoadedClip) -> None:
    other = ImageEncoder(other_checkpoint).loaded
    bank.check_model(loaded)
    with pytest.raises(UserError, match="built with another model"):
        bank.check_model(other)
    with pytest.raises(UserError, match="already holds an index"):
        build_caption_index(other, captions(300), bank.folder)
    assert build_caption_index(loaded, captions(300), bank.folder).count == 300  # same inputs: reused as is


def test_image_index_skips_undecodable_images(encoder: ImageEncoder, roco_image_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for link in sorted(roco_image_dir.iterdir())[:3]:
        (folder / link.name).symlink_to(link.resolve())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    paths = sorted(folder.iterdir())
    index = build_image_index(encoder, paths, tmp_path / "idx", root=folder)
    assert index.count == 3 and index.manifest["skipped"] == ["broken.jpg"]
    assert "broken.jpg" not in [item["id"] for item in index.items]
    expected, _ = encoder.encode_files([folder / item["id"] for item in index.items])
    np.testing.assert_allclose(np.asarray(index.vectors), index_module.unit_rows(expected), atol=1e-6)


def test_caption_files_and_their_errors(tmp_path: Path) -> None:
    (tmp_path / "captions.txt").write_text("ROCO_1\t a chest ct\n\nROCO_2\t axial mri\n")
    assert read_captions(tmp_path) == [Caption("ROCO_1", "a chest ct"), Caption("ROCO_2", "axial mri")]
    (tmp_path / "bank.jsonl").write_text('{"caption": "x-ray of the hand"}\n{"caption": "  "}\n')
    assert read_captions(tmp_path / "bank.jsonl") == [Caption("0", "x-ray of the hand")]
    (tmp_path / "empty.csv").write_text("id,caption\n")
    with pytest.raises(UserError, match="empty.csv: no captions"):
        read_captions(tmp_path / "empty.csv")
    (tmp_path / "dup.csv").write_text("id,caption\na,one\na,two\n")
    with pytest.raises(UserError, match="'a' occurs twice"):
        read_captions(tmp_path / "dup.csv")
    with pytest.raises(UserError, match="not an index"):
        EmbeddingIndex(tmp_path)
