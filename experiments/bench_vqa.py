"""Training speed of MEVF-BAN and QCR+TCR: seconds per epoch, peak memory, data-pipeline overhead.

    python experiments/bench_vqa.py --vqa-rad data/vqa_rad --slake data/slake [--steps 8] [--bf16]

For every (model, dataset, fine-tuned | frozen) it times ``--steps`` training steps two ways, each
in a fresh process: end to end (batch gathered from the preloaded tensors, forward, backward, clip,
Adamax step, exactly as ``medvqa train`` does) and model only (the same steps on one batch gathered
beforehand). It prints seconds per epoch (step time x steps per epoch), the peak resident memory
and the ratio of the two step rates (1.0: the data pipeline costs nothing). It also counts the
floating-point operations of one training step (torch's FLOP counter: matrix products and
convolutions, forward and backward, plus oneDNN's fused LSTM layer, which the counter does not see)
and prints the achieved rate, to be read against the 2048x2048 float32 matrix-product rate printed
before and after (shared machines drift): a ratio near 1 means the step is as fast as the arithmetic
allows.

    python experiments/bench_vqa.py --published ../shared/peers --vqa-rad data/vqa_rad [--rounds 2] [--steps 16]

With ``--published`` it times the published MEVF and QCR+TCR code beside this toolkit on VQA-RAD, on the
same 3,064 training QA (train and val: the published code holds nothing out) and the same threads:
for each model, ``--rounds`` rounds of published, ours fine-tuned, ours frozen, each in a fresh process
(A B A B). Both sides time their first ``--steps`` iterations and extrapolate an epoch the same way (first
iteration + the mean of the others x the iterations left). With ``--bf16`` each round also times this toolkit
under bfloat16 autocast. It prints each measurement, then per model
the median seconds per epoch, peak memory, and the published / ours ratio.

    python experiments/bench_vqa.py --profile mevf_ban:frozen --vqa-rad data/vqa_rad [--steps 8] [--bf16]

prints where one setting's training step goes (torch.profiler: operators by self CPU time, each operator
apart for each shape of its inputs, so that the layers of one kind show apart).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from infra.memory import reuse_freed_memory

CONFIGS = {"mevf_ban": "mevf_ban", "qcr": "qcr"}
PUBLISHED = {"mevf_ban": "mevf", "qcr": "qcr"}  # ../shared/peers time_epoch.py --model
PUBLISHED_IMPORTS = {"mevf_ban": (), "qcr": ("h5py",)}  # what the published code imports beyond our dependencies


def fused_rnn_flops(passes: int) -> Callable[..., int]:
    """FLOPs of oneDNN's fused RNN layer: ``passes`` products with the input and hidden weights per time step and
    sequence (1 forward; 2 backward: the gradients of the inputs and of the weights)."""
    def formula(input_shape: torch.Size, w_ih: torch.Size, w_hh: torch.Size, *_, **__) -> int:
        return 2 * passes * math.prod(input_shape[:-1]) * (math.prod(w_ih) + math.prod(w_hh))
    return formula


# torch's counter misses these ops (the CPU LSTM runs as one oneDNN op; GRUs decompose into counted products)
RNN_FLOPS = {torch.ops.aten.mkldnn_rnn_layer: fused_rnn_flops(1),
             torch.ops.aten.mkldnn_rnn_layer_backward: fused_rnn_flops(2)}


def matmul_gflops(seconds: float = 2.0) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 2048**3 * n / (time.perf_counter() - start) / 1e9


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def training_step(model: str, dataset: str, root: str, frozen: bool, bf16: bool, model_only: bool,
                  all_train: bool = False) -> tuple[Callable[[torch.Tensor], None], list[torch.Tensor], int]:
    """One setting's training step exactly as ``medvqa train`` takes it (or, ``model_only``, on one batch gathered
    beforehand), the epoch's batches and the number of training QA."""
    from medvqa.batches import one_hot
    from medvqa.config import load_config
    from medvqa.experiment import build_experiment, forward

    reuse_freed_memory()  # as medvqa train does on the CPU

    config_dir = Path(__file__).resolve().parents[1] / "configs" / dataset
    name = f"{CONFIGS[model]}{'_frozen' if frozen else ''}.yaml"
    overrides = [f"data.root={root}", f"train.bf16={str(bf16).lower()}",
                 f"train.feature_cache={Path(root) / 'feature_cache'}"]
    config = load_config(config_dir / name, overrides + (["data.train_splits=[train,val]"] if all_train else []))
    torch.manual_seed(0)
    exp = build_experiment(config)
    m, split = exp.model.train(), exp.splits["train"]
    optimizer = torch.optim.Adamax(m.trainable_parameters(), lr=config.train.lr)
    batches = list(split.batches(config.train.batch_size, torch.Generator().manual_seed(0)))
    fixed = batches[0]
    fixed_inputs = exp.visual.batch(split.image_rows[fixed])

    def step(idx: torch.Tensor) -> None:
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

    return step, batches, len(split)


def one(model: str, dataset: str, root: str, frozen: bool, steps: int, bf16: bool, model_only: bool,
        all_train: bool = False) -> dict:
    """Time ``steps`` training steps (after 2 warm-up steps) of one setting in this process.

    ``all_train``: train on train and val, as the published code does; the warm-up steps are then timed
    too, and the epoch extrapolated from the first ``steps`` iterations as the published timing does.
    """
    step, batches, qa = training_step(model, dataset, root, frozen, bf16, model_only, all_train)
    seconds = []
    for idx in batches[:2 + steps]:
        start = time.perf_counter()
        step(idx)
        seconds.append(time.perf_counter() - start)
    per_step = statistics.fmean(seconds[2:])
    timed = seconds[:steps]  # the published timing's window: the first iterations, warm-up included
    result = {"seconds_per_step": per_step, "seconds_per_epoch": per_step * len(batches),
              "epoch_extrapolated": timed[0] + (len(batches) - 1) * statistics.fmean(timed[1:] or timed),
              "steps_per_epoch": len(batches), "qa": qa, "peak_rss_gib": peak_rss_gib()}
    if not model_only:  # the FLOPs of a step are the same both ways: count them once, on one more untimed step
        counter = FlopCounterMode(display=False, custom_mapping=RNN_FLOPS)
        with counter:
            step(batches[0])
        result["gflop_per_step"] = counter.get_total_flops() / 1e9
    return result


def profile(setting: str, root: str, steps: int, bf16: bool, rows: int = 20) -> None:
    """Where a training step's time goes: torch.profiler over ``steps`` steps (after 2 warm-up steps), the
    operators with the most self CPU time, forward and backward apart, and each shape of their inputs apart
    (a convolution's backward at 128x128 and at 64x64 are two rows)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model, _, mode = setting.partition(":")
    step, batches, _ = training_step(model, "vqa_rad", root, mode == "frozen", bf16, model_only=False)
    for idx in batches[:2]:
        step(idx)
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for idx in batches[2:2 + steps]:
            step(idx)
    print(f"{setting}{' bf16' if bf16 else ''}: {steps} steps on VQA-RAD, {torch.get_num_threads()} threads")
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=rows,
                                                              max_name_column_width=32, max_shapes_column_width=80))


def run_child(cmd: list[str], threads: int) -> str:
    """Run ``cmd`` in a fresh process with ``threads`` OpenMP threads; its stdout, or exit with its last error line."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        raise SystemExit(f"{' '.join(cmd[:5])} ... failed: {lines[-1]}")
    return done.stdout


def ours(model: str, dataset: str, root: str, mode: str, timing: str, args: argparse.Namespace,
         all_train: bool = False, bf16: bool | None = None) -> dict:
    bf16 = args.bf16 if bf16 is None else bf16
    cmd = [sys.executable, __file__, "--steps", str(args.steps), "--threads", str(args.threads),
           "--one", model, dataset, root, mode, timing, *(["--bf16"] if bf16 else []),
           *(["--all-train"] if all_train else [])]
    return json.loads(run_child(cmd, args.threads).strip().splitlines()[-1])


def published(model: str, args: argparse.Namespace, work: Path) -> dict:
    """One epoch of the published code, timed by the peers' own script (its first ``--steps`` iterations)."""
    out = work / f"{model}.json"
    run_child([sys.executable, str(Path(args.published) / "time_epoch.py"), "--model", PUBLISHED[model],
               "--data-root", args.data_root, "--work", str(work), "--steps", str(args.steps),
               "--threads", str(args.threads), "--json", str(out)], args.threads)
    figures = json.loads(out.read_text())
    return {"epoch": figures["epoch_s"], "peak_gib": figures["peak_rss_mib"] / 1024, "qa": figures["dataset_len"]}


def side_by_side(args: argparse.Namespace) -> None:
    """The published code and this toolkit on the same training QA, interleaved (A B A B)."""
    models = args.models.split(",")
    missing = sorted({name for model in models for name in PUBLISHED_IMPORTS[model]
                      if importlib.util.find_spec(name) is None})
    if missing:  # before anything is timed, not after the first model's rounds
        raise SystemExit(f"bench_vqa.py --published: the published code imports {', '.join(missing)}, not installed "
                         "here: pip install -e '.[bench]'")
    print(f"matmul 2048 float32: {matmul_gflops():.0f} GFLOP/s, {args.threads} threads")
    print(f"{'model':<9}{'round':>6}  {'code':<22}{'QA':>6}{'s/epoch':>9}{'peak GiB':>9}")
    summary = []
    with tempfile.TemporaryDirectory(prefix="bench_published_") as tmp:
        for model in models:
            times: dict[str, list[float]] = {}
            peaks: dict[str, float] = {}
            for round_ in range(1, args.rounds + 1):
                measured = {"published": published(model, args, Path(tmp))}
                precisions = [False, True] if args.bf16 else [False]  # --bf16: float32 and bf16 rows
                for bf16, mode in [(b, m) for b in precisions for m in args.modes.split(",")]:
                    row = ours(model, "vqa_rad", args.vqa_rad, mode, "e2e", args, all_train=True, bf16=bf16)
                    measured[f"ours {mode}{' bf16' if bf16 else ''}"] = {
                        "epoch": row["epoch_extrapolated"], "peak_gib": row["peak_rss_gib"], "qa": row["qa"]}
                for code, row in measured.items():
                    times.setdefault(code, []).append(row["epoch"])
                    peaks[code] = max(peaks.get(code, 0.0), row["peak_gib"])
                    print(f"{model:<9}{round_:>6}  {code:<22}{row['qa']:>6}{row['epoch']:>9.1f}{row['peak_gib']:>9.2f}",
                          flush=True)
            baseline = statistics.median(times["published"])
            for code, values in times.items():
                median = statistics.median(values)
                summary.append(f"{model:<9}{code:<22}{median:>9.1f}{peaks[code]:>9.2f}{baseline / median:>9.2f}x")
    print(f"matmul 2048 float32: {matmul_gflops():.0f} GFLOP/s")
    print(f"\nmedian over {args.rounds} rounds, {args.steps} iterations each, extrapolated to an epoch")
    print(f"{'model':<9}{'code':<22}{'s/epoch':>9}{'peak GiB':>9}{'speed-up':>10}")
    print("\n".join(summary))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vqa-rad", default="data/vqa_rad", help="prepared VQA-RAD directory")
    parser.add_argument("--slake", default="data/slake", help="prepared SLAKE directory ('' to skip)")
    parser.add_argument("--models", default="mevf_ban,qcr")
    parser.add_argument("--modes", default="finetuned,frozen")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch / OpenMP threads of every timed process")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--published", help="folder of the published code and its time_epoch.py: time it side by side")
    parser.add_argument("--data-root", default="../shared/data", help="raw data the published code reads (--published)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (--published)")
    parser.add_argument("--profile", metavar="MODEL:MODE", help="profile one setting's step, e.g. mevf_ban:finetuned")
    parser.add_argument("--one", nargs=5, metavar=("MODEL", "DATASET", "ROOT", "MODE", "TIMING"), help=argparse.SUPPRESS)
    parser.add_argument("--all-train", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.one:
        model, dataset, root, mode, timing = args.one
        print(json.dumps(one(model, dataset, root, mode == "frozen", args.steps, args.bf16, timing == "model",
                             args.all_train)))
        return 0
    if args.profile:
        profile(args.profile, args.vqa_rad, args.steps, args.bf16)
        return 0
    if args.published:
        side_by_side(args)
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
                e2e, only = (ours(model, dataset, root, mode, timing, args) for timing in ("e2e", "model"))
                ratio = only["seconds_per_step"] / e2e["seconds_per_step"]
                achieved = e2e["gflop_per_step"] / e2e["seconds_per_step"]
                print(f"{model:<9}{dataset:<9}{mode:<10}{e2e['seconds_per_epoch']:>9.1f}{e2e['seconds_per_step']:>8.3f}"
                      f"{e2e['peak_rss_gib']:>9.2f}{ratio:>10.2f}{e2e['gflop_per_step']:>11.1f}{achieved:>8.0f}"
                      f"{achieved / rate:>10.2f}", flush=True)
    print(f"matmul 2048 float32: {matmul_gflops():.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
