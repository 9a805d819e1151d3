"""The encoder study's speed: cached frozen-CLIP features, feature extraction, and the grid's overhead per cell.

    python experiments/bench_study.py [--arch ViT-B/32] [--images 64] [--epochs 20] [--threads 1] [--out DIR]

On the built-in synthetic dataset with a random CLIP tower of ``--arch`` (no download: the speed of a
tower does not depend on its weights), it prints three figures, each against a baseline measured in the
same run:

1. a frozen-CLIP VQA epoch (MEVF-BAN, CLIP beside the CDAE) reading the cached features, against the same
   epoch (same model and optimizer state, same batches) running the tower on every step (target >= 20x);
   the two epochs' losses are printed too: equal features, equal losses;
2. feature extraction into the feature cache (``frozen_features``: batching, encoding, storing) against
   the bare forward pass of the tower over the same images and batch size (target >= 0.9x);
3. a one-cell ``medvqa grid`` of a 20-epoch MEVF-BAN run: the time outside its training epochs (planning,
   building, evaluation, the cell record and the report) against the epochs' time (target < 10 %).
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from data_prep.datasets import DATASETS
from data_prep.prepare import PrepareOptions, prepare
from infra.feature_cache import FeatureCache
from medvqa.config import load_config
from medvqa.experiment import build_experiment
from medvqa.grid.cli import main as grid_main
from medvqa.grid.cli import write_grid_report
from medvqa.grid.spec import load_grid
from medvqa.models.visual import frozen_features, images_to_tensor
from medvqa.train import parameter_groups, train_one_epoch
from pubmedclip.checkpoints import export_pubmedclip
from pubmedclip.models import random_clip

ROOT = Path(__file__).resolve().parents[1]


def cached_against_tower(config_path: Path) -> None:
    """One training epoch with the CLIP features cached, then the same epoch running the tower each step."""
    exp = build_experiment(load_config(config_path))
    clip = exp.model.visual.encoders["clip"]
    optimizer = torch.optim.Adamax(parameter_groups(exp.model, exp.config), lr=exp.config.train.lr)
    model_state, optimizer_state = copy.deepcopy(exp.model.state_dict()), copy.deepcopy(optimizer.state_dict())
    rng = torch.get_rng_state()  # the same dropout masks in both epochs
    began = time.perf_counter()
    cached = train_one_epoch(exp, optimizer, 0)
    cached_seconds = time.perf_counter() - began

    exp.model.load_state_dict(model_state)
    optimizer.load_state_dict(optimizer_state)
    torch.set_rng_state(rng)
    spec = clip.input_spec
    del exp.visual.features["clip"]
    exp.visual.images[spec.key] = images_to_tensor(exp.ds.images(spec.key), spec)  # the tower reads images
    began = time.perf_counter()
    tower = train_one_epoch(exp, optimizer, 0)
    tower_seconds = time.perf_counter() - began
    print(f"1. frozen-CLIP epoch ({len(exp.splits['train'])} QA): cached features {cached_seconds:.2f} s, tower each "
          f"step {tower_seconds:.2f} s: {tower_seconds / cached_seconds:.1f}x faster (target >= 20x); losses "
          f"{cached['train_loss']:.5f} / {tower['train_loss']:.5f}")


def extraction_against_forward(checkpoint: Path, data_dir: Path, cache_dir: Path, batch_size: int = 64) -> None:
    """Images per second of ``frozen_features`` into an empty cache against the bare forward pass."""
    from medvqa.data import PreparedDataset
    from medvqa.models import create_encoder

    encoder = create_encoder("clip", {"weights": str(checkpoint)})
    encoder.freeze()
    ds = PreparedDataset(data_dir)
    images = images_to_tensor(ds.images(encoder.input_spec.key), encoder.input_spec)
    rows = {image_id: row for row, image_id in enumerate(ds.image_ids)}
    with torch.no_grad():
        encoder.encode(images[:batch_size])  # warm-up, for both
        began = time.perf_counter()
        for start in range(0, len(images), batch_size):
            encoder.encode(images[start:start + batch_size])
        bare = len(images) / (time.perf_counter() - began)
    began = time.perf_counter()
    frozen_features(encoder, FeatureCache(cache_dir), ds.image_ids, lambda ids: images[[rows[i] for i in ids]],
                    ds.digest(f"images:{encoder.input_spec.key}"), batch_size)
    extraction = len(images) / (time.perf_counter() - began)
    print(f"2. feature extraction {extraction:.1f} images/s, bare forward {bare:.1f} images/s: "
          f"{extraction / bare:.2f}x (target >= 0.9x)")


def grid_overhead(grid_file: Path, out: Path) -> None:
    """Wall time of a one-cell grid against the training epochs of its cell."""
    began = time.perf_counter()
    grid_main(["--grid", str(grid_file), "--out", str(out)])
    total = time.perf_counter() - began
    cell = json.loads(next(out.glob("cells/*/*/*/*/cell.json")).read_text())
    began = time.perf_counter()
    write_grid_report(load_grid(grid_file, out), out)
    report = time.perf_counter() - began
    overhead = total - cell["train_seconds"]
    print(f"3. grid cell of {cell['epochs']} epochs: epochs {cell['train_seconds']:.1f} s, everything else "
          f"{overhead:.1f} s (of which the report {report:.1f} s): {100 * overhead / cell['train_seconds']:.1f} % "
          f"(target < 10 %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="ViT-B/32", help="CLIP architecture of the random tower")
    parser.add_argument("--images", type=int, default=64, help="synthetic images")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the grid's cell")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_study-"))
    torch.manual_seed(0)
    loaded = random_clip(args.arch)
    checkpoint = export_pubmedclip(loaded, out / "clip.pth")
    data_dir = out / "data"
    if not (data_dir / "summary.json").is_file():
        prepare("synthetic", data_dir, PrepareOptions(
            image_specs=["gray84", "gray128", f"rgb{loaded.preprocess['size']}"],
            dataset_options=DATASETS.settings("synthetic", {"images": args.images})))
    print(f"torch {torch.__version__}, {args.threads} thread(s); {args.arch} tower, {args.images} synthetic images")

    head = {"data": {"root": str(data_dir)},
            "model": {"name": "mevf_ban", "visual": ["clip", "cdae"], "freeze_visual": True,
                      "head": {"hidden_dim": 128}, "encoders": {"clip": {"weights": str(checkpoint)}}},
            "train": {"epochs": args.epochs, "warmup": [], "decay_epochs": [], "seed": 0, "threads": args.threads,
                      "feature_cache": str(out / "features"), "progress": False}}
    config_path = out / "head.yaml"
    config_path.write_text(yaml.safe_dump(head, sort_keys=False))
    cached_against_tower(config_path)
    extraction_against_forward(checkpoint, data_dir, out / "extraction_cache")
    grid = {"title": "overhead", "datasets": {"synthetic": str(data_dir)}, "heads": {"mevf_ban": str(config_path)},
            "encoders": {"maml+cdae": {"freeze": True}}, "seeds": [0]}
    (out / "grid.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    grid_overhead(out / "grid.yaml", out / "grid")


if __name__ == "__main__":
    main()
