"""Write SLAKE images as a small image-caption set: ROCO layout or a CSV, captions templated from the labels.

    python experiments/pubmedclip/slake_roco.py --data-root ../shared/data --out runs/pubmedclip-data/slake_roco

Each SLAKE image (English records) becomes a pair whose caption names its modality and organ, e.g.
"a computed tomography scan of the abdomen". ``--roco-lines N`` appends the first N real ROCO caption lines
(their images are absent, so readers drop and count them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from infra.files import write_text_atomic

MODALITY = {"CT": "a computed tomography scan", "MRI": "a magnetic resonance image", "X-Ray": "an x-ray"}
SPLITS = {"train": "train", "validation": "validate", "test": "test"}


def slake_captions(data_root: Path, split: str) -> list[tuple[Path, str]]:
    """(image path, templated caption) for each SLAKE image with English questions in ``split``."""
    data_root = data_root.resolve()
    first: dict[str, dict] = {}
    for q in json.loads((data_root / "slake" / "Slake1.0" / f"{split}.json").read_text(encoding="utf-8")):
        if q["q_lang"] == "en":
            first.setdefault(q["img_name"], q)
    return [
        (
            data_root / "slake" / "Slake1.0" / "imgs" / name,
            f"{MODALITY[q['modality']]} of the {q['location'].replace('_', ' ').lower()}",
        )
        for name, q in first.items()
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
            captions += (real / "captions.txt").read_text(encoding="utf-8").splitlines()[:roco_lines]
            links += (real / "dlinks.txt").read_text(encoding="utf-8").splitlines()[:roco_lines]
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
