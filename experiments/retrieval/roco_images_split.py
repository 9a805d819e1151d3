"""Split the staged real ROCO images (``roco_images/index.tsv``) into train / validation / test caption files.

    python experiments/retrieval/roco_images_split.py --out runs/retrieval-data/roco_images

Writes ``train.csv``, ``val.csv`` and ``test.csv`` (columns ``id,image,caption``; ``image`` relative to
``roco_images/``, so pass that folder as the image root). The split is a seeded shuffle of the ROCO ids:
the same seed gives the same files on every machine.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
from pathlib import Path

from infra.files import write_text_atomic

SPLITS = ("train", "val", "test")


def split_index(index: Path, sizes: tuple[int, int], seed: int) -> dict[str, list[tuple[str, str, str]]]:
    """(roco id, image relative to the index folder, caption) rows per split; test takes what train and val leave."""
    rows = [(row["roco_id"], row["image"], row["caption"].strip())
            for row in csv.DictReader(io.StringIO(index.read_text(encoding="utf-8")), delimiter="\t")]
    rows.sort()
    random.Random(seed).shuffle(rows)
    n_train, n_val = sizes
    return {"train": rows[:n_train], "val": rows[n_train:n_train + n_val], "test": rows[n_train + n_val:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", type=int, default=452)
    parser.add_argument("--val", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    splits = split_index(args.data_root / "roco_images" / "index.tsv", (args.train, args.val), args.seed)
    for name in SPLITS:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(("id", "image", "caption"))
        writer.writerows(splits[name])
        write_text_atomic(args.out / f"{name}.csv", text.getvalue())
        print(f"{name}: {len(splits[name])} pairs -> {args.out / f'{name}.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
