"""Decode every image once into compact uint8 caches, one memory-mappable ``.npy`` per input spec."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from tqdm import tqdm

from infra.errors import UserError

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


SPEC_KINDS = {"gray": ("L", "square"), "rgb": ("RGB", "clip")}  # name prefix -> (mode, resize)
SPEC_NAME = re.compile(r"(gray|rgb)([1-9][0-9]*)")
MAX_SIZE = 1024


def image_spec(name: str) -> ImageSpec:
    """``gray<N>`` (MAML 84, CDAE 128) or ``rgb<N>`` (CLIP: 224, 288 for RN50x4, 336 ...)."""
    match = SPEC_NAME.fullmatch(name)
    if match is None or not 8 <= int(match[2]) <= MAX_SIZE:
        raise UserError(f"unknown image spec {name!r}: expected gray<N> or rgb<N> with 8 <= N <= {MAX_SIZE}, "
                        "such as gray84, gray128, rgb224")
    return ImageSpec(name, int(match[2]), *SPEC_KINDS[match[1]])


DEFAULT_IMAGE_SPECS = ("gray84", "gray128", "rgb224", "rgb288")  # MAML, CDAE, CLIP ViT-B/32 and RN50, RN50x4


def parse_specs(names: Sequence[str]) -> list[ImageSpec]:
    return [image_spec(name) for name in names]


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
