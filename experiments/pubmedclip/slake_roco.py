"""Write SLAKE images as a small image-caption set: ROCO layout or a CSV, captions templated from the labels.

    python experiments/pubmedclip/slake_roco.py --data-root ../shared/data --out runs/pubmedclip-data/slake_roco

Each SLAKE image (English records) becomes a pair whose caption names its modality and organ, e.g.
"a computed tomography scan of the abdomen". ``--roco-lines N`` appends the first N real ROCO caption lines
(their images are absent, so readers drop and count them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from infra.files import read_text, write_text_atomic
from pubmedclip.data import read_labelled

MODALITY = {"CT": "a computed tomography scan", "MRI": "a magnetic resonance image", "X-Ray": "an x-ray"}
SPLITS = {"train": "train", "validation": "validate", "test": "test"}


def slake_captions(data_root: Path, split: str) -> list[tuple[Path, str]]:
    """(image path, templated caption) for each SLAKE image with English questions in ``split``."""
    return [
        (image.image, f"{MODALITY[image.labels['modality']]} of the {image.labels['organ'].replace('_', ' ').lower()}")
        for image in read_labelled(data_root.resolve() / "slake" / "Slake1.0")
        if image.split == split
    ]


def write_roco_layout(data_root: Path, out: Path, sizes: dict[str, int], roco_lines: int = 0) -> None:
    """``out/<split>/radiology/{captions.txt, dlinks.txt, images/}`` with images linked, not copied."""
    real = data_root / "roco" / "test" / "radiology"
    for split, count in sizes.items():
        folder = out / split / "radiology"
        (folder / "images").mkdir(parents=True, exist_ok=True)
        captions, links = [], []
        for i, (image, caption) in enumerate(slake_captions(data_root, SPLITS[split])[:count]):
            name = f"{image.parent.name}.jpg"
            if not (folder / "images" / name).exists():
                (folder / "images" / name).symlink_to(image)
            captions.append(f"SLAKE_{split}_{i}\t {caption}")
            links.append(f"SLAKE_{split}_{i}\tlocal {image}\t{name}")
        if split == "train" and roco_lines:
            captions += read_text(real / "captions.txt").splitlines()[:roco_lines]
            links += read_text(real / "dlinks.txt").splitlines()[:roco_lines]
        write_text_atomic(folder / "captions.txt", "\n".join(captions) + "\n")
        write_text_atomic(folder / "dlinks.txt", "\n".join(links) + "\n")


def write_csv(data_root: Path, out: Path, split: str = "train") -> Path:
    """A comma-separated ``filepath,title`` file (open_clip's CSV columns) with absolute image paths."""
    rows = ["filepath,title"] + [f"{image},{caption}" for image, caption in slake_captions(data_root, SPLITS[split])]
    write_text_atomic(out, "\n".join(rows) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("runs/pubmedclip-data/slake_roco"))
    parser.add_argument("--roco-lines", type=int, default=0)
    args = parser.parse_args(argv)
    write_roco_layout(
        args.data_root, args.out, {"train": 10_000, "validation": 10_000, "test": 10_000}, args.roco_lines
    )
    print(f"wrote {args.out}/{{train,validation,test}}/radiology")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
