"""Caption-file readers, bad-input errors, skipping of unreadable images, token truncation, metrics."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from clip_testutils import write_images
from torch.utils.data import DataLoader

from infra.errors import UserError
from pubmedclip.data import (
    DataSummary,
    ImageDataset,
    ShardedBatchSampler,
    collate,
    drop_missing,
    read_labelled,
    read_pairs,
    roco_retrieval_subset,
    tokenize_captions,
)
from pubmedclip.metrics import retrieval_metrics
from pubmedclip.models import arch_config, image_transform, make_tokenizer


def test_real_roco_captions_and_the_2000_pair_preset(data_root: Path, tmp_path: Path) -> None:
    source = data_root / "roco" / "test" / "radiology"
    shutil.copy(source / "captions.txt", tmp_path / "captions.txt")
    shutil.copy(source / "dlinks.txt", tmp_path / "dlinks.txt")
    (tmp_path / "images").mkdir()
    pairs = read_pairs(tmp_path)
    assert len(pairs) == 8179 and pairs[0].id == "ROCO_00001" and pairs[0].caption == "Axial MRI (coronal view)."
    assert pairs[0].image == tmp_path / "images" / "cro-0008-0385-g01.jpg"
    subset = roco_retrieval_subset(pairs)
    assert len(subset) == 2000 and all(len(p.caption.split()) >= 3 for p in subset)
    eligible = [p for p in pairs if len(p.caption.split()) >= 3]
    random.Random(42).shuffle(eligible)
    assert subset == eligible[:2000]
    summary = DataSummary()
    tokenizer = make_tokenizer(arch_config("tiny-vit"))
    tokens = tokenize_captions(tokenizer, [p.caption for p in subset], summary)
    untruncated = tokenizer([p.caption for p in subset], context_length=1000)  # [2000, 1000]
    assert tokens.shape == (2000, 77) and 0 < summary.truncated_captions < 2000
    assert int(((untruncated != 0).sum(dim=1) > 77).sum()) == summary.truncated_captions
    assert drop_missing(pairs, summary) == [] and summary.missing_images == 8179


def test_pubmedclip_csv_generic_csv_and_jsonl(tmp_path: Path) -> None:
    images = write_images(tmp_path / "radiology" / "images", 3)
    (tmp_path / "radiologytraindata.csv").write_text(
        "id,name,caption\n" + "".join(f'ROCO_{i},{p.name},"caption, number {i}"\n' for i, p in enumerate(images))
    )
    pairs = read_pairs(tmp_path / "radiologytraindata.csv")
    assert [p.image for p in pairs] == images and pairs[1].caption == "caption, number 1"
    (tmp_path / "pairs.tsv").write_text("filepath\ttitle\n" + f"radiology/images/{images[0].name}\ta scan\n")
    assert read_pairs(tmp_path / "pairs.tsv")[0].image == images[0]
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"image": images[2].name, "caption": "x"}) + "\n")
    assert read_pairs(tmp_path / "pairs.jsonl", image_root=images[2].parent)[0].image == images[2]


@pytest.mark.parametrize("encoding, line_end", [("utf-8-sig", "\r\n"), ("utf-16", "\r\n"), ("utf-16", "\n")])
def test_caption_files_in_other_encodings_read_the_same(tmp_path: Path, encoding: str, line_end: str) -> None:
    images = write_images(tmp_path / "roco" / "images", 2)
    captions = "".join(f"ROCO_{i}\t Axial CT, größer {i}\n" for i in range(2))
    links = "".join(f"ROCO_{i}\tlink\t{p.name}\n" for i, p in enumerate(images))
    rows = "image,caption\n" + "".join(f'{p.name},"Axial CT, größer {i}"\n' for i, p in enumerate(images))
    lines = json.dumps({"image": images[0].name, "caption": "größer"}) + "\n"
    for name, text in (("captions.txt", captions), ("dlinks.txt", links), ("pairs.csv", rows), ("pairs.jsonl", lines)):
        (tmp_path / "roco" / name).write_text(text)
        (tmp_path / name).write_bytes(text.replace("\n", line_end).encode(encoding))
    (tmp_path / "images").symlink_to(tmp_path / "roco" / "images")
    assert [(p.image.name, p.caption) for p in read_pairs(tmp_path)] == \
        [(p.image.name, p.caption) for p in read_pairs(tmp_path / "roco")]
    for name in ("pairs.csv", "pairs.jsonl"):
        expected = read_pairs(tmp_path / "roco" / name, image_root=images[0].parent)
        assert read_pairs(tmp_path / name, image_root=images[0].parent) == expected
        assert read_labelled(tmp_path / name, image_root=images[0].parent) == \
            read_labelled(tmp_path / "roco" / name, image_root=images[0].parent)
    assert read_pairs(tmp_path / "pairs.csv", image_root=images[0].parent)[1].caption == "Axial CT, größer 1"


def test_malformed_and_missing_inputs_give_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "roco" / "images").mkdir(parents=True)
    (tmp_path / "roco" / "captions.txt").write_text("ROCO_1\t fine\nbroken line without a tab\n")
    with pytest.raises(UserError, match=r"captions.txt:2: expected 'ID<TAB>caption'"):
        read_pairs(tmp_path / "roco")
    (tmp_path / "noimages").mkdir()
    (tmp_path / "noimages" / "captions.txt").write_text("ROCO_1\t fine\n")
    with pytest.raises(UserError, match="image directory not found"):
        read_pairs(tmp_path / "noimages")
    (tmp_path / "bad.csv").write_text("image,caption\na.jpg,one,two\n")
    with pytest.raises(UserError, match=r"bad.csv:2: malformed row"):
        read_pairs(tmp_path / "bad.csv")
    (tmp_path / "nocap.csv").write_text("image,label\na.jpg,x\n")
    with pytest.raises(UserError, match="no caption column"):
        read_pairs(tmp_path / "nocap.csv")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1: not a JSON object"):
        read_pairs(tmp_path / "bad.jsonl")
    with pytest.raises(UserError, match="caption file not found"):
        read_pairs(tmp_path / "absent.csv")


def test_unreadable_images_are_skipped_and_counted(tmp_path: Path) -> None:
    paths = write_images(tmp_path, 5)
    paths[1].write_bytes(b"not a jpeg")
    paths[3].write_bytes(paths[3].read_bytes()[:100])  # truncated file
    dataset = ImageDataset(
        paths,
        image_transform({"size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic"}),
        torch.zeros(5, 77, dtype=torch.long),
    )
    batches = list(DataLoader(dataset, batch_size=5, collate_fn=collate))
    assert batches[0].skipped == 2 and batches[0].index.tolist() == [0, 2, 4]
    assert batches[0].images.shape == (3, 3, 32, 32) and batches[0].tokens.shape == (3, 77)


def test_default_training_transform_never_flips() -> None:
    pp = {"size": 8, "mean": [0.0] * 3, "std": [1.0] * 3, "interpolation": "bilinear"}
    names = [type(t).__name__ for t in image_transform(pp, train=True).transforms]
    assert "RandomHorizontalFlip" not in names
    assert "RandomHorizontalFlip" in [type(t).__name__ for t in image_transform(pp, True, hflip=True).transforms]


def test_sharded_batches_union_to_the_single_process_batches() -> None:
    single = list(ShardedBatchSampler(10, 4, 0, 1, seed=3))
    shards = [list(ShardedBatchSampler(10, 4, rank, 2, seed=3)) for rank in (0, 1)]
    assert [a + b for a, b in zip(*shards)] == single and len(single) == 2


def test_slake_labels(data_root: Path) -> None:
    records = read_labelled(data_root / "slake" / "Slake1.0")
    test = [r for r in records if r.split == "test"]
    train = {r.image for r in records if r.split == "train"}
    assert len(test) == 96 and {r.labels["modality"] for r in test} == {"CT", "MRI", "X-Ray"}
    assert not train & {r.image for r in test}  # English splits share no image (all languages would share 142)
    assert all(r.image.is_file() for r in test[:20])


def _naive_recall(sim: torch.Tensor, k: int) -> float:
    return 100.0 * sum(int(i in sim[i].topk(k).indices.tolist()) for i in range(sim.shape[0])) / sim.shape[0]


def test_retrieval_metrics_match_a_naive_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    images, texts = torch.randn(50, 8, generator=generator), torch.randn(50, 8, generator=generator)
    metrics = retrieval_metrics(images, texts)
    sim = torch.nn.functional.normalize(images, dim=-1) @ torch.nn.functional.normalize(texts, dim=-1).T
    for k in (1, 5, 10):
        assert metrics[f"i2t_R@{k}"] == pytest.approx(_naive_recall(sim, k))
        assert metrics[f"t2i_R@{k}"] == pytest.approx(_naive_recall(sim.T, k))
    perfect = retrieval_metrics(images, images)
    assert perfect["i2t_R@1"] == 100.0 and perfect["t2i_median_rank"] == 1.0
    tied = retrieval_metrics(images[:2], images[[1, 0]], captions=["same", "same"])  # identical captions
    assert tied["i2t_R@1"] == 100.0
