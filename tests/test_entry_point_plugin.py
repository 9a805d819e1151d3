"""A head in a package of its own (examples/fusion_mlp_head) registers through the ``medvqa.plugins`` entry
point: installed (into a folder of this test only, so nothing leaks into other tests) and trained through
the grid, with no ``plugins:`` entry anywhere."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import infra.plugins
from infra.errors import UserError
from infra.plugins import load_entry_points
from medvqa.models import list_heads

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fusion_mlp_head"


def test_the_example_head_is_under_30_lines() -> None:
    lines = [line for line in (EXAMPLE / "fusion_mlp_head.py").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith(("#", '"""'))]
    assert len(lines) < 30


def test_installed_head_trains_through_the_grid(tmp_path: Path) -> None:
    source, site = tmp_path / "fusion_mlp_head", tmp_path / "site"
    shutil.copytree(EXAMPLE, source)  # the build writes its metadata beside the sources: not into the repository
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(source)], check=True, capture_output=True)
    assert "fusion_mlp" not in list_heads()  # this process has not got it: only the grid's does
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    medvqa = [sys.executable, "-m", "medvqa.cli"]
    subprocess.run([*medvqa, "prepare", "synthetic", "--out", str(data), "--synthetic-images", "16",
                    "--image-specs", "gray84,gray128"], check=True, env=env, capture_output=True)
    (tmp_path / "fusion.yaml").write_text(yaml.safe_dump({
        "base": str(ROOT / "configs" / "synthetic" / "mevf_ban_tiny.yaml"),
        "model": {"name": "fusion_mlp", "freeze_visual": True, "head": {"hidden_dim": 16, "dropout": 0.1}}}))
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({
        "datasets": {"synthetic": str(data)}, "heads": {"fusion_mlp": str(tmp_path / "fusion.yaml")},
        "encoders": {"maml+cdae": {}}, "seeds": [0], "overrides": ["train.epochs=1"]}))
    done = subprocess.run([*medvqa, "grid", "--grid", str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "out" / "cells" / "synthetic" / "fusion_mlp" / "maml+cdae" / "s0"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["name"] == "fusion_mlp" and config["model"]["head"] == {"hidden_dim": 16, "dropout": 0.1}
    assert config["plugins"] == [] and json.loads((run / "cell.json").read_text())["epochs"] == 1
    assert (tmp_path / "out" / "report.html").is_file()


def test_a_broken_entry_point_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[medvqa.plugins]\nbroken = no_such_module_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(infra.plugins, "_loaded_groups", set())
    with pytest.raises(UserError, match=r"^plug-in 'broken' = 'no_such_module_here' of broken-plugin \(entry point "
                                        r"group medvqa.plugins\) failed to load: ModuleNotFoundError"):
        load_entry_points()
    load_entry_points()  # once per process: not retried
