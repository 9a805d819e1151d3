"""experiments/reproduce.py: tables and plots collected from run directories."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from medvqa import train
from medvqa.errors import UserError
from medvqa.cli import main as medvqa_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reproduce(experiment):
    return experiment("reproduce")


def test_rows_point_at_existing_configs(reproduce) -> None:
    for name, row in reproduce.ROWS.items():
        assert (REPO / row.config).is_file(), name
        assert set(row.protocols) <= set(reproduce.PROTOCOLS)


def test_report_from_runs(reproduce, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert medvqa_main(["prepare", "synthetic", "--out", str(data), "--synthetic-images", "40",
                        "--image-specs", "gray84,gray128"]) == 0
    runs = tmp_path / "runs"
    for seed in (0, 1):
        run_dir = runs / "vqa_rad-mevf_ban-frozen" / f"s{seed}"
        assert train.main(["--config", str(REPO / "configs/synthetic/mevf_ban_tiny.yaml"), "--out", str(run_dir),
                           f"data.root={data}", "model.freeze_visual=true", "train.epochs=2",
                           f"train.seed={seed}"]) == 0
    summary = reproduce.report(runs, tmp_path / "out")
    assert list(summary["seeds"]) == [2] and "+-" in summary["overall"].iloc[0]
    assert summary["schedule"].iloc[0] == "2 epochs, frozen branches"
    table = (tmp_path / "out" / "table.md").read_text()
    assert table.startswith("| row | protocol |") and "vqa_rad-mevf_ban-frozen" in table
    assert (tmp_path / "out" / "curves.png").stat().st_size > 0 and (tmp_path / "out" / "seed_spread.png").is_file()
    assert (tmp_path / "out" / "ablation.md").read_text() == "no ablation has both rows\n"
    runs_csv = (tmp_path / "out" / "runs.csv").read_text().splitlines()
    assert len(runs_csv) == 3
    assert json.loads((runs / "vqa_rad-mevf_ban-frozen" / "s0" / "results_sound.json").read_text())["protocol"] == "sound"

    archived = tmp_path / "out" / "runs" / "vqa_rad-mevf_ban-frozen" / "s1"
    assert sorted(p.name for p in archived.iterdir()) == ["config.yaml", "metrics.csv", "results_sound.json"]
    shutil.rmtree(runs / "vqa_rad-mevf_ban-frozen" / "s1")  # a machine that holds only some runs
    assert list(reproduce.report(runs, tmp_path / "out")["seeds"]) == [2]
    shutil.rmtree(archived)  # dropping a run from the table
    assert list(reproduce.report(runs, tmp_path / "out")["seeds"]) == [1]

    with pytest.raises(UserError, match="inside the archive"):  # would replace the runs with their light files
        reproduce.report(tmp_path / "out" / "runs", tmp_path / "out")
    assert (runs / "vqa_rad-mevf_ban-frozen" / "s0" / "checkpoints" / "last.pt").is_file()
    (tmp_path / "out" / "runs" / "old-name").mkdir()
    shutil.copytree(runs / "vqa_rad-mevf_ban-frozen" / "s0", tmp_path / "out" / "runs" / "old-name" / "s0")
    with pytest.raises(UserError, match="old-name is not a row of this script"):
        reproduce.report(runs, tmp_path / "out")


def test_ablation_table_gives_the_change_over_the_seeds_of_both_rows(reproduce) -> None:
    def result(row: str, seed: int, overall: float, schedule: str = "20 epochs") -> dict:
        return {"row": row, "seed": seed, "protocol": "sound", "open": overall - 10, "closed": overall + 10,
                "overall": overall, "schedule": schedule}

    results = pd.DataFrame([result("vqa_rad-mevf_ban", 1, 60.0), result("vqa_rad-mevf_ban", 2, 62.0),
                            result("vqa_rad-mevf_ban-frozen", 1, 50.0), result("vqa_rad-mevf_ban-frozen", 2, 51.0),
                            result("vqa_rad-mevf_ban-frozen", 3, 55.0),
                            result("vqa_rad-mevf_ban-nearest", 1, 99.0, "20 epochs (stopped after 3)")])
    table = reproduce.ablation_table(results)
    assert len(table) == 1  # the unfinished nearest run is left out; bf16 and all-train have no runs
    line = table.iloc[0]
    assert (line["base"], line["variant"], line["protocol"]) == ("vqa_rad-mevf_ban", "vqa_rad-mevf_ban-frozen", "sound")
    assert line["base overall (seeds)"] == "61.0 +- 1.4 (2)" and line["variant overall (seeds)"] == "52.0 +- 2.6 (3)"
    assert line["change open / closed / overall"] == "-9.0 / -9.0 / -9.0"  # means 61 and 52
    assert line["paired"] == "2 (0.7)"  # per-seed changes -10 and -11


def test_update_readme_refreshes_only_the_blocks_of_this_report(reproduce, tmp_path: Path) -> None:
    out = tmp_path / "results" / "cpu"
    out.mkdir(parents=True)
    (out / "table.md").write_text("| a |\n|---|\n| 1 |\n")
    readme = tmp_path / "README.md"
    other = "<!-- reproduce: results/h100/table.md -->\nkept\n<!-- /reproduce -->\n"
    readme.write_text(f"# Title\n<!-- reproduce: results/cpu/table.md -->\nstale\n<!-- /reproduce -->\nprose\n{other}")
    assert reproduce.update_readme(readme, out) == 1
    assert readme.read_text() == ("# Title\n<!-- reproduce: results/cpu/table.md -->\n\n| a |\n|---|\n| 1 |\n\n"
                                  f"<!-- /reproduce -->\nprose\n{other}")
    assert reproduce.update_readme(readme, out) == 1 and readme.read_text().count("| 1 |") == 1  # idempotent

    readme.write_text("no blocks\n")
    with pytest.raises(UserError, match="has no block quoting a file of"):
        reproduce.update_readme(readme, out)
    readme.write_text("<!-- reproduce: results/cpu/missing.md -->\n<!-- /reproduce -->\n")
    with pytest.raises(UserError, match="quotes results/cpu/missing.md, which the report did not write"):
        reproduce.update_readme(readme, out)
    assert readme.read_text() == "<!-- reproduce: results/cpu/missing.md -->\n<!-- /reproduce -->\n"


def test_readme_quotes_the_committed_tables(reproduce) -> None:
    blocks = list(reproduce.README_BLOCK.finditer((REPO / "README.md").read_text()))
    assert len(blocks) >= 3
    for block in blocks:
        quoted, content = block[2], block[0][len(block[1]):]
        assert content.strip() == (REPO / quoted).read_text().strip(), f"README block {quoted} is stale: report --readme"


@pytest.mark.parametrize("machine", ["cpu", "h100"])
def test_committed_tables_rebuild_from_their_archive(reproduce, machine: str) -> None:
    results = REPO / "experiments" / "results" / machine
    rebuilt = reproduce.collect(results / "runs")
    committed = pd.read_csv(results / "runs.csv")
    assert len(rebuilt) == len(committed) > 0
    columns = ["row", "seed", "protocol", "overall", "schedule"]
    assert rebuilt[columns].astype(str).values.tolist() == committed[columns].astype(str).values.tolist()


def test_row_refuses_data_resized_with_another_filter(reproduce, tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    assert medvqa_main(["prepare", "synthetic", "--out", str(data), "--synthetic-images", "16",
                        "--image-specs", "gray84"]) == 0
    status = reproduce.main(["run", "vqa_rad-mevf_ban-frozen-nearest", "--runs", str(tmp_path / "runs"),
                             "--data", f"vqa_rad={data}"])
    assert status == 2 and not (tmp_path / "runs").exists()
    assert "needs data prepared with --resize-filter nearest" in capsys.readouterr().err
    assert reproduce.main(["run", "vqa_rad-mevf_ban-frozen", "--runs", str(tmp_path / "runs"),
                           "--data", f"vqa_rad={tmp_path / 'none'}"]) == 2
    assert "is not a prepared dataset" in capsys.readouterr().err


def test_report_without_runs(reproduce, tmp_path: Path) -> None:
    assert reproduce.main(["report", "--runs", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
