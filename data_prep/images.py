"""Decode every image once into compact uint8 caches, one memory-mappable ``.npy`` per input spec."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from tqdm import tqdm

from medvqa.errors import UserError

RESIZE_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST,
                  "bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS}


@dataclass(frozen=True)
class ImageSpec:
    """How one cache is made. ``square``: PIL ``convert(mode)`` then ``resize((size, size))`` as the
    published MEVF caches; ``clip``: bicubic resize of the short side then a centre crop, as CLIP."""

    name: str
    size: int
    mode: str  # "L" or "RGB"
    resize: str  # "square" or "clip"

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.size, self.size) if self.mode == "L" else (self.size, self.size, 3)


IMAGE_SPECS = {
    "gray84": ImageSpec("gray84", 84, "L", "square"),
    "gray128": ImageSpec("gray128", 128, "L", "square"),
    "rgb224": ImageSpec("rgb224", 224, "RGB", "clip"),
    "rgb288": ImageSpec("rgb288", 288, "RGB", "clip"),
}


def parse_specs(names: Sequence[str]) -> list[ImageSpec]:
    unknown = [n for n in names if n not in IMAGE_SPECS]
    if unknown:
        raise UserError(f"unknown image spec(s) {unknown}: choose from {', '.join(IMAGE_SPECS)}")
    return [IMAGE_SPECS[n] for n in names]


def render(image: Image.Image, spec: ImageSpec, square_filter: str = "bicubic") -> np.ndarray:
    """One decoded image -> uint8 array of ``spec.shape``."""
    converted = image.convert(spec.mode)
    if spec.resize == "square":
        resized = converted.resize((spec.size, spec.size), RESIZE_FILTERS[square_filter])
    else:
        resized = TF.center_crop(TF.resize(converted, spec.size, InterpolationMode.BICUBIC), spec.size)
    return np.asarray(resized, dtype=np.uint8)


def build_image_caches(image_ids: Sequence[str], open_image: Callable[[str], Image.Image],
                       specs: Sequence[ImageSpec], out_dir: Path, square_filter: str = "bicubic") -> dict:
    """Write ``out_dir/<spec>.npy`` with one row per image id; return the manifest."""
    if square_filter not in RESIZE_FILTERS:
        raise UserError(f"unknown resize filter {square_filter!r}: choose from {', '.join(RESIZE_FILTERS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = {spec.name: np.lib.format.open_memmap(out_dir / f"{spec.name}.npy", mode="w+", dtype=np.uint8,
                                                   shape=(len(image_ids), *spec.shape)) for spec in specs}
    for row, image_id in enumerate(tqdm(image_ids, desc="images", unit="img", leave=False, disable=None)):
        image = open_image(image_id)
        for spec in specs:
            arrays[spec.name][row] = render(image, spec, square_filter)
    for array in arrays.values():
        array.flush()
    return {
        "images": list(image_ids),
        "square_filter": square_filter,
        "specs": {spec.name: {**asdict(spec), "file": f"{spec.name}.npy", "shape": [len(image_ids), *spec.shape]}
                  for spec in specs},
    }
