"""Shared fixtures: the real-data root and small helpers.

The data root is ``$MEDVQA_DATA_ROOT`` or ``../shared/data`` beside the repository. When it is absent
the real-data tests skip with one line; with ``CI=true`` a missing root fails the run instead.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(min(2, torch.get_num_threads()))


def _data_root() -> Path:
    return Path(os.environ.get("MEDVQA_DATA_ROOT", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if not (root / "vqa_rad").is_dir():
        message = f"real data root not found at {root} (set MEDVQA_DATA_ROOT)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI=true requires it")
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def experiment() -> Callable[[str], ModuleType]:
    """Imports a script of ``experiments/`` (a folder of scripts, not a package): ``experiment("reproduce")``."""
    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "experiments" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
        return module
    return load


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.items and not session.config.option.collectonly:
        raise pytest.UsageError("no tests collected: refusing to report success")
