"""The small synthetic dataset the training tests run on, prepared with the image caches a test needs."""
from collections.abc import Callable
from pathlib import Path

import pytest

from medvqa.cli import main as cli_main


@pytest.fixture(scope="module")
def prepare_synthetic(tmp_path_factory) -> Callable[[str], Path]:
    """``prepare_synthetic("gray84,gray128")``: a 16-image synthetic dataset with those image caches."""
    def prepare(image_specs: str) -> Path:
        out = tmp_path_factory.mktemp("data") / "synthetic"
        cli_main(["prepare", "synthetic", "--out", str(out), "--synthetic-images", "16", "--image-specs", image_specs])
        return out
    return prepare
