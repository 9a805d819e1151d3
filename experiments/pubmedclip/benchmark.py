"""Throughput of pubmedclip fine-tuning and encoding against a bare model step and open_clip's own trainer.

    python experiments/pubmedclip/benchmark.py                      # ViT-B/32 and RN50, fp32 and bf16, short
    python experiments/pubmedclip/benchmark.py --archs RN50 --batch 32 --steps 10 --threads 2

For each architecture and precision it measures, each in its own process (so peak memory is per measurement):

- train/bare:     forward + contrastive loss + backward + Adam step on preloaded random tensors;
- train/ours:     ``pubmedclip.finetune`` set-up and training loop on a CSV of real SLAKE images;
- train/open_clip: ``python -m open_clip_train.main`` on the same CSV, model, batch, precision and workers;
- encode/bare:    ``encode_image`` on preloaded tensors;
- encode/ours:    ``ImageEncoder.encode_files`` on the same images (decode, resize, encode; no cache).

Random weights (no pretrained weights are needed for speed). Every timing includes the first step.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from infra.files import write_text_atomic

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OPEN_CLIP_PRECISION = {"fp32": "fp32", "bf16": "amp_bf16"}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, arch: str, csv: Path, batch: int, steps: int, precision: str, workers: int) -> dict:
    """One measurement in this process: items per second and peak resident memory."""
    import torch

    from pubmedclip.config import load_config
    from pubmedclip.distributed import DistInfo
    from pubmedclip.embed import autocast
    from pubmedclip.encoder import ImageEncoder
    from pubmedclip.finetune import setup, train_one_epoch
    from pubmedclip.loss import clip_loss
    from pubmedclip.models import random_clip

    cpu = torch.device("cpu")
    if kind == "train/ours":
        cfg = load_config(
            None,
            [
                f"model.arch={arch}",
                "model.load_pretrained=false",
                f"data.train={csv}",
                f"data.val={csv}",
                f"data.num_workers={workers}",
                f"train.batch_size={batch}",
                f"train.precision={precision}",
                "train.epochs=1",
                "train.device=cpu",
            ],
        )
        session = setup(cfg, DistInfo())
        stats = train_one_epoch(
            session.model,
            session.loader,
            session.optimizer,
            session.scheduler,
            session.scaler,
            cfg,
            DistInfo(),
            "train",
        )
        return {"per_s": stats["pairs_per_s"], "peak_mb": _peak_mb()}
    loaded = random_clip(arch)
    size = int(loaded.preprocess["size"])
    if kind == "encode/ours":
        paths = [Path(line.split(",")[0]) for line in csv.read_text().splitlines()[1:]]
        encoder = ImageEncoder(loaded=loaded, precision=precision, batch_size=batch, num_workers=workers)
        start = time.perf_counter()
        encoder.encode_files(paths)
        return {"per_s": len(paths) / (time.perf_counter() - start), "peak_mb": _peak_mb()}
    images = torch.randn(batch, 3, size, size)  # [B, 3, S, S]
    tokens = loaded.tokenizer([f"a computed tomography scan of the abdomen, case {i}" for i in range(batch)])  # [B, 77]
    model = loaded.model
    start = time.perf_counter()
    if kind == "encode/bare":
        with torch.no_grad(), autocast(cpu, precision):
            for _ in range(steps):
                model.encode_image(images)
    else:  # train/bare
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=5e-4)
        for _ in range(steps):
            with autocast(cpu, precision):
                image_features, text_features, scale = model(images, tokens)[:3]
            clip_loss(image_features, text_features, scale).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return {"per_s": batch * steps / (time.perf_counter() - start), "peak_mb": _peak_mb()}


def measure_open_clip(arch: str, csv: Path, batch: int, steps: int, precision: str, workers: int) -> dict:
    """open_clip_train.main in this process on the same CSV; pairs/s from the batch times it logs."""
    import logging

    from open_clip_train.main import main as open_clip_main

    from pubmedclip.models import resolve_arch

    times: list[float] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found = re.search(r"Batch \(t\): ([0-9.]+)", record.getMessage())
            if found:
                times.append(float(found.group(1)))

    logging.getLogger().addHandler(Collect())
    with tempfile.TemporaryDirectory() as logs:
        open_clip_main(
            [
                "--train-data",
                str(csv),
                "--csv-img-key",
                "filepath",
                "--csv-caption-key",
                "title",
                "--csv-separator",
                ",",
                "--model",
                resolve_arch(arch),
                "--batch-size",
                str(batch),
                "--epochs",
                "1",
                "--workers",
                str(workers),
                "--device",
                "cpu",
                "--precision",
                OPEN_CLIP_PRECISION[precision],
                "--lr",
                "1e-5",
                "--wd",
                "5e-4",
                "--warmup",
                "0",
                "--logs",
                logs,
                "--name",
                "bench",
                "--save-frequency",
                "0",
                "--report-to",
                "",
                "--log-every-n-steps",
                "1",
            ]
        )
    return {"per_s": batch / (sum(times) / len(times)), "peak_mb": _peak_mb(), "steps": len(times)}


def run_child(args: argparse.Namespace, kind: str, arch: str, precision: str, csv: Path) -> dict:
    command = [
        sys.executable,
        str(Path(__file__)),
        "--child",
        kind,
        "--archs",
        arch,
        "--precisions",
        precision,
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
        "--csv",
        str(csv),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pubmedclip throughput benchmark (CPU)")
    parser.add_argument("--archs", default="ViT-B/32,RN50")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="data-loading processes (ours and open_clip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, help="write all figures as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        run = measure_open_clip if args.child == "train/open_clip" else lambda *a: measure(args.child, *a)
        print(json.dumps(run(args.archs, args.csv, args.batch, args.steps, args.precisions, args.workers)))
        return 0

    sys.path.insert(0, str(HERE))
    from slake_roco import write_csv

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        rows = write_csv(args.data_root, Path(tmp) / "slake_pairs.csv").read_text().splitlines()
        csv = Path(tmp) / "bench_pairs.csv"  # exactly `steps` batches, the same file for every measurement
        csv.write_text("\n".join(rows[: args.batch * args.steps + 1]) + "\n")
        print(f"{args.batch} pairs per step, {args.steps} steps, {args.threads} threads, {args.workers} workers")
        print(f"{'arch':9} {'prec':5} {'measurement':16} {'items/s':>8} {'ratio':>6} {'peak MB':>8}")
        for arch in args.archs.split(","):
            for precision in args.precisions.split(","):
                row = {
                    kind: run_child(args, kind, arch, precision, csv)
                    for kind in ("train/bare", "train/ours", "train/open_clip", "encode/bare", "encode/ours")
                }
                for kind, figures in row.items():
                    if "error" in figures:
                        print(f"{arch:9} {precision:5} {kind:16} failed: {figures['error']}")
                        continue
                    reference = row["train/bare" if kind.startswith("train") else "encode/bare"].get("per_s")
                    ratio = figures["per_s"] / reference if reference else float("nan")
                    per_s, peak = figures["per_s"], figures["peak_mb"]
                    print(f"{arch:9} {precision:5} {kind:16} {per_s:8.2f} {ratio:6.2f} {peak:8.0f}")
                ours, theirs = row["train/ours"].get("per_s"), row["train/open_clip"].get("per_s")
                if ours and theirs:
                    print(f"{arch:9} {precision:5} ours / open_clip trainer: {ours / theirs:.2f}")
                results.append({"arch": arch, "precision": precision, **row})
    if args.out:
        write_text_atomic(
            args.out,
            json.dumps(
                {
                    "batch": args.batch,
                    "steps": args.steps,
                    "threads": args.threads,
                    "workers": args.workers,
                    "results": results,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
