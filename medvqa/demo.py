"""``medvqa demo --out DIR``: the encoder study on the built-in synthetic dataset, in minutes on a CPU.

1. prepare the synthetic dataset (radiology-like images, VQA-RAD-style questions, ROCO-style captions);
2. fine-tune a small CLIP (``tiny-vit``) contrastively on the captions of the training images, from a
   random initialisation that is kept as the "untrained CLIP";
3. run the grid ``DIR/study.yaml`` (``medvqa grid``): MEVF-BAN with MAML+CDAE, with the untrained CLIP
   beside the CDAE and with the fine-tuned CLIP beside the CDAE, every visual branch frozen, over seeds;
4. write the report (``DIR/study/report.html``: accuracies with intervals, paired tests against
   MAML+CDAE, breakdowns, curves, example predictions).

Every step is resumable: running the demo again reuses what is finished.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from infra.cli import Parser
from infra.files import write_text_atomic
from medvqa.cli import format_summary

CLIP_ARCH = "tiny-vit"
HEAD_CONFIG = {
    "model": {"name": "mevf_ban", "visual": ["maml", "cdae"], "freeze_visual": True, "head": {"hidden_dim": 128}},
    "train": {"epochs": 12, "batch_size": 32, "lr": 0.005, "warmup": [], "decay_epochs": [], "seed": 0,
              "threads": 1, "progress": False},
}
CLIP_TRAINING = ["train.optimizer=adamw", "train.lr=5.0e-4", "train.weight_decay=0.0", "train.warmup_steps=5",
                 "train.batch_size=32", "train.eval_batch_size=96", "train.device=cpu", "data.num_workers=0"]


def majority_accuracy(train_answers: list[str], test_answers: list[str]) -> float:
    """Accuracy (percent) of always answering the most frequent training answer."""
    majority = max(set(train_answers), key=train_answers.count)
    return 100.0 * sum(answer == majority for answer in test_answers) / len(test_answers)


def prepare_data(data_dir: Path, images: int, clip_size: int) -> dict:
    """The synthetic dataset with the MAML, CDAE and CLIP image caches (reused when already there)."""
    from data_prep.datasets import DATASETS
    from data_prep.prepare import PrepareOptions, prepare

    if (data_dir / "summary.json").is_file():
        print(f"using prepared data in {data_dir}")
        return json.loads((data_dir / "summary.json").read_text())
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    options = PrepareOptions(image_specs=["gray84", "gray128", f"rgb{clip_size}"],
                             dataset_options=DATASETS.settings("synthetic", {"images": images}, where="medvqa demo"))
    return prepare("synthetic", data_dir, options)


def finetune_clip(data_dir: Path, clip_dir: Path, epochs: int) -> tuple[Path, Path]:
    """The untrained CLIP (a seeded random ``tiny-vit``) and the same model fine-tuned on the captions."""
    from pubmedclip.checkpoints import export_pubmedclip
    from pubmedclip.config import load_config
    from pubmedclip.finetune import finetune
    from pubmedclip.models import random_clip

    untrained = clip_dir / "untrained.pth"
    if not untrained.is_file():
        torch.manual_seed(0)
        export_pubmedclip(random_clip(CLIP_ARCH), untrained)
    captions = data_dir / "captions"
    config = load_config(None, [f"model.arch={CLIP_ARCH}", f"model.pretrained={untrained}", f"train.epochs={epochs}",
                                f"data.train={captions / 'train'}", f"data.val={captions / 'validation'}",
                                *CLIP_TRAINING])
    results = finetune(config, clip_dir / "finetune")
    print(f"CLIP fine-tuned on the captions: validation mean R@K {results['untrained'].get('val_mean_recall', 0):.1f} "
          f"untrained -> {results['best']['val_mean_recall']:.1f} (epoch {results['best_epoch']})")
    return untrained, clip_dir / "finetune" / "checkpoints" / "best.pt"


def study_grid(data_dir: Path, head_config: Path, untrained: Path, finetuned: Path, seeds: list[int],
               epochs: int) -> dict:
    return {
        "title": "Encoder study on the built-in synthetic dataset (MEVF-BAN, frozen visual branches)",
        "datasets": {"synthetic": str(data_dir)},
        "heads": {"mevf_ban": str(head_config)},
        "encoders": {"maml+cdae": {},
                     "clip_untrained+cdae": {"clip": str(untrained), "cdae": True, "freeze": True},
                     "clip_finetuned+cdae": {"clip": str(finetuned), "cdae": True, "freeze": True}},
        "seeds": seeds,
        "protocols": ["sound"],
        "baseline": "maml+cdae",
        "overrides": [f"train.epochs={epochs}"],
    }


def main(argv: list[str] | None = None) -> int:
    from medvqa.data import PreparedDataset
    from medvqa.grid.cli import main as grid_main
    from pubmedclip.models import random_clip

    parser = Parser(prog="medvqa demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--epochs", type=int, default=HEAD_CONFIG["train"]["epochs"], help="VQA epochs per cell")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated VQA training seeds")
    parser.add_argument("--clip-epochs", type=int, default=8, help="CLIP fine-tuning epochs")
    parser.add_argument("--images", type=int, default=240, help="synthetic images (a fifth are test images)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy small CPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    data_dir, out = args.out / "data", args.out.resolve()

    summary = prepare_data(data_dir, args.images, random_clip(CLIP_ARCH).preprocess["size"])
    print(format_summary(summary))
    untrained, finetuned = finetune_clip(data_dir.resolve(), out / "clip", args.clip_epochs)
    head_config = out / "mevf_ban.yaml"
    write_text_atomic(head_config, yaml.safe_dump({**HEAD_CONFIG, "train": {**HEAD_CONFIG["train"],
                                                                           "threads": args.threads}}, sort_keys=False))
    grid_file = out / "study.yaml"
    write_text_atomic(grid_file, yaml.safe_dump(study_grid(data_dir.resolve(), head_config, untrained, finetuned,
                                                           seeds, args.epochs), sort_keys=False))
    status = grid_main(["--grid", str(grid_file), "--out", str(out / "study")])
    ds = PreparedDataset(data_dir)
    baseline = majority_accuracy([r.answer for r in ds.records("train")], [r.answer for r in ds.records("test")])
    print(f"majority answer: {baseline:.1f} % of the test questions; the grid file is {grid_file} "
          f"(medvqa grid --grid {grid_file} --out {out / 'study'})")
    return status
