"""Reproduce the published MEVF / QCR rows, and give the sound number beside each.

    python experiments/reproduce.py list
    python experiments/reproduce.py run ROW [--seeds 1204,1,2] [--runs runs/repro] [--data vqa_rad=DIR] [key=value ...]
        (key=value: config overrides for every seed, e.g. train.device=cuda train.epochs=5)
    python experiments/reproduce.py evaluate ROW [--seeds 1204,1,2] [--runs runs/repro]
        (runs as they stand, e.g. stopped before the end of their schedule)
    python experiments/reproduce.py report [--runs runs/repro] --out experiments/results/cpu [--readme README.md]
    python experiments/reproduce.py status [--runs runs/repro] --out experiments/results/cpu
        (how far each run trained and was archived, whether its results are current, what to run next
         and how long that takes at the pace of its last epochs)
        (--out is required: each machine has its own archive, experiments/results/cpu for 2 CPU cores,
         experiments/results/h100 for one H100)

``run`` trains each seed of a row (resumable: a finished run is not redone, an interrupted one is
continued) and evaluates it under every protocol of the row; it refuses data prepared with another
resize filter than the row's. ``report`` archives the light files of every evaluated run
(``config.yaml``, ``metrics.csv``, ``results_<protocol>.json``) under ``OUT/runs/<row>/s<seed>/``
(before it copies anything it refuses a run whose results no longer report the epoch their protocol
picks, and one with another config or fewer epochs than the run archived for its row and seed), then
builds from that archive Markdown and CSV tables (mean +- std over seeds, the schedule each number
was measured with, the published number beside it), an ablation table (``ablation.md``: the change
each of ``ABLATIONS`` makes, over the seeds of both rows; ``ablation_matched.md``: the same at
matched epochs, replayed from ``metrics.csv``, where a run stopped early or runs differ in length)
and plots accuracy-per-epoch curves, the seed spread and, for runs of 40 epochs or more, the test
accuracy each protocol would report after each epoch (``selection.png``: what test selection buys).
The archive accumulates: a report on a machine that holds only some of the runs keeps the others'
archived results. To drop a run from the
table, delete its archived directory and the run itself (or report from another --runs folder), else
the next report archives it again. ``--readme`` copies the new tables into the blocks of a Markdown
file that quote them (``update_readme``).

The machinery is ``medvqa.reproduce``; this script holds the grid: its rows, the published numbers
and the ablations.
"""
from __future__ import annotations

import sys
from pathlib import Path

from medvqa.reproduce import Ablation, Grid, Row
from medvqa.reproduce import main as reproduce_main

ALL = ("pubmedclip-legacy", "mevf-legacy", "sound")  # evaluation order: results.json ends as sound's
MEVF_BAN_RAD = {"pubmedclip-legacy": (49.2, 77.2, 66.1), "mevf-legacy": (43.9, 75.1, None)}  # published
QCR_RAD = {"pubmedclip-legacy": (60.0, 79.3, 71.6)}
ROWS: dict[str, Row] = {
    "vqa_rad-mevf_ban": Row("configs/vqa_rad/mevf_ban.yaml", ALL, MEVF_BAN_RAD),
    "vqa_rad-mevf_ban-all-train": Row("configs/vqa_rad/mevf_ban.yaml", ("pubmedclip-legacy", "mevf-legacy"),
                                      MEVF_BAN_RAD, ("data.train_splits=[train,val]",)),
    "vqa_rad-mevf_ban-bf16": Row("configs/vqa_rad/mevf_ban.yaml", ALL, MEVF_BAN_RAD, ("train.bf16=true",)),
    "vqa_rad-mevf_ban-bf16-visual32": Row("configs/vqa_rad/mevf_ban.yaml", ALL, MEVF_BAN_RAD,
                                          ("train.bf16=true", "train.bf16_visual=false")),
    # the noise floor: one thread instead of two changes only the order of the float32 sums
    "vqa_rad-mevf_ban-threads1": Row("configs/vqa_rad/mevf_ban.yaml", ALL, MEVF_BAN_RAD, ("train.threads=1",)),
    # the test-selection check: the same recipe, ten times as many epochs for the test set to pick from
    "vqa_rad-mevf_ban-200": Row("configs/vqa_rad/mevf_ban.yaml", ALL, MEVF_BAN_RAD, ("train.epochs=200",)),
    "vqa_rad-mevf_ban-nearest": Row("configs/vqa_rad/mevf_ban.yaml", ALL, MEVF_BAN_RAD, resize_filter="nearest"),
    "vqa_rad-mevf_ban-frozen": Row("configs/vqa_rad/mevf_ban_frozen.yaml", ALL),
    "vqa_rad-mevf_ban-frozen-nearest": Row("configs/vqa_rad/mevf_ban_frozen.yaml", ALL, resize_filter="nearest"),
    "vqa_rad-mevf_ban-frozen-bf16": Row("configs/vqa_rad/mevf_ban_frozen.yaml", ALL, overrides=("train.bf16=true",)),
    "vqa_rad-qcr": Row("configs/vqa_rad/qcr.yaml", ("pubmedclip-legacy", "sound"), QCR_RAD),
    "vqa_rad-qcr-all-train": Row("configs/vqa_rad/qcr.yaml", ("pubmedclip-legacy",), QCR_RAD,
                                 ("data.train_splits=[train,val]",)),
    # the published QCR code never loads the MAML weights: its MAML branch is trained from random weights
    "vqa_rad-qcr-maml-unloaded": Row("configs/vqa_rad/qcr.yaml", ("pubmedclip-legacy", "sound"), QCR_RAD,
                                     ("model.encoders.maml.weights=",)),
    "vqa_rad-qcr-bf16": Row("configs/vqa_rad/qcr.yaml", ("pubmedclip-legacy", "sound"), QCR_RAD, ("train.bf16=true",)),
    "vqa_rad-qcr-frozen": Row("configs/vqa_rad/qcr_frozen.yaml", ("pubmedclip-legacy", "sound")),
    "vqa_rad-qcr-frozen-bf16": Row("configs/vqa_rad/qcr_frozen.yaml", ("pubmedclip-legacy", "sound"),
                                   overrides=("train.bf16=true",)),
    # pubmedclip-legacy on a train-answer-set run: test-selected epoch, but not the published answer set
    "slake-mevf_ban": Row("configs/slake/mevf_ban.yaml", ("sound", "pubmedclip-legacy")),
    "slake-mevf_ban-published-vocab": Row("configs/slake/mevf_ban.yaml", ("pubmedclip-legacy",),
                                          {"pubmedclip-legacy": (77.8, 79.8, 78.6)}, ("data.answer_vocab=train+test",)),
    "slake-mevf_ban-frozen": Row("configs/slake/mevf_ban_frozen.yaml", ("sound", "pubmedclip-legacy")),
    "slake-qcr": Row("configs/slake/qcr.yaml", ("sound", "pubmedclip-legacy")),
    "slake-qcr-published-vocab": Row("configs/slake/qcr.yaml", ("pubmedclip-legacy",),
                                     {"pubmedclip-legacy": (76.8, 80.6, 78.3)}, ("data.answer_vocab=train+test",)),
    "slake-qcr-frozen": Row("configs/slake/qcr_frozen.yaml", ("sound", "pubmedclip-legacy")),
}

FROZEN = "freeze the visual branches (published weights, cached features)"
ABLATIONS = (
    Ablation(FROZEN, "vqa_rad-mevf_ban", "vqa_rad-mevf_ban-frozen"),
    Ablation(FROZEN, "slake-mevf_ban", "slake-mevf_ban-frozen"),
    Ablation(FROZEN, "vqa_rad-qcr", "vqa_rad-qcr-frozen"),
    Ablation(FROZEN, "slake-qcr", "slake-qcr-frozen"),
    Ablation("train on all of train (validation tenth included)", "vqa_rad-mevf_ban", "vqa_rad-mevf_ban-all-train"),
    Ablation("train on all of train (validation tenth included)", "vqa_rad-qcr", "vqa_rad-qcr-all-train"),
    Ablation("MAML branch from random weights (the published QCR code)", "vqa_rad-qcr", "vqa_rad-qcr-maml-unloaded"),
    Ablation("nearest resize of the gray caches (Pillow 6 default)", "vqa_rad-mevf_ban", "vqa_rad-mevf_ban-nearest"),
    Ablation("nearest resize of the gray caches (Pillow 6 default)", "vqa_rad-mevf_ban-frozen",
             "vqa_rad-mevf_ban-frozen-nearest"),
    Ablation("200 epochs instead of 20", "vqa_rad-mevf_ban", "vqa_rad-mevf_ban-200", length=True),
    Ablation("one thread instead of two (float32, only the order of sums changes)", "vqa_rad-mevf_ban",
             "vqa_rad-mevf_ban-threads1"),
    Ablation("bf16 autocast", "vqa_rad-mevf_ban", "vqa_rad-mevf_ban-bf16"),
    Ablation("bf16 autocast, visual branches in float32", "vqa_rad-mevf_ban", "vqa_rad-mevf_ban-bf16-visual32"),
    Ablation("bf16 autocast", "vqa_rad-mevf_ban-frozen", "vqa_rad-mevf_ban-frozen-bf16"),
    Ablation("bf16 autocast", "vqa_rad-qcr", "vqa_rad-qcr-bf16"),
    Ablation("bf16 autocast", "vqa_rad-qcr-frozen", "vqa_rad-qcr-frozen-bf16"),
)
GRID = Grid(ROWS, ABLATIONS, root=Path(__file__).resolve().parents[1])


def main(argv: list[str] | None = None) -> int:
    """The command line of this project's grid (the usage above)."""
    return reproduce_main(GRID, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
