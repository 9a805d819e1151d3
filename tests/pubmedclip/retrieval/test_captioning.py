"""The captioning evaluation on real ROCO images: the sound protocol never retrieves an image's own caption, the
MedCLIP protocol keeps ranks 1, 6 and 11 with the own caption in the pool, and both baselines are reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.errors import UserError
from pubmedclip.data import Pair
from pubmedclip.encoder import ImageEncoder
from pubmedclip.retrieval.bank import Caption, read_captions
from pubmedclip.retrieval.captioning import evaluate_captioning, excluded_rows


def test_sound_protocol_excludes_own_caption_by_id_and_by_text() -> None:
    pairs = [Pair(Path("a.jpg"), "Axial CT of the chest", "A"), Pair(Path("b.jpg"), "MRI", "B")]
    bank = [Caption("A", "axial ct of the chest"), Caption("X", "Axial  CT of the CHEST"), Caption("B", "other"),
            Caption("Y", "mri of the knee")]
    assert excluded_rows(pairs, bank, "sound") == [{0, 1}, {2}]
    assert excluded_rows(pairs, bank, "medclip") == [set(), set()]


def test_sound_protocol_on_real_images(encoder: ImageEncoder, roco: Path, tmp_path: Path) -> None:
    result = evaluate_captioning(encoder, roco, per_image=tmp_path / "out.jsonl", resamples=100, java=False)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert result["n_images"] == len(rows) == 16 and result["bank"]["captions"] == 16
    assert result["bank"]["own_caption"] == "excluded" and result["bank"]["own_caption_at_rank_1"] == 0
    for row in rows:
        assert len(row["retrieved"]) == 5
        assert all(hit["id"] != row["image_id"] and hit["caption"] != row["reference"] for hit in row["retrieved"])
        scores = [hit["score"] for hit in row["retrieved"]]
        assert scores == sorted(scores, reverse=True)
    assert set(result["systems"]) == {"clip", "random", "pixel-nn"}
    for figures in result["systems"].values():
        for metric in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"):
            low, high = figures[metric]["ci95"]
            assert low <= figures[metric]["value"] + 1e-9 and figures[metric]["value"] <= high + 1e-9
    assert set(result["retrieval"]) == {f"{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}


def test_medclip_protocol_is_labelled_and_keeps_ranks_1_6_11(encoder: ImageEncoder, roco: Path, tmp_path: Path) -> None:
    result = evaluate_captioning(encoder, roco, protocol="medclip", per_image=tmp_path / "m.jsonl", resamples=50,
                                 java=False)
    assert result["protocol"] == "medclip" and "MedCLIP" in result["protocol_description"]
    assert result["bank"]["own_caption"] == "in the pool" and result["kept_ranks"] == [1, 6, 11]
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert all([hit["rank"] for hit in row["retrieved"]] == [1, 6, 11] for row in rows)


def test_external_bank_and_bad_input(encoder: ImageEncoder, roco: Path, data_root: Path, tmp_path: Path) -> None:
    lines = (data_root / "roco" / "validation" / "radiology" / "captions.txt").read_text().splitlines()[:300]
    bank = tmp_path / "captions.txt"  # real ROCO validation captions, without images
    bank.write_text("\n".join(lines) + "\n")
    result = evaluate_captioning(encoder, roco, bank=bank, k=3, resamples=20, java=False)
    assert result["bank"]["captions"] == 300 and "pixel-nn" in result["baselines_left_out"]
    assert set(result["systems"]) == {"clip", "random"}
    with pytest.raises(UserError, match="unknown captioning protocol"):
        evaluate_captioning(encoder, roco, protocol="best")
    (tmp_path / "none.csv").write_text("image,caption\nmissing.jpg,a chest ct\n")
    with pytest.raises(UserError, match="no image-caption pairs with an existing image"):
        evaluate_captioning(encoder, tmp_path / "none.csv")


def test_captioning_on_pmc_oa_shards(encoder: ImageEncoder, data_root: Path, tmp_path: Path) -> None:
    """The figure-caption shards ``pubmedclip pmc-oa extract`` writes from the real OA packages are a test set too."""
    from data_prep.pmc_oa.pipeline import RunSettings, extract
    from data_prep.pmc_oa.sources import find_sources

    shards = tmp_path / "shards"
    extract(find_sources(data_root / "pmc_oa" / "packages"), shards, settings=RunSettings(workers=1, show_progress=False))
    result = evaluate_captioning(encoder, shards, per_image=tmp_path / "pmc.jsonl", k=3, resamples=20, java=False)
    rows = [json.loads(line) for line in (tmp_path / "pmc.jsonl").read_text().splitlines()]
    assert result["n_images"] == len(rows) == 11 and result["bank"]["own_caption"] == "excluded"
    assert all(hit["id"] != row["image_id"] for row in rows for hit in row["retrieved"])
    assert [c.id for c in read_captions(shards)] == [json.loads(line)["key"]
                                                     for line in (shards / "pairs.jsonl").read_text().splitlines()]
