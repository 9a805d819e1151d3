"""Where a run's clipped gradient norm comes from: each module's share of the squared global norm.

    python experiments/grad_norm_shares.py RUN_DIR_OR_CONFIG [--steps 20] [--depth 2] [key=value ...]

Builds the model of a run's ``config.yaml`` (or any VQA config) as a fresh run would, takes the
first ``--steps`` training batches of epoch 0, and for each step measures the gradient norm of every
module ``--depth`` levels deep before ``train.clip_norm`` clips it. Prints, per module, its
parameters, its median gradient norm and its median share of the squared global norm, and how often
the clip fired with its median scale factor. A module whose share is near 1 sets the scale of every
other weight's step: with a clip that fires at every step, the others move
``clip_norm / global_norm`` times what the optimizer alone would move them.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from medvqa.config import load_config
from medvqa.experiment import build_experiment
from medvqa.train import epoch_batches, seed_everything, training_loss


def module_of(name: str, depth: int) -> str:
    """``visual.encoders.cdae.proj.weight`` at depth 2 -> ``visual.encoders``; parameters of the top level keep their name."""
    parts = name.split(".")[:-1]
    return ".".join(parts[:depth]) or name


Measured = tuple[dict[str, list[float]], list[float], dict[str, int], float]  # norms, global norms, sizes, clip


def measure(config_path: Path, overrides: list[str], steps: int, depth: int) -> Measured:
    """Per-module gradient norms and the global norm over the first ``steps`` batches (no optimizer step taken)."""
    config = load_config(config_path, overrides)
    seed_everything(config.train.seed)
    exp = build_experiment(config)
    model = exp.model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    sizes: dict[str, int] = defaultdict(int)
    for name, parameter in named:
        sizes[module_of(name, depth)] += parameter.numel()
    norms: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    for idx in epoch_batches(exp, 0)[:steps]:
        model.zero_grad(set_to_none=True)
        training_loss(exp, idx)[2].backward()
        squares: dict[str, float] = defaultdict(float)
        for name, parameter in named:
            if parameter.grad is not None:
                squares[module_of(name, depth)] += parameter.grad.float().pow(2).sum().item()
        for module, square in squares.items():
            norms[module].append(square ** 0.5)
        totals.append(sum(squares.values()) ** 0.5)
    return norms, totals, sizes, config.train.clip_norm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory (its config.yaml) or a config file")
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--depth", type=int, default=2, help="module name depth to group parameters by")
    args = parser.parse_args(argv)
    config_path = args.run / "config.yaml" if args.run.is_dir() else args.run
    if not config_path.is_file():
        sys.exit(f"error: {config_path}: no such config file")
    norms, totals, sizes, clip = measure(config_path, args.overrides, args.steps, args.depth)
    scale = statistics.median(min(1.0, clip / t) for t in totals)
    print(f"{config_path}: {len(totals)} steps, global gradient norm median {statistics.median(totals):.3g}; "
          f"clip {clip} fired at {sum(t > clip for t in totals)} steps, median scale {scale:.3g}")
    print(f"{'module':40s} {'parameters':>12s} {'median norm':>12s} {'share of norm^2':>16s}")
    shares = {m: statistics.median(n ** 2 / t ** 2 for n, t in zip(v, totals)) for m, v in norms.items()}
    for module in sorted(norms, key=shares.get, reverse=True):
        print(f"{module:40s} {sizes[module]:12,d} {statistics.median(norms[module]):12.3g} {shares[module]:16.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
