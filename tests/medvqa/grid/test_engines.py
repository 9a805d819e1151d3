"""The grid's cluster engines run one cell per job in the same resumable cell directories: submitit (its
local executor stands in for SLURM) and a dask pool."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from infra.errors import UserError
from medvqa.grid import CELL_FILE
from medvqa.grid.cli import main as grid_main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def grid_file(prepare_synthetic, tmp_path_factory) -> Path:
    data = prepare_synthetic("gray84,gray128")
    grid = {"title": "engines", "datasets": {"synthetic": str(data)},
            "heads": {"mevf_ban": str(ROOT / "configs" / "synthetic" / "mevf_ban_tiny.yaml")},
            "encoders": {"maml+cdae": {}, "maml": {}}, "seeds": [3],
            "overrides": ["train.epochs=1", "model.head.hidden_dim=16", "model.freeze_visual=true"]}
    path = tmp_path_factory.mktemp("grid") / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


@pytest.mark.parametrize(("engine", "options"), [("submitit", ["cluster=local", "timeout_min=5"]),
                                                 ("dask", ["workers=1"])])
def test_engine_runs_one_cell_per_job(grid_file: Path, tmp_path: Path, engine: str, options: list[str],
                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    flags = [x for option in options for x in ("--engine-option", option)]
    assert grid_main(["--grid", str(grid_file), "--out", str(out), "--engine", engine, *flags]) == 0
    cells = [out / "cells/synthetic/mevf_ban" / encoder / "s3" for encoder in ("maml+cdae", "maml")]
    assert all(json.loads((cell / CELL_FILE).read_text())["seed"] == 3 for cell in cells)
    assert pd.read_csv(out / "status.csv").state.tolist() == ["done", "done"] and (out / "report.html").is_file()
    if engine == "submitit":
        assert len(list((out / "jobs").glob("*/*_result.pkl"))) == 2  # one job per cell
    stamps = [(cell / CELL_FILE).stat().st_mtime_ns for cell in cells]
    capsys.readouterr()
    assert grid_main(["--grid", str(grid_file), "--out", str(out)]) == 0  # the local engine finds them finished
    assert "2 cells: 2 done, 0 partial, 0 pending, 0 skipped" in capsys.readouterr().out
    assert [(cell / CELL_FILE).stat().st_mtime_ns for cell in cells] == stamps


@pytest.mark.parametrize(("args", "message"), [
    (["--engine", "ray"], "unknown engine 'ray': choose from local, submitit, dask"),
    (["--engine", "dask", "--engine-option", "nodes=3"], "--engine-option nodes: dask takes scheduler=ADDRESS"),
    (["--engine-option", "timeout"], "--engine-option 'timeout': expected KEY=VALUE"),
    (["--engine", "dask", "--engine-option", "workers=two"], "--engine-option workers=two: expected a whole number"),
])
def test_engine_mistakes_are_one_line_errors(grid_file: Path, tmp_path: Path, args: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        grid_main(["--grid", str(grid_file), "--out", str(tmp_path / "out"), *args])
