"""How images reach an encoder: one ``InputSpec`` names the prepared uint8 cache, its geometry, resampling
and normalisation.

The same type says how ``medvqa prepare`` makes a cache (``image_spec("gray84")``) and what an encoder
expects (the MAML CNN reads ``gray84`` as it is; a CLIP checkpoint reads ``rgb224`` with its own mean and std).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from infra.errors import UserError

INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos")
RESIZE_MODES = ("squash", "shortest")  # open_clip's names: resize to size x size | short side to size, centre crop
CACHE_KEY = re.compile(r"(gray|rgb)([1-9][0-9]*)")
MAX_SIZE = 1024


@dataclass(frozen=True)
class InputSpec:
    """Square images of ``size``, resized as ``resize_mode`` with ``interpolation``, scaled to [0, 1] and
    normalised as (x - mean) / std."""

    key: str  # the prepared uint8 cache the images come from: "gray84", "gray128", "rgb224", ... (gray<N> or rgb<N>)
    size: int  # side in pixels
    channels: int  # 1 (grayscale) or 3 (RGB)
    mean: tuple[float, ...] = (0.0,)  # one per channel, or one for all
    std: tuple[float, ...] = (1.0,)
    interpolation: str = "bicubic"  # one of INTERPOLATIONS
    resize_mode: str = "squash"  # "squash": to size x size (the published MEVF caches); "shortest": as CLIP

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        problems = [f"{name} {value!r} (expected one of {', '.join(allowed)})" for name, value, allowed in
                    (("interpolation", self.interpolation, INTERPOLATIONS),
                     ("resize_mode", self.resize_mode, RESIZE_MODES),
                     ("channels", self.channels, (1, 3))) if value not in allowed]
        if {len(self.mean), len(self.std)} - {1, self.channels}:
            problems.append(f"mean {list(self.mean)} / std {list(self.std)} (expected 1 or {self.channels} values)")
        if problems:
            raise UserError(f"input spec {self.key}: {'; '.join(problems)}")

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one image of the uint8 cache: ``(size, size)`` or ``(size, size, 3)``."""
        return (self.size, self.size) if self.channels == 1 else (self.size, self.size, self.channels)


def image_spec(key: str) -> InputSpec:
    """How the prepared cache ``key`` is made: ``gray<N>`` (MAML 84, CDAE 128) converted to grayscale and
    squashed to N x N as the published MEVF caches, or ``rgb<N>`` (CLIP: 224, 288 for RN50x4, 336 ...) with the
    short side resized to N and centre-cropped as CLIP's own preprocessing; bicubic both."""
    match = CACHE_KEY.fullmatch(key)
    if match is None or not 8 <= int(match[2]) <= MAX_SIZE:
        raise UserError(f"unknown image spec {key!r}: expected gray<N> or rgb<N> with 8 <= N <= {MAX_SIZE}, "
                        "such as gray84, gray128, rgb224")
    size = int(match[2])
    if match[1] == "gray":
        return InputSpec(key, size, channels=1, resize_mode="squash")
    return InputSpec(key, size, channels=3, resize_mode="shortest")
