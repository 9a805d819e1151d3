"""Decode every image once into compact uint8 caches, one memory-mappable ``.npy`` per input spec."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from tqdm import tqdm

from data_prep.input_spec import InputSpec, image_spec
from infra.errors import UserError

RESIZE_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST,
                  "bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS}
DEFAULT_IMAGE_SPECS = ("gray84", "gray128", "rgb224", "rgb288")  # MAML, CDAE, CLIP ViT-B/32 and RN50, RN50x4


def parse_specs(names: Sequence[str]) -> list[InputSpec]:
    return [image_spec(name) for name in names]


def render(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """One decoded image -> uint8 array of ``spec.shape``, resized as ``spec`` says."""
    converted = image.convert("L" if spec.channels == 1 else "RGB")
    if spec.resize_mode == "squash":
        resized = converted.resize((spec.size, spec.size), RESIZE_FILTERS[spec.interpolation])
    else:
        resized = TF.center_crop(TF.resize(converted, spec.size, InterpolationMode(spec.interpolation)), spec.size)
    return np.asarray(resized, dtype=np.uint8)


def build_image_caches(image_ids: Sequence[str], open_image: Callable[[str], Image.Image],
                       specs: Sequence[InputSpec], out_dir: Path, square_filter: str = "bicubic") -> dict:
    """Write ``out_dir/<spec>.npy`` with one row per image id; return the manifest.

    ``square_filter`` resizes the squashed (``gray<N>``) caches; the ``rgb<N>`` caches stay bicubic, as CLIP.
    """
    if square_filter not in RESIZE_FILTERS:
        raise UserError(f"unknown resize filter {square_filter!r}: choose from {', '.join(RESIZE_FILTERS)}")
    specs = [replace(spec, interpolation=square_filter) if spec.resize_mode == "squash" else spec for spec in specs]
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = {spec.key: np.lib.format.open_memmap(out_dir / f"{spec.key}.npy", mode="w+", dtype=np.uint8,
                                                  shape=(len(image_ids), *spec.shape)) for spec in specs}
    for row, image_id in enumerate(tqdm(image_ids, desc="images", unit="img", leave=False, disable=None)):
        image = open_image(image_id)
        for spec in specs:
            arrays[spec.key][row] = render(image, spec)
    for array in arrays.values():
        array.flush()
    return {
        "images": list(image_ids),
        "square_filter": square_filter,
        "specs": {spec.key: {**asdict(spec), "file": f"{spec.key}.npy", "shape": [len(image_ids), *spec.shape]}
                  for spec in specs},
    }
