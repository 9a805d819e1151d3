"""Fine-tuning from WebDataset shards (``pubmedclip pmc-oa extract`` output), streamed."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from data_prep.pmc_oa.pipeline import RunSettings, extract
from data_prep.pmc_oa.sources import find_sources
from pubmedclip.cli import main
from pubmedclip.config import load_config
from pubmedclip.data import ShardStream, count_shard_pairs, find_shards, iter_shard_samples, read_pairs, unpack_shards
from pubmedclip.models import image_transform, random_clip


@pytest.fixture(scope="module")
def shard_dir(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 11 figure-caption pairs of the real OA packages, two per shard (6 shards)."""
    out = tmp_path_factory.mktemp("pmc_shards")
    extract(find_sources(data_root / "pmc_oa" / "packages"), out,
            settings=RunSettings(workers=1, show_progress=False), shard_size=2)
    return out


def test_samples_and_counts(shard_dir: Path) -> None:
    shards = find_shards(shard_dir)
    assert len(shards) == 6 and count_shard_pairs(shards) == 11
    (shard_dir / "pairs.jsonl").rename(shard_dir / "pairs.hidden")
    try:
        assert count_shard_pairs(shards) == 11  # from the tar headers
    finally:
        (shard_dir / "pairs.hidden").rename(shard_dir / "pairs.jsonl")
    keys = [key for shard in shards for key, _, _ in iter_shard_samples(shard)]
    index = [json.loads(line)["key"] for line in (shard_dir / "pairs.jsonl").read_text().splitlines()]
    assert keys == index
    assert find_shards(shard_dir / "pairs.jsonl") == []


def test_ranks_and_workers_split_the_shards(shard_dir: Path) -> None:
    shards = find_shards(shard_dir)
    loaded = random_clip("tiny-vit")
    transform = image_transform(loaded.preprocess)
    streams = [ShardStream(shards, 11, transform, loaded.tokenizer, 2, rank, 2, seed=3) for rank in range(2)]
    assert [len(s) for s in streams] == [2, 2]  # 11 // (2 per process * 2 processes)
    # 2 processes x 2 loader workers = 4 slots; slot s reads the epoch's shards s, s + 4, ... (wrapping around)
    passes = [list(itertools.islice(streams[slot // 2].shard_cycle(slot, 4), 2)) for slot in range(4)]
    assert {p[0] for p in passes} | {passes[0][1], passes[1][1]} == set(shards)
    assert passes[2][1] == passes[0][0]
    loader = DataLoader(streams[1], batch_size=None, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2 and all(b.images.shape == (2, 3, 32, 32) and b.tokens.shape == (2, 77) for b in batches)
    streams[0].set_epoch(1)
    epoch_1 = list(itertools.islice(streams[0].shard_cycle(0, 1), 6))
    streams[0].set_epoch(2)
    epoch_2 = list(itertools.islice(streams[0].shard_cycle(0, 1), 6))
    assert sorted(epoch_1) == sorted(epoch_2) == shards and epoch_1 != epoch_2


def test_finetune_trains_on_the_shards(shard_dir: Path, data_root: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    index = (data_root / "roco_images" / "index.tsv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "val.tsv").write_text("\n".join(index[:9]) + "\n", encoding="utf-8")
    config = {
        "model": {"arch": "tiny-vit", "load_pretrained": False},
        "data": {"train": str(shard_dir), "val": str(tmp_path / "val.tsv"),
                 "val_image_root": str(data_root / "roco_images"), "num_workers": 0, "shuffle_buffer": 3},
        "train": {"optimizer": "adamw", "lr": 1e-3, "epochs": 1, "batch_size": 4, "eval_batch_size": 8, "device": "cpu"},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    assert main(["finetune", "--config", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "run")]) == 0
    assert "data: 11 train / 8 val pairs" in capsys.readouterr().out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["final"]["epoch"] == 1 and results["data"]["train"]["pairs"] == 11
    assert torch.isfinite(torch.tensor(results["final"]["train_loss"]))


def test_shipped_config_is_valid() -> None:
    cfg = load_config(Path(__file__).parents[2] / "configs" / "pubmedclip" / "pmc_oa_vit_b32.yaml")
    assert cfg.data.train == "data/pmc_oa/shards" and cfg.data.shuffle_buffer == 2000


def test_webdataset_reads_the_shards(shard_dir: Path) -> None:
    import webdataset

    urls = [str(p) for p in find_shards(shard_dir)]
    samples = list(webdataset.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("__key__", "jpg", "txt", "json"))
    assert len(samples) == 11
    key, image, caption, meta = samples[0]
    assert meta["key"] == key and meta["caption"] == caption and image.size == (meta["width"], meta["height"])


def test_read_pairs_unpacks_a_shard_folder_once(shard_dir: Path, tmp_path: Path) -> None:
    pairs = unpack_shards(shard_dir, tmp_path)
    samples = [(key, image, caption) for shard in find_shards(shard_dir) for key, image, caption in iter_shard_samples(shard)]
    assert [(p.id, p.image.read_bytes(), p.caption) for p in pairs] == samples
    stamps = [p.image.stat().st_mtime_ns for p in pairs]
    assert [p.image.stat().st_mtime_ns for p in unpack_shards(shard_dir, tmp_path)] == stamps  # cached, not rewritten
    assert len(list(tmp_path.iterdir())) == 1
    assert [p.id for p in read_pairs(shard_dir)] == [p.id for p in pairs]  # read_pairs takes a shard folder too
