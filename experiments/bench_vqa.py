"""Training speed of MEVF-BAN and QCR+TCR: seconds per epoch, peak memory, data-pipeline overhead.

    python experiments/bench_vqa.py --vqa-rad data/vqa_rad --slake data/slake [--steps 8] [--bf16]

For every (model, dataset, fine-tuned | frozen) it times ``--steps`` training steps two ways, each
in a fresh process: end to end (batch gathered from the preloaded tensors, forward, backward, clip,
Adamax step, exactly as ``medvqa train`` does) and model only (the same steps on one batch gathered
beforehand). It prints seconds per epoch (step time x steps per epoch), the peak resident memory
and the ratio of the two step rates (1.0: the data pipeline costs nothing). It also counts the
floating-point operations of one training step (torch's FLOP counter: matrix products and
convolutions, forward and backward) and prints the achieved rate, to be read against the 2048x2048
float32 matrix-product rate printed before and after (shared machines drift): a ratio near 1 means
the step is as fast as the arithmetic allows.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

CONFIGS = {"mevf_ban": "mevf_ban", "qcr": "qcr"}


def matmul_gflops(seconds: float = 2.0) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 2048**3 * n / (time.perf_counter() - start) / 1e9


def one(model: str, dataset: str, root: str, frozen: bool, steps: int, bf16: bool, model_only: bool) -> dict:
    """Time ``steps`` training steps (after 2 warm-up steps) of one setting in this process."""
    from medvqa.batches import one_hot
    from medvqa.config import load_config
    from medvqa.experiment import build_experiment, forward

    config_dir = Path(__file__).resolve().parents[1] / "configs" / dataset
    name = f"{CONFIGS[model]}{'_frozen' if frozen else ''}.yaml"
    config = load_config(config_dir / name, [f"data.root={root}", f"train.bf16={str(bf16).lower()}",
                                             f"train.feature_cache={Path(root) / 'feature_cache'}"])
    torch.manual_seed(0)
    exp = build_experiment(config)
    m, split = exp.model.train(), exp.splits["train"]
    optimizer = torch.optim.Adamax(m.trainable_parameters(), lr=config.train.lr)
    batches = list(split.batches(config.train.batch_size, torch.Generator().manual_seed(0)))
    fixed = batches[0]
    fixed_inputs = exp.visual.batch(split.image_rows[fixed])

    def step(idx):
        if model_only:  # inputs gathered once, outside the timed loop
            images, features = fixed_inputs
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = m(split.tokens[fixed], images=images, features=features, is_open=split.is_open[fixed])
            idx = fixed
        else:
            out = forward(exp, split, idx)
        loss = m.loss(out, one_hot(split.labels[idx], m.num_answers), split.is_open[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.trainable_parameters(), config.train.clip_norm)
        optimizer.step()

    for idx in batches[:2]:
        step(idx)
    start = time.perf_counter()
    for idx in batches[2:2 + steps]:
        step(idx)
    per_step = (time.perf_counter() - start) / min(steps, len(batches) - 2)
    result = {"seconds_per_step": per_step, "seconds_per_epoch": per_step * len(batches),
              "steps_per_epoch": len(batches), "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if not model_only:  # the FLOPs of a step are the same both ways: count them once, on one more untimed step
        counter = FlopCounterMode(display=False)
        with counter:
            step(batches[0])
        result["gflop_per_step"] = counter.get_total_flops() / 1e9
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vqa-rad", default="data/vqa_rad", help="prepared VQA-RAD directory")
    parser.add_argument("--slake", default="data/slake", help="prepared SLAKE directory ('' to skip)")
    parser.add_argument("--models", default="mevf_ban,qcr")
    parser.add_argument("--modes", default="finetuned,frozen")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--one", nargs=5, metavar=("MODEL", "DATASET", "ROOT", "MODE", "TIMING"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        model, dataset, root, mode, timing = args.one
        print(json.dumps(one(model, dataset, root, mode == "frozen", args.steps, args.bf16, timing == "model")))
        return 0
    rate = matmul_gflops()
    print(f"matmul 2048 float32: {rate:.0f} GFLOP/s, {torch.get_num_threads()} threads")
    roots = {"vqa_rad": args.vqa_rad, "slake": args.slake}
    print(f"{'model':<9}{'dataset':<9}{'mode':<10}{'s/epoch':>9}{'s/step':>8}{'peak GiB':>9}{'e2e/model':>10}"
          f"{'GFLOP/step':>11}{'GFLOP/s':>8}{'of matmul':>10}")
    for dataset, root in roots.items():
        if not root:
            continue
        for model in args.models.split(","):
            for mode in args.modes.split(","):
                rows = {}
                for timing in ("e2e", "model"):
                    cmd = [sys.executable, __file__, "--steps", str(args.steps), "--one", model, dataset, root, mode,
                           timing, *(["--bf16"] if args.bf16 else [])]
                    done = subprocess.run(cmd, capture_output=True, text=True)
                    if done.returncode:
                        raise SystemExit(done.stderr.strip().splitlines()[-1])
                    rows[timing] = json.loads(done.stdout.strip().splitlines()[-1])
                e2e, only = rows["e2e"], rows["model"]
                ratio = only["seconds_per_step"] / e2e["seconds_per_step"]
                achieved = e2e["gflop_per_step"] / e2e["seconds_per_step"]
                print(f"{model:<9}{dataset:<9}{mode:<10}{e2e['seconds_per_epoch']:>9.1f}{e2e['seconds_per_step']:>8.3f}"
                      f"{e2e['peak_rss_gib']:>9.2f}{ratio:>10.2f}{e2e['gflop_per_step']:>11.1f}{achieved:>8.0f}"
                      f"{achieved / rate:>10.2f}", flush=True)
    print(f"matmul 2048 float32: {matmul_gflops():.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
