"""Command line: ``pubmedclip finetune | evaluate | encode | export | index | caption | search | pmc-oa``.

Each subcommand is ``<name>_main(argv) -> int``; input problems print ``error: ...`` and exit with status 2 (``infra.cli``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from infra.cli import Parser, run_command
from infra.errors import UserError
from infra.files import save_npz_atomic, write_text_atomic


def _write_json(payload: dict, out: str | None) -> None:
    text = json.dumps(payload, indent=1)
    if out:
        write_text_atomic(out, text + "\n")
    print(text)


def _runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="weights in any supported format (omit for random weights of --arch)")
    parser.add_argument("--arch", help="architecture, when the checkpoint does not say (e.g. ViT-B/32, RN50)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes")
    parser.add_argument(
        "--cache-dir", help="reuse image features across runs (keyed by image tower, input spec and image bytes)"
    )


def _encoder(args: argparse.Namespace):
    import torch

    from pubmedclip.encoder import ImageEncoder

    if args.checkpoint is None and args.arch is None:
        raise UserError("give --checkpoint (and --arch if the checkpoint does not name its architecture)")
    torch.set_num_threads(min(torch.get_num_threads(), 8))
    return ImageEncoder(
        args.checkpoint,
        args.arch,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        num_workers=args.workers,
        cache_dir=args.cache_dir,
    )


def finetune_main(argv: list[str] | None = None) -> int:
    from pubmedclip.config import load_config
    from pubmedclip.finetune import finetune

    parser = Parser(prog="pubmedclip finetune", description="Contrastive fine-tuning of CLIP.")
    parser.add_argument("--config", required=True, help="YAML config (sections model, data, train)")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=5e-6")
    parser.add_argument("--out", help="run directory (default runs/pubmedclip/<config name>)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run directory of a different config")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    out = args.out or Path("runs") / "pubmedclip" / Path(args.config).stem
    results = finetune(cfg, out, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"best epoch {results['best_epoch']}: val mean R@K {results['best']['val_mean_recall']:.2f} "
            f"(before training {results['untrained']['val_mean_recall']:.2f}); run directory {out}"
        )
    return 0


def evaluate_main(argv: list[str] | None = None) -> int:
    from pubmedclip import evaluate
    from pubmedclip.data import read_labelled

    parser = Parser(prog="pubmedclip evaluate", description="Retrieval, zero-shot, linear probe.")
    _runtime_args(parser)
    parser.add_argument("--task", default="retrieval", choices=("retrieval", "zeroshot", "linear-probe", "captioning"))
    parser.add_argument("--bank", help="captioning: caption bank (default: the other captions of --data)")
    parser.add_argument("--bank-image-root", help="captioning: image folder of the bank (pixel baseline)")
    parser.add_argument("--protocol", default="sound", choices=("sound", "medclip"), help="captioning protocol")
    parser.add_argument("--data", required=True, help="pairs (retrieval) or labelled images / SLAKE folder")
    parser.add_argument("--image-root", help="image folder when the data file's default does not apply")
    parser.add_argument("--preset", choices=("roco2000",), help="roco2000: >=3-word captions, seed-42 shuffle, 2,000")
    parser.add_argument("--label", default="modality", help="label to classify (SLAKE: modality or organ)")
    parser.add_argument("--template", action="append", help="zero-shot prompt with {} for the class (repeatable)")
    parser.add_argument("--split", default="test", help="split evaluated (labelled data with a split column)")
    parser.add_argument("--train-split", default="train", help="linear probe training split")
    parser.add_argument("--k-shot", default="all,1,4,16", help="comma list of shots per class ('all' = every image)")
    parser.add_argument("--out", help="results JSON file")
    args = parser.parse_args(argv)
    encoder = _encoder(args)
    if args.task == "retrieval":
        result = evaluate.retrieval(encoder, args.data, args.image_root, args.preset, args.batch_size)
    elif args.task == "captioning":
        from pubmedclip.retrieval.cli import captioning_result

        result = captioning_result(encoder, args)
    else:
        records = read_labelled(args.data, args.image_root)
        test = [r for r in records if r.split == args.split] if any(r.split for r in records) else records
        if args.task == "zeroshot":
            result = evaluate.zero_shot(encoder, test, args.label, args.template or evaluate.DEFAULT_TEMPLATES)
        else:
            train = [r for r in records if r.split == args.train_split]
            if not train:
                raise UserError(f"linear probe: no images in split '{args.train_split}' (needs a split column)")
            try:
                shots = [None if k == "all" else int(k) for k in args.k_shot.split(",")]
            except ValueError as exc:
                raise UserError(f"--k-shot {args.k_shot!r}: expected e.g. all,1,4,16") from exc
            result = evaluate.linear_probe(encoder, train, test, args.label, shots)
    _write_json({"checkpoint": args.checkpoint, "arch": encoder.loaded.arch, **result}, args.out)
    return 0


def encode_main(argv: list[str] | None = None) -> int:
    from pubmedclip.encoder import list_images

    parser = Parser(prog="pubmedclip encode", description="Embed every image of a folder.")
    _runtime_args(parser)
    parser.add_argument("--images", required=True, help="folder of images (searched recursively)")
    parser.add_argument("--out", required=True, help="output .npz with arrays embeddings (N x D) and names")
    parser.add_argument("--normalize", action="store_true", help="L2-normalise each embedding")
    args = parser.parse_args(argv)
    paths = list_images(args.images)
    if not paths:
        raise UserError(f"no images in {args.images}")
    encoder = _encoder(args)
    embeddings, ok = encoder.encode_files(paths)
    embeddings = embeddings[ok]
    if args.normalize:
        embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    names = np.array([p.relative_to(args.images).as_posix() for p, good in zip(paths, ok) if good])
    out = Path(args.out)
    save_npz_atomic(out, embeddings=embeddings.astype(np.float32), names=names)
    skipped = [p.relative_to(args.images).as_posix() for p, good in zip(paths, ok) if not good]
    print(
        f"wrote {len(names)} x {embeddings.shape[1]} embeddings to {out}"
        + (f"; skipped {len(skipped)} unreadable images (e.g. {skipped[0]})" if skipped else "")
    )
    return 0


def export_main(argv: list[str] | None = None) -> int:
    import torch

    from pubmedclip.checkpoints import load_clip
    from pubmedclip.exports import EXPORTS, export

    parser = Parser(
        prog="pubmedclip export", description="Write a CLIP for PubMedCLIP, Hugging Face, open_clip or OpenAI's clip."
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--arch")
    parser.add_argument("--out", required=True, help="a file (pubmedclip, openai) or a folder (hf, open_clip)")
    parser.add_argument("--format", default="pubmedclip", choices=tuple(EXPORTS),
                        help="pubmedclip {'state_dict'} .pth, hf CLIPModel folder, open_clip folder, openai clip.load file")
    parser.add_argument("--fp16", action="store_true", help="store weights in float16 (default float32)")
    args = parser.parse_args(argv)
    loaded = load_clip(args.checkpoint, args.arch)
    export(loaded, args.out, args.format, torch.float16 if args.fp16 else torch.float32)
    print(f"wrote {args.out} ({loaded.arch}, {args.format})")
    return 0


def index_main(argv: list[str] | None = None) -> int:
    from pubmedclip.retrieval.cli import index_main as run

    return run(argv)


def caption_main(argv: list[str] | None = None) -> int:
    from pubmedclip.retrieval.cli import caption_main as run

    return run(argv)


def search_main(argv: list[str] | None = None) -> int:
    from pubmedclip.retrieval.cli import search_main as run

    return run(argv)


def pmc_oa_main(argv: list[str] | None = None) -> int:
    from data_prep.pmc_oa.cli import main as extract_main

    return extract_main(argv)


COMMANDS = {"finetune": finetune_main, "evaluate": evaluate_main, "encode": encode_main, "export": export_main,
            "index": index_main, "caption": caption_main, "search": search_main, "pmc-oa": pmc_oa_main}


def main(argv: list[str] | None = None) -> int:
    return run_command("pubmedclip", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
