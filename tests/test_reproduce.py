"""medvqa.reproduce over this project's grid (experiments/reproduce.py) and over a grid of its own:
tables and plots collected from run directories, the archive, status and the README blocks."""
from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import yaml

from infra.errors import UserError
from medvqa import train
from medvqa.cli import main as medvqa_main
from medvqa.config import load_config
from medvqa.protocols import PROTOCOLS
from medvqa.reproduce import Ablation, Grid, Row
from medvqa.reproduce import main as reproduce_main
from medvqa.reproduce.archive import archive, config_changes
from medvqa.reproduce.plots import plot_selection
from medvqa.reproduce.readme import README_BLOCK, update_readme
from medvqa.reproduce.report import report
from medvqa.reproduce.results import REPLAYABLE, collect, late_overall, replay, reported_after_each_epoch, saved_config, schedule
from medvqa.reproduce.status import run_status, time_to_train
from medvqa.reproduce.tables import ablation_table, matched_ablation_table, per_question_change

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reproduce(experiment):
    return experiment("reproduce")


@pytest.fixture(scope="module")
def grid(reproduce) -> Grid:
    return reproduce.GRID


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("synthetic") / "data"
    assert medvqa_main(["prepare", "synthetic", "--out", str(data), "--synthetic-images", "40",
                        "--image-specs", "gray84,gray128"]) == 0
    return data


def test_rows_point_at_existing_configs(grid: Grid) -> None:
    for name, row in grid.rows.items():
        assert grid.config_path(name) == REPO / row.config and grid.config_path(name).is_file(), name
        assert name.startswith(f"{row.dataset}-"), name  # a row is named after the dataset it trains on
        assert set(row.protocols) <= set(PROTOCOLS)
        load_config(REPO / row.config, list(row.overrides))  # the overrides name real keys
    for ablation in grid.ablations:
        assert {ablation.base, ablation.variant} <= set(grid.rows), ablation


def test_report_from_runs(reproduce, grid: Grid, synthetic_data: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed in (0, 1):
        run_dir = runs / "vqa_rad-mevf_ban-frozen" / f"s{seed}"
        assert train.main(["--config", str(REPO / "configs/synthetic/mevf_ban_tiny.yaml"), "--out", str(run_dir),
                           f"data.root={synthetic_data}", "model.freeze_visual=true", "train.epochs=2",
                           f"train.seed={seed}"]) == 0
    assert reproduce.main(["evaluate", "vqa_rad-mevf_ban-frozen", "--seeds", "0,1", "--runs", str(runs)]) == 0
    assert sorted(p.name for p in (runs / "vqa_rad-mevf_ban-frozen" / "s1").glob("results_*.json")) == [
        "results_mevf-legacy.json", "results_pubmedclip-legacy.json", "results_sound.json"]
    assert reproduce.main(["evaluate", "vqa_rad-mevf_ban-frozen", "--seeds", "2", "--runs", str(runs)]) == 2
    summary = report(grid, runs, tmp_path / "out")
    assert list(summary["seeds"]) == [2, 2, 2] and "+-" in summary["overall"].iloc[0]
    assert summary["schedule"].iloc[0] == "2 epochs, frozen branches"
    table = (tmp_path / "out" / "table.md").read_text()
    assert table.startswith("| row | protocol |") and "vqa_rad-mevf_ban-frozen" in table
    assert (tmp_path / "out" / "curves.png").stat().st_size > 0 and (tmp_path / "out" / "seed_spread.png").is_file()
    assert (tmp_path / "out" / "ablation.md").read_text() == "no ablation has both rows\n"
    assert (tmp_path / "out" / "ablation_matched.md").read_text() == "no ablation with a run stopped early\n"
    runs_csv = (tmp_path / "out" / "runs.csv").read_text().splitlines()
    assert len(runs_csv) == 1 + 2 * 3  # two seeds under three protocols
    sound = runs / "vqa_rad-mevf_ban-frozen" / "s0" / "results_sound.json"
    assert json.loads(sound.read_text())["protocol"] == "sound"

    archived = tmp_path / "out" / "runs" / "vqa_rad-mevf_ban-frozen" / "s1"
    assert sorted(p.name for p in archived.iterdir()) == [
        "config.yaml", "metrics.csv", "predictions_mevf-legacy.csv", "predictions_pubmedclip-legacy.csv",
        "predictions_sound.csv", "results_mevf-legacy.json", "results_pubmedclip-legacy.json", "results_sound.json"]
    shutil.rmtree(runs / "vqa_rad-mevf_ban-frozen" / "s1")  # a machine that holds only some runs
    assert list(report(grid, runs, tmp_path / "out")["seeds"]) == [2, 2, 2]
    shutil.rmtree(archived)  # dropping a run from the table
    assert list(report(grid, runs, tmp_path / "out")["seeds"]) == [1, 1, 1]

    with pytest.raises(UserError, match="inside the archive"):  # would replace the runs with their light files
        report(grid, tmp_path / "out" / "runs", tmp_path / "out")
    assert (runs / "vqa_rad-mevf_ban-frozen" / "s0" / "checkpoints" / "last.pt").is_file()
    (tmp_path / "out" / "runs" / "old-name").mkdir()
    shutil.copytree(runs / "vqa_rad-mevf_ban-frozen" / "s0", tmp_path / "out" / "runs" / "old-name" / "s0")
    with pytest.raises(UserError, match="old-name is not a row of this script"):
        report(grid, runs, tmp_path / "out")


def test_ablation_table_gives_the_change_over_the_seeds_of_both_rows(grid: Grid, tmp_path: Path) -> None:
    def result(row: str, seed: int, overall: float, schedule: str = "20 epochs", epochs: int = 20) -> dict:
        return {"row": row, "seed": seed, "protocol": "sound", "open": overall - 10, "closed": overall + 10,
                "overall": overall, "schedule": schedule, "epochs": epochs, "finished": "stopped" not in schedule}

    results = pd.DataFrame([result("vqa_rad-mevf_ban", 1, 60.0), result("vqa_rad-mevf_ban", 2, 62.0),
                            result("vqa_rad-mevf_ban-frozen", 1, 50.0), result("vqa_rad-mevf_ban-frozen", 2, 51.0),
                            result("vqa_rad-mevf_ban-frozen", 3, 55.0),
                            result("vqa_rad-mevf_ban-nearest", 1, 99.0, "20 epochs (stopped after 3)"),
                            result("vqa_rad-mevf_ban-frozen-bf16", 1, 40.0, "10 epochs", epochs=10)])
    table = ablation_table(grid, results, tmp_path)
    assert len(table) == 1  # left out: the unfinished nearest run, the bf16 run of another length; all-train has none
    line = table.iloc[0]
    assert (line["base"], line["variant"], line["protocol"]) == ("vqa_rad-mevf_ban", "vqa_rad-mevf_ban-frozen", "sound")
    assert line["base overall (seeds)"] == "61.0 +- 1.4 (2)" and line["variant overall (seeds)"] == "52.0 +- 2.6 (3)"
    assert line["change open / closed / overall"] == "-9.0 / -9.0 / -9.0"  # means 61 and 52
    assert line["paired"] == "2 (0.7)"  # per-seed changes -10 and -11
    assert line["per question"] == "-"  # no predictions archived
    stopped = pd.DataFrame([result("vqa_rad-mevf_ban-frozen", 4, 30.0, "20 epochs (stopped after 3)", epochs=3)])
    assert ablation_table(grid, pd.concat([results, stopped]), tmp_path).empty  # matched_ablation_table's, now
    longer = pd.DataFrame([result("vqa_rad-mevf_ban-200", 1, 64.0, "200 epochs", epochs=200)])
    lengths = ablation_table(grid, pd.concat([results, longer]), tmp_path)  # the length is the change: whole
    assert list(lengths["variant"]) == ["vqa_rad-mevf_ban-frozen", "vqa_rad-mevf_ban-200"]
    assert lengths["change open / closed / overall"].iloc[1] == "+3.0 / +3.0 / +3.0"


def predicted_run(root: Path, row: str, seed: int, correct: list[bool]) -> Path:
    """A run directory with a config and ``predictions_sound.csv`` of as many questions as ``correct``
    (qid 10, 11, ...; even qids open), plus a column the archive leaves out."""
    run_dir = root / row / f"s{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"train: {{seed: {seed}}}\n")
    types = ["OPEN" if i % 2 == 0 else "CLOSED" for i in range(len(correct))]
    pd.DataFrame({"qid": [f"{10 + i}" for i in range(len(correct))], "question": "Is it?",
                  "answer": ["yes"] * len(correct), "prediction": ["yes" if c else "no" for c in correct],
                  "correct": correct, "answer_type": types, "route": types}).to_csv(
        run_dir / "predictions_sound.csv", index=False)
    return run_dir


def test_the_archive_keeps_the_question_columns_and_ablations_test_them(grid: Grid, tmp_path: Path) -> None:
    runs, archive_dir = tmp_path / "runs", tmp_path / "archive"
    for seed, (base, variant) in {1: (20, 30), 2: (22, 32)}.items():  # the variant right on 10 more questions
        for row, right in (("vqa_rad-mevf_ban", base), ("vqa_rad-mevf_ban-bf16", variant)):
            run_dir = predicted_run(runs, row, seed, [i < right for i in range(40)])
            (run_dir / "metrics.csv").write_text("epoch\n0\n")
            (run_dir / "results_sound.json").write_text("{}")
    assert archive(runs, archive_dir) == 4
    archived = archive_dir / "vqa_rad-mevf_ban" / "s1" / "predictions_sound.csv"
    assert archived.read_text().splitlines()[:2] == ["qid,answer,correct,answer_type,route", "10,yes,True,OPEN,OPEN"]

    ablation = next(a for a in grid.ablations if a.variant == "vqa_rad-mevf_ban-bf16")
    change = per_question_change(archive_dir, ablation, "sound")
    assert change.startswith("+25.0 [") and change.endswith(" (1,2)")
    assert float(change.split(" p ")[1].split()[0]) < 0.01  # 20 of 20 differing questions one way
    assert per_question_change(archive_dir, ablation, "mevf-legacy") == "-"
    shutil.rmtree(archive_dir / "vqa_rad-mevf_ban-bf16" / "s2")
    assert per_question_change(archive_dir, ablation, "sound").endswith(" (1)")  # the seeds both rows hold

    (runs / "vqa_rad-mevf_ban" / "s1" / "predictions_sound.csv").write_text("qid,correct\n10,True\n")
    with pytest.raises(UserError, match=r"predictions_sound.csv: columns \['answer', 'answer_type', 'route'\] "
                                        "missing: evaluate the run again"):
        archive(runs, archive_dir)


def archived_run(root: Path, row: str, seed: int, planned: int, test: list[float], val: list[float] | None,
                 protocols: tuple[str, ...] = ()) -> Path:
    """An archived run: its config, a metrics.csv whose open / closed / routed columns all differ, and a
    result file without figures under each of ``protocols``."""
    run_dir = root / row / f"s{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"model: {{freeze_visual: {'frozen' in row}}}\ntrain: {{epochs: {planned}}}\n")
    metrics = {"epoch": range(len(test)), "test_open": [t - 10 for t in test], "test_closed": [t + 5 for t in test],
               "test_overall": test, "test_routed_open": [t - 12 for t in test],
               "test_routed_closed": [t + 4 for t in test], "test_routed_overall": [t - 1 for t in test]}
    if val is not None:
        metrics["val_overall"] = val
    pd.DataFrame(metrics).to_csv(run_dir / "metrics.csv", index=False)
    for protocol in protocols:
        (run_dir / f"results_{protocol}.json").write_text("{}")
    return run_dir


def test_matched_ablation_replays_both_protocols_on_the_epochs_both_runs_finished(grid: Grid, tmp_path: Path) -> None:
    reported_run = partial(archived_run, protocols=("pubmedclip-legacy",))
    reported_run(tmp_path, "vqa_rad-qcr", 88, 200, test=[50, 60, 58], val=[70, 75, 75])  # stopped after 3
    reported_run(tmp_path, "vqa_rad-qcr-frozen", 88, 200, test=[40, 45, 52, 99], val=[60, 65, 64, 99])
    reported_run(tmp_path, "vqa_rad-qcr", 1, 200, test=[50, 56], val=[70, 71])  # stopped after 2
    reported_run(tmp_path, "vqa_rad-qcr-frozen", 1, 200, test=[44, 47, 99], val=[61, 60, 99])
    reported_run(tmp_path, "vqa_rad-qcr-all-train", 88, 200, test=[51, 62, 60], val=None)  # no validation split
    archived_run(tmp_path, "vqa_rad-qcr-maml-unloaded", 88, 200, test=[1, 2], val=[1, 2],
                 protocols=("mevf-legacy",))  # no result of its row's protocols: reported nowhere
    reported_run(tmp_path, "vqa_rad-mevf_ban", 88, 2, test=[50, 60], val=[70, 75])
    reported_run(tmp_path, "vqa_rad-mevf_ban-200", 88, 200, test=[50, 60, 70], val=[70, 75, 80])  # stopped after 3
    table = matched_ablation_table(grid, tmp_path)
    assert "vqa_rad-mevf_ban-200" not in set(table["variant"])  # the length is the change: never cut to 2 epochs
    frozen = table[table["variant"] == "vqa_rad-qcr-frozen"].set_index("protocol")
    assert list(frozen.index) == ["sound", "pubmedclip-legacy"] and set(frozen["epochs"]) == {"2/3"}  # seeds 1, 88
    sound = frozen.loc["sound"]  # best validation, first maximum: seed 1 epochs 1/0, seed 88 epochs 1/1
    assert (sound["picked"], sound["base overall"], sound["variant overall"]) == (
        "1/0,1/1", "58.0 +- 2.8", "44.5 +- 0.7")
    assert sound["change open / closed / overall"] == "-13.5 / -13.5 / -13.5"  # gold types: all shifted alike
    # where the matched curves end, no epoch picked: seed 1 (53 -> 45.5), seed 88 (56 -> 45.7)
    assert sound["change, mean of the last 5 epochs"] == "-8.9 (-7.5, -10.3)"
    legacy = frozen.loc["pubmedclip-legacy"]  # best routed test within the matched epochs
    assert (legacy["picked"], legacy["seeds"]) == ("1/1,1/2", "1,88")
    assert (legacy["base overall"], legacy["variant overall"]) == ("57.0 +- 2.8", "48.5 +- 3.5")
    all_train = table[table["variant"] == "vqa_rad-qcr-all-train"]  # its row reports pubmedclip-legacy alone
    assert list(all_train["protocol"]) == ["pubmedclip-legacy"] and list(all_train["picked"]) == ["1/1"]
    assert list(all_train["change open / closed / overall"]) == ["+2.0 / +2.0 / +2.0"]
    assert "vqa_rad-qcr-maml-unloaded" not in set(table["variant"])  # not reported, so in neither table

    for seed in (1, 88):  # all finished, all as long: ablation_table compares them, not this table
        for row, epochs in (("vqa_rad-qcr", 2), ("vqa_rad-qcr-frozen", 2)):
            (tmp_path / row / f"s{seed}" / "config.yaml").write_text(f"train: {{epochs: {epochs}}}\n")
            metrics = pd.read_csv(tmp_path / row / f"s{seed}" / "metrics.csv").iloc[:2]
            metrics.to_csv(tmp_path / row / f"s{seed}" / "metrics.csv", index=False)
    shutil.rmtree(tmp_path / "vqa_rad-qcr-all-train")
    assert matched_ablation_table(grid, tmp_path).empty
    reported_run(tmp_path, "vqa_rad-qcr-frozen", 2, 3, test=[40, 45, 99], val=[60, 65, 99])  # a longer seed alone
    assert list(matched_ablation_table(grid, tmp_path)["epochs"]) == ["2/2", "2/2"]  # left out of ablation_table


def test_replay_without_a_validation_split_takes_the_last_epoch(tmp_path: Path) -> None:
    run_dir = archived_run(tmp_path, "vqa_rad-qcr-all-train", 88, 3, test=[51, 62, 60], val=None)
    chosen = replay(pd.read_csv(run_dir / "metrics.csv"), "sound")
    assert chosen.to_dict() == {"open": 50.0, "closed": 65.0, "overall": 60.0, "epoch": 2}
    with pytest.raises(ValueError, match="freeform"):
        replay(pd.read_csv(run_dir / "metrics.csv"), "mevf-legacy")


def test_late_overall_averages_the_last_five_epochs_under_the_protocols_routing(tmp_path: Path) -> None:
    run_dir = archived_run(tmp_path, "vqa_rad-qcr", 88, 200, test=[90, 70, 10, 20, 30, 40, 50], val=[0] * 7)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert late_overall(metrics, "sound") == 30.0  # gold types: test_overall
    assert late_overall(metrics, "pubmedclip-legacy") == 29.0  # classifier routing: test_routed_overall
    assert late_overall(metrics.iloc[:2], "sound") == 80.0  # fewer epochs than five: all of them
    with pytest.raises(ValueError, match="no epochs"):
        late_overall(metrics.iloc[:0], "sound")


def test_report_refuses_a_result_older_than_its_metrics(grid: Grid, tmp_path: Path) -> None:
    run_dir = archived_run(tmp_path, "vqa_rad-qcr", 88, 200, test=[50, 60, 58], val=[70, 75, 76])
    result = {"protocol": "sound", "open": 50.0, "closed": 65.0, "overall": 60.0, "n_open": 1, "n_closed": 1,
              "epoch": 1}  # evaluated after epoch 1; epoch 2 has since beaten it on validation
    (run_dir / "results_sound.json").write_text(json.dumps(result))
    with pytest.raises(UserError,
                       match=r"holds epoch 1, but after the 3 epochs .* sound picks epoch 2: evaluate again"):
        collect(grid, tmp_path)
    (run_dir / "results_sound.json").write_text(json.dumps({**result, "epoch": 2}))
    assert list(collect(grid, tmp_path)["epochs"]) == [3]
    (run_dir / "results_mevf-legacy.json").write_text(json.dumps({**result, "protocol": "mevf-legacy"}))
    assert len(collect(grid, tmp_path)) == 1  # not a protocol of its row: passed over


def test_status_says_what_each_run_needs_next(reproduce, grid: Grid, tmp_path: Path, capsys) -> None:
    runs, archive = tmp_path / "runs", tmp_path / "out" / "runs"
    archived_run(archive, "vqa_rad-qcr", 88, 200, test=[50, 60], val=[70, 75])  # stopped; its run dir is gone
    finished = archived_run(archive, "vqa_rad-qcr-frozen", 88, 3, test=[40, 45, 52], val=[60, 65, 64])
    for protocol, epoch in (("sound", 1), ("pubmedclip-legacy", 2)):
        (finished / f"results_{protocol}.json").write_text(json.dumps({"epoch": epoch}))
    archived_run(runs, "vqa_rad-qcr-frozen", 1, 200, test=[40, 45], val=[60, 65])  # still training
    archived_run(runs, "vqa_rad-qcr-frozen", 3, 5, test=[40, 45], val=[60, 65])  # trained with train.epochs=5
    trained = archived_run(runs, "vqa_rad-qcr-frozen", 2, 2, test=[40, 45], val=[60, 65])
    (trained / "results_sound.json").write_text(json.dumps({"epoch": 0}))  # evaluated before its last epoch

    def states() -> dict[str, tuple[str, str, str, str]]:
        frame = run_status(grid, runs, tmp_path / "out")
        return {f"{line.row} s{line.seed}": (line.trained, line.archived, line.results, line.next)
                for line in frame.itertuples()}

    where = f"--runs {runs}"  # the next commands name the folder the runs are in
    assert states() == {
        "vqa_rad-qcr s88": ("-", "2/200", "pubmedclip-legacy none, sound none",
                            f"run vqa_rad-qcr --seeds 88 {where} (starts again: no run directory under {runs})"),
        "vqa_rad-qcr-frozen s1": ("2/200", "-", "pubmedclip-legacy none, sound none",
                                  f"run vqa_rad-qcr-frozen --seeds 1 {where}"),
        "vqa_rad-qcr-frozen s3": ("2/5", "-", "pubmedclip-legacy none, sound none",
                                  f"run vqa_rad-qcr-frozen --seeds 3 {where} train.epochs=5"),
        "vqa_rad-qcr-frozen s2": ("2/2", "-", "pubmedclip-legacy none, sound stale",
                                  f"evaluate vqa_rad-qcr-frozen --seeds 2 {where}"),
        "vqa_rad-qcr-frozen s88": ("-", "3/3", "pubmedclip-legacy epoch 2, sound epoch 1", "done"),
    }
    for protocol in ("sound", "pubmedclip-legacy"):
        (trained / f"results_{protocol}.json").write_text(json.dumps({"epoch": 1}))
    assert states()["vqa_rad-qcr-frozen s2"][2:] == ("pubmedclip-legacy epoch 1, sound epoch 1",
                                                     f"report {where} --out {tmp_path / 'out'}")
    shutil.copytree(trained, archive / "vqa_rad-qcr-frozen" / "s2")
    assert states()["vqa_rad-qcr-frozen s2"][1:] == ("2/2", "pubmedclip-legacy epoch 1, sound epoch 1", "done")
    assert reproduce.main(["status", "--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert f"run vqa_rad-qcr-frozen --seeds 1 {where}" in printed and "evaluate" not in printed, printed


def test_status_says_how_long_the_next_run_takes_at_the_pace_of_its_last_epochs(grid: Grid, tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    for root, seed in ((runs, 1), (out / "runs", 2)):  # seed 2: archived only, so it trains all 200 again
        run_dir = archived_run(root, "vqa_rad-qcr-frozen", seed, 200, test=[40, 45, 50], val=[60, 65, 70])
        metrics = pd.read_csv(run_dir / "metrics.csv").assign(seconds=[90.0, 20.0, 30.0])
        metrics.to_csv(run_dir / "metrics.csv", index=False)
    takes = run_status(grid, runs, out).set_index("seed")["takes"]
    assert takes.to_dict() == {"1": "1.6 h", "2": "1.7 h"}  # 197 and 200 epochs at the median 30 s
    metrics = pd.DataFrame({"seconds": [50.0, 70.0]})
    assert [time_to_train(metrics, epochs) for epochs in (0, 1, 89, 90)] == ["-", "1 min", "89 min", "1.5 h"]
    assert time_to_train(pd.DataFrame({"epoch": [0]}), 10) == "-"  # metrics of a version that timed no epoch


def test_status_leaves_the_default_folders_out_of_its_commands(reproduce, grid: Grid, tmp_path: Path,
                                                               monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    out = Path("experiments/results/cpu")  # no default: each machine has an archive of its own
    run_dir = archived_run(grid.runs, "vqa_rad-qcr-frozen", 1, 200, test=[40, 45], val=[60, 65])
    assert list(run_status(grid, grid.runs, out)["next"]) == ["run vqa_rad-qcr-frozen --seeds 1"]
    for protocol in ("sound", "pubmedclip-legacy"):
        (run_dir / f"results_{protocol}.json").write_text(json.dumps({"epoch": 1}))
    (run_dir / "config.yaml").write_text("train: {epochs: 2}\n")
    assert list(run_status(grid, grid.runs, out)["next"]) == [f"report --out {out}"]
    for command in ("status", "report"):
        with pytest.raises(SystemExit):
            reproduce.main([command])
        assert "the following arguments are required: --out" in capsys.readouterr().err


def test_status_and_report_refuse_a_folder_of_per_machine_archives(reproduce, grid: Grid, tmp_path: Path,
                                                                    capsys) -> None:
    results = tmp_path / "results"
    archived_run(results / "cpu" / "runs", "vqa_rad-qcr-frozen", 1, 2, test=[40, 45], val=[60, 65])
    (results / "h100" / "runs").mkdir(parents=True)
    runs = tmp_path / "runs"
    for command in ("status", "report"):
        assert reproduce.main([command, "--runs", str(runs), "--out", str(results)]) == 2
        error = capsys.readouterr().err
        assert f"{results} is not an archive but holds 2 in its subfolders ({results / 'cpu'}, {results / 'h100'})" \
            in error, error
        assert not (results / "runs").exists()
    assert reproduce.main(["status", "--runs", str(runs), "--out", str(results / "cpu")]) == 0
    assert "vqa_rad-qcr-frozen    1       -      2/2" in capsys.readouterr().out


def test_update_readme_refreshes_only_the_blocks_of_this_report(tmp_path: Path) -> None:
    out = tmp_path / "results" / "cpu"
    out.mkdir(parents=True)
    (out / "table.md").write_text("| a |\n|---|\n| 1 |\n")
    readme = tmp_path / "README.md"
    other = "<!-- reproduce: results/h100/table.md -->\nkept\n<!-- /reproduce -->\n"
    readme.write_text(f"# Title\n<!-- reproduce: results/cpu/table.md -->\nstale\n<!-- /reproduce -->\nprose\n{other}")
    assert update_readme(readme, out) == 1
    assert readme.read_text() == ("# Title\n<!-- reproduce: results/cpu/table.md -->\n\n| a |\n|---|\n| 1 |\n\n"
                                  f"<!-- /reproduce -->\nprose\n{other}")
    assert update_readme(readme, out) == 1 and readme.read_text().count("| 1 |") == 1  # idempotent

    readme.write_text("no blocks\n")
    with pytest.raises(UserError, match="has no block quoting a file of"):
        update_readme(readme, out)
    readme.write_text("<!-- reproduce: results/cpu/missing.md -->\n<!-- /reproduce -->\n")
    with pytest.raises(UserError, match="quotes results/cpu/missing.md, which the report did not write"):
        update_readme(readme, out)
    assert readme.read_text() == "<!-- reproduce: results/cpu/missing.md -->\n<!-- /reproduce -->\n"


def test_readme_quotes_the_committed_tables() -> None:
    blocks = list(README_BLOCK.finditer((REPO / "README.md").read_text()))
    assert len(blocks) >= 3
    for block in blocks:
        quoted, content = block[2], block[0][len(block[1]):]
        assert content.strip() == (REPO / quoted).read_text().strip(), \
            f"README block {quoted} is stale: report --readme"


@pytest.mark.parametrize("machine", ["cpu", "h100"])
def test_committed_tables_rebuild_from_their_archive(grid: Grid, machine: str) -> None:
    results = REPO / "experiments" / "results" / machine
    rebuilt = collect(grid, results / "runs")
    committed = pd.read_csv(results / "runs.csv")
    assert len(rebuilt) == len(committed) > 0
    columns = ["row", "seed", "protocol", "overall", "schedule"]
    assert rebuilt[columns].astype(str).values.tolist() == committed[columns].astype(str).values.tolist()


@pytest.mark.parametrize("machine", ["cpu", "h100"])
def test_metrics_csv_replays_the_archived_sound_and_test_selected_results(machine: str) -> None:
    replayed = 0
    for run_dir in sorted((REPO / "experiments" / "results" / machine / "runs").glob("*/s*")):
        metrics = pd.read_csv(run_dir / "metrics.csv")
        for protocol in REPLAYABLE:
            path = run_dir / f"results_{protocol}.json"
            if path.is_file():
                result, chosen = json.loads(path.read_text()), replay(metrics, protocol)
                assert chosen["epoch"] == result["epoch"], path
                assert [round(chosen[k], 2) for k in ("open", "closed", "overall")] == \
                    [result[k] for k in ("open", "closed", "overall")], path
                replayed += 1
    assert replayed > 0


@pytest.mark.parametrize("protocol", ["sound", "pubmedclip-legacy"])
def test_reported_after_each_epoch_replays_every_prefix(protocol: str) -> None:
    metrics = pd.read_csv(REPO / "experiments/results/cpu/runs/vqa_rad-qcr-frozen/s88/metrics.csv")  # routed
    reported = reported_after_each_epoch(metrics, protocol)
    assert reported == [replay(metrics[:n], protocol)["overall"] for n in range(1, len(metrics) + 1)]
    if protocol == "pubmedclip-legacy":  # the best test epoch so far never falls
        assert all(b >= a for a, b in zip(reported, reported[1:])) and reported[-1] > reported[19]


def test_selection_plot_needs_long_runs(grid: Grid, tmp_path: Path) -> None:
    archived = REPO / "experiments/results/cpu/runs"
    plot_selection(grid, archived, tmp_path)
    assert (tmp_path / "selection.png").stat().st_size > 0  # the 200-epoch QCR runs
    plot_selection(grid, archived, tmp_path / "short", min_epochs=1000)
    assert not (tmp_path / "short").exists()


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


def evaluated_run(root: Path, row: str, seed: int, epochs: int, picked: int) -> Path:
    """An archived ``row`` run of ``epochs`` epochs whose sound result reports epoch ``picked``."""
    run_dir = archived_run(root, row, seed, epochs, test=[50.0 + e for e in range(epochs)],
                           val=[60.0 + e for e in range(epochs)])
    result = {"protocol": "sound", "open": 40.0, "closed": 60.0, "overall": 50.0, "n_open": 1, "n_closed": 1,
              "epoch": picked}
    (run_dir / "results_sound.json").write_text(json.dumps(result))
    return run_dir


def test_report_keeps_the_archive_when_a_run_is_stale_or_another(grid: Grid, tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    archived = evaluated_run(out / "runs", "vqa_rad-qcr-frozen", 88, 3, picked=2)
    kept = (archived / "results_sound.json").read_text()
    stale = evaluated_run(runs, "vqa_rad-qcr-frozen", 88, 3, picked=1)  # resumed, not evaluated again
    with pytest.raises(UserError, match="holds epoch 1, .* picks epoch 2: evaluate again"):
        report(grid, runs, out)
    assert (archived / "results_sound.json").read_text() == kept

    shutil.rmtree(stale)
    evaluated_run(runs, "vqa_rad-qcr-frozen", 1, 4, picked=3)  # new: archived once the others pass
    evaluated_run(runs, "vqa_rad-qcr-frozen", 88, 4, picked=3)  # train.epochs=4: another run than the archived
    with pytest.raises(UserError, match=r"s88 is another run than the one archived in .*s88 \(its config differs: "
                                        r"train.epochs 3 -> 4\): report it to another --out"):
        archive(runs, out / "runs")
    assert sorted(p.name for p in (out / "runs" / "vqa_rad-qcr-frozen").iterdir()) == ["s88"]
    assert (archived / "results_sound.json").read_text() == kept

    shutil.rmtree(runs / "vqa_rad-qcr-frozen" / "s88")  # trained again from epoch 0, for 2 of its 3 epochs
    evaluated_run(runs, "vqa_rad-qcr-frozen", 88, 2, picked=1)
    (runs / "vqa_rad-qcr-frozen" / "s88" / "config.yaml").write_text((archived / "config.yaml").read_text())
    with pytest.raises(UserError, match=r"s88 has trained 2 epochs, its archived copy .*s88 3: train it on"):
        archive(runs, out / "runs")
    assert (archived / "results_sound.json").read_text() == kept

    archived.rename(archived.with_name(".s88.retired"))  # a report stopped between its two renames
    (archived.parent / ".s1.partial").mkdir()  # and one stopped while copying
    shutil.rmtree(runs / "vqa_rad-qcr-frozen" / "s88")
    assert archive(runs, out / "runs") == 1
    assert sorted(p.name for p in (out / "runs" / "vqa_rad-qcr-frozen").iterdir()) == ["s1", "s88"]
    assert (archived / "results_sound.json").read_text() == kept
    shutil.copytree(archived, archived.with_name(".s88.retired"))  # the new copy complete, the old one left
    assert archive(runs, out / "runs") == 1
    assert sorted(p.name for p in (out / "runs" / "vqa_rad-qcr-frozen").iterdir()) == ["s1", "s88"]


def test_update_readme_refuses_a_block_without_its_closer(tmp_path: Path) -> None:
    out = tmp_path / "cpu"
    out.mkdir()
    (out / "table.md").write_text("| a |\n")
    readme = tmp_path / "README.md"
    text = ("<!-- reproduce: cpu/table.md -->\nold\n\nprose kept\n"
            "<!-- reproduce: cpu/table.md -->\nold\n<!-- /reproduce -->\n")
    readme.write_text(text)
    with pytest.raises(UserError, match=r"README.md line 1: the block quoting cpu/table.md has no"):
        update_readme(readme, out)
    assert readme.read_text() == text


@pytest.mark.parametrize("value", ["vqa_rad", "vqa_rad=", "cats=data/cats"])
def test_run_refuses_a_malformed_data_location(reproduce, tmp_path: Path, capsys, value: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        reproduce.main(["run", "vqa_rad-qcr-frozen", "--runs", str(tmp_path), "--data", value])
    assert stopped.value.code == 2 and not any(tmp_path.iterdir())
    assert f"{value!r} is not DATASET=DIR (DATASET one of vqa_rad, slake), e.g. vqa_rad=" in capsys.readouterr().err


def test_report_without_runs(reproduce, tmp_path: Path) -> None:
    assert reproduce.main(["report", "--runs", str(tmp_path), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.parametrize(("model", "expected"), [
    ({"visual": ["maml", "cdae"], "freeze_visual": True}, "frozen branches"),
    ({"visual": ["maml", "cdae"], "freeze_visual": ["cdae", "maml"]}, "frozen branches"),
    ({"visual": ["clip", "cdae"], "freeze_visual": ["clip"]}, "clip frozen, other branches fine-tuned"),
    ({"visual": ["maml", "cdae"], "freeze_visual": []}, "fine-tuned branches"),
])
def test_schedule_names_the_frozen_branches(tmp_path: Path, model: dict, expected: str) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model": model, "train": {"epochs": 20}}))
    assert schedule(tmp_path, 20) == (f"20 epochs, {expected}", True)
    assert schedule(tmp_path, 5) == (f"20 epochs, {expected} (stopped after 5)", False)


@pytest.mark.parametrize(("train", "expected"), [
    ({"bf16": True}, ", bf16 autocast"),
    ({"bf16": True, "bf16_visual": False}, ", bf16 autocast (visual branches float32)"),
    ({"bf16": False, "bf16_visual": False}, ""),
    ({"device": "cpu", "tf32": "all"}, ""),  # CPUs have no TF32
    ({"device": "cuda"}, ", TF32 convolutions and RNNs"),  # PyTorch's default, before train.tf32 existed
    ({"device": "cuda:1", "tf32": "ieee"}, ""),
    ({"device": "cuda", "tf32": "all", "bf16": True}, ", bf16 autocast, TF32 convolutions, RNNs and matrix products"),
])
def test_schedule_names_the_precision(tmp_path: Path, train: dict, expected: str) -> None:
    model = {"visual": ["maml", "cdae"], "freeze_visual": False}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model": model, "train": {"epochs": 20, **train}}))
    assert schedule(tmp_path, 20) == (f"20 epochs, fine-tuned branches{expected}", True)


def test_an_archived_config_of_the_flat_layout_compares_with_a_run_of_today(grid: Grid) -> None:
    archived = REPO / "experiments/results/cpu/runs/slake-qcr-frozen/s88"
    flat = yaml.safe_load((archived / "config.yaml").read_text())["model"]
    assert flat["weights"]["maml"].endswith("data_RAD/pretrained_maml.weights")  # model.weights.maml: PATH
    old = saved_config(archived)  # the published weights' paths then, today's spelling "prepared" for them
    assert old["model"]["encoders"] == {"maml": {"weights": "prepared"},
                                        "cdae": {"weights": "prepared", "reconstruction_weight": 0.001}}
    assert old["model"]["head"]["rnn"] == "GRU" and old["model"]["freeze_visual"] is True
    row = grid.rows["slake-qcr-frozen"]
    new = load_config(grid.config_path("slake-qcr-frozen"), [*row.overrides, "train.seed=88"]).to_dict()
    assert config_changes(old, new) == {}
    assert config_changes(yaml.safe_load((archived / "config.yaml").read_text()), {**new, "train": {"lr": 1}}) == {
        "train.lr": (0.002, 1)}


def test_a_grid_refuses_unknown_protocols_and_ablation_rows() -> None:
    row = Row("configs/synthetic/qcr_tiny.yaml", ("sound",))
    with pytest.raises(UserError, match=r"row tiny: protocols \['best'\] must name some of sound, "):
        Grid({"tiny": Row(row.config, ("best",))})
    with pytest.raises(UserError, match="ablation 'longer' compares tiny-long, which is not a row of the grid"):
        Grid({"tiny": row}, (Ablation("longer", "tiny", "tiny-long"),))
    with pytest.raises(UserError, match="at least one row"):
        Grid({})


def test_a_grid_of_its_own_runs_reports_and_says_what_comes_next(synthetic_data: Path, tmp_path: Path,
                                                                  monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    tiny = "synthetic/mevf_ban_tiny.yaml"
    grid = Grid({"tiny": Row(tiny, ("sound", "pubmedclip-legacy"), {"sound": (1.0, 2.0, None)}),
                 "tiny-frozen": Row(tiny, ("sound",), overrides=("model.freeze_visual=true",))},
                (Ablation("freeze the branches", "tiny", "tiny-frozen"),),
                root=REPO / "configs", runs=Path("mine"), out=Path("report"))
    assert reproduce_main(grid, ["list"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["tiny-frozen", tiny, "sound"]
    with pytest.raises(SystemExit):
        reproduce_main(grid, ["run", "tiny", "--data", "vqa_rad=data"])
    assert "(DATASET one of synthetic), e.g. synthetic=" in capsys.readouterr().err
    for name in grid.rows:
        assert reproduce_main(grid, ["run", name, "--seeds", "0", "--data", f"synthetic={synthetic_data}",
                                     "train.epochs=1"]) == 0
    assert sorted(p.name for p in Path("mine/tiny/s0").glob("results_*.json")) == [
        "results_pubmedclip-legacy.json", "results_sound.json"]
    assert list(run_status(grid, grid.runs, grid.out)["next"]) == ["report", "report"]  # the default folders

    assert reproduce_main(grid, ["report"]) == 0
    table = (tmp_path / "report" / "table.md").read_text()
    assert "| tiny | sound | 1 | 1 epochs, fine-tuned branches |" in table and "| 1.0 / 2.0 / - |" in table
    assert "| tiny-frozen | sound | 1 | 1 epochs, frozen branches |" in table
    ablation = (tmp_path / "report" / "ablation.md").read_text()
    assert "| freeze the branches | tiny | tiny-frozen | sound |" in ablation  # the protocol both rows report
    assert sorted(p.name for p in Path("report/runs").iterdir()) == ["tiny", "tiny-frozen"]
    assert list(run_status(grid, grid.runs, grid.out)["next"]) == ["done", "done"]

    assert reproduce_main(grid, ["run", "tiny", "--seeds", "1", "--data", f"synthetic={synthetic_data}",
                                 "--stop-after", "1", "train.epochs=2"]) == 0  # a long row in pieces
    assert len(pd.read_csv("mine/tiny/s1/metrics.csv")) == 1
    assert saved_config(Path("mine/tiny/s1"))["train"]["epochs"] == 2
    assert (tmp_path / "mine/tiny/s1/results_pubmedclip-legacy.json").is_file()  # evaluated as it stands
    assert list(run_status(grid, grid.runs, grid.out)["next"]) == [
        "done", "run tiny --seeds 1", "done"]  # the same command without --stop-after goes on
