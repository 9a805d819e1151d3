"""``medvqa.report.write_report`` on real runs trained on the synthetic dataset, and the page in a real browser."""
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from statsmodels.stats.multitest import multipletests

from infra.errors import UserError
from medvqa.report import Cell, write_report
from medvqa.train import main as train_main

ROOT = Path(__file__).resolve().parents[3]
MEVF_TINY = str(ROOT / "configs" / "synthetic" / "mevf_ban_tiny.yaml")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def runs(prepare_synthetic, tmp_path_factory) -> dict[str, list[Path]]:
    """Frozen MEVF-BAN runs, 2 epochs: MAML+CDAE and MAML with seeds 0 and 1, CDAE with seed 0 only."""
    data = prepare_synthetic("gray84,gray128")
    out = tmp_path_factory.mktemp("runs")
    made: dict[str, list[Path]] = {}
    for encoder, visual, seeds in (("maml+cdae", "maml,cdae", (0, 1)), ("maml", "maml", (0, 1)), ("cdae", "cdae", (0,))):
        for seed in seeds:
            run = out / f"{visual.replace(',', '_')}_s{seed}"
            assert train_main(["--config", MEVF_TINY, "--out", str(run), f"data.root={data}",
                               f"train.feature_cache={out / 'cache'}", "train.epochs=2", "model.freeze_visual=true",
                               "model.head.hidden_dim=16", f"train.seed={seed}", f"model.visual=[{visual}]"]) == 0
            made.setdefault(encoder, []).append(run)
    return made


def _cells(runs, datasets=("synthetic",)) -> list[Cell]:
    cells = [Cell(dataset, "mevf_ban", encoder, tuple(paths)) for dataset in datasets for encoder, paths in runs.items()]
    return cells + [Cell(datasets[0], "mevf_ban", "clip:absent", ())]


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory) -> Path:
    """The report of two column groups (the same runs under a second dataset label) and a cell without runs."""
    out = tmp_path_factory.mktemp("report")
    html = write_report(_cells(runs, ("synthetic", "synthetic_copy")), out, title="Synthetic encoder study")
    assert html == out / "report.html"
    return out


def test_tables_in_the_paper_layout_with_intervals_and_marks(report, runs):
    markdown = (report / "tables.md").read_text().splitlines()
    assert markdown[0] == ("| head | encoder | seeds | synthetic open | synthetic closed | synthetic overall | "
                           "synthetic_copy open | synthetic_copy closed | synthetic_copy overall |")
    rows = [line.split(" | ") for line in markdown[2:6]]
    assert [row[1] for row in rows] == ["maml+cdae (baseline)", "maml", "cdae", "clip:absent"]
    assert [row[2] for row in rows] == ["2", "2", "1", "0"]
    assert re.fullmatch(r"\d+\.\d ± \d+\.\d \[\d+\.\d, \d+\.\d\]\*?", rows[0][5])  # mean ± std [95% CI]
    assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\]\*?", rows[2][5])  # one seed: no std
    assert "not run" in rows[3]
    legend = markdown[-1]
    assert "Holm's step-down correction over 12 tests" in legend and "baseline encoder 'maml+cdae'" in legend

    table = pd.read_csv(report / "tables.csv")
    overall = [json.loads((run / "results_sound.json").read_text())["overall"] for run in runs["maml+cdae"]]
    baseline = table[table["encoder"] == "maml+cdae"].iloc[0]
    assert baseline["synthetic_overall_mean"] == pytest.approx(np.mean(overall), abs=0.01)
    assert baseline["synthetic_overall_std"] == pytest.approx(np.std(overall, ddof=1), abs=0.01)
    assert baseline["synthetic_overall_ci_low"] <= baseline["synthetic_overall_mean"] <= baseline["synthetic_overall_ci_high"]
    tests = (report / "tests.md").read_text().splitlines()
    assert tests[0].startswith("| dataset | head | difference | metric | paired seeds | points [95% CI] | p | p (holm) |")
    stats = json.loads((report / "stats.json").read_text())
    first = stats["comparisons"][0]
    assert tests[2].split(" | ")[2:5] == [f"{first['encoder']} - maml+cdae", "open", "0, 1"]
    seed_test = first["open"]["mcnemar"][0]  # McNemar's p raw, then corrected as the legend says
    assert f"s0: {seed_test['a_only']}/{seed_test['b_only']}, p {seed_test['p_value']:.3g} / " \
           f"{seed_test['p_adjusted']:.3g}" in tests[2]
    assert len(tests) == 2 + sum(1 for c in stats["comparisons"] for m in ("open", "closed", "overall") if c[m]) + 2
    assert "Holm's step-down correction over 12 tests" in tests[-1]
    tex = (report / "tables.tex").read_text()
    assert r"\begin{tabular}{llcccccc}" in tex and r"\multicolumn{3}{c}{synthetic\_copy}" in tex
    assert tex.count(r" \\" + "\n") == 2 + 4  # two header lines, four rows
    assert (report / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stats_json_tests_every_encoder_against_the_baseline(report, runs):
    stats = json.loads((report / "stats.json").read_text())
    assert stats["baseline"] == "maml+cdae" and stats["correction"]["method"] == "holm"
    compared = [(c["dataset"], c["encoder"]) for c in stats["comparisons"]]
    assert compared == [("synthetic", "maml"), ("synthetic", "cdae"), ("synthetic_copy", "maml"),
                        ("synthetic_copy", "cdae")]
    tests = [c[m] for c in stats["comparisons"] for m in ("open", "closed", "overall")]
    expected = multipletests([t["p_value"] for t in tests], alpha=0.05, method="holm")
    assert [t["p_adjusted"] for t in tests] == pytest.approx(list(expected[1]))
    assert [t["significant"] for t in tests] == list(expected[0])
    cdae = stats["comparisons"][1]
    assert [p["seed_a"] for p in cdae["pairs"]] == [0] and cdae["unpaired"] == [str(runs["maml+cdae"][1])]
    assert "synthetic / mevf_ban / cdae: seeds 0 only (missing 1): its mean and std are over fewer seeds" in stats["notes"]
    assert "synthetic / mevf_ban / clip:absent: no finished runs" in stats["notes"]
    assert set(stats["breakdowns"]["synthetic"]) == {"question_type", "organ", "modality"}


def test_html_page_is_self_contained(report):
    html = (report / "report.html").read_text()
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) >= 2 + 6 and all(s.startswith("data:image/png;base64,") for s in sources)
    for heading in ("Accuracy", "Paired tests against the baseline", "Accuracy by question type, organ and modality",
                    "Training curves", "Example predictions", "Where encoders disagree", "Methods"):
        assert f"<h2>{heading}</h2>" in html
    assert re.search(r"\(0\.\d\d\)<br><span class=(right|wrong)>", html)  # predicted answer with its probability


def test_bad_cells_are_refused_or_noted(runs, tmp_path):
    cells = _cells(runs)
    with pytest.raises(UserError, match="baseline encoder 'clip' is in no cell"):
        write_report(cells, tmp_path / "a", baseline="clip")
    with pytest.raises(UserError, match="cell synthetic/mevf_ban/maml is given twice"):
        write_report([*cells, cells[1]], tmp_path / "b")
    unevaluated = tmp_path / "unevaluated"
    shutil.copytree(runs["maml"][0], unevaluated)
    (unevaluated / "predictions_sound.csv").unlink()
    with pytest.raises(UserError, match=f"no predictions_sound.csv\\): run medvqa evaluate --run {unevaluated}"):
        write_report([cells[0], Cell("synthetic", "mevf_ban", "maml", (unevaluated,))], tmp_path / "c")
    other = tmp_path / "other_questions"
    shutil.copytree(runs["maml"][0], other)
    frame = pd.read_csv(other / "predictions_sound.csv", dtype={"qid": str})
    frame.iloc[1:].to_csv(other / "predictions_sound.csv", index=False)
    with pytest.raises(UserError, match="was evaluated on other test questions"):
        write_report([cells[0], Cell("synthetic", "mevf_ban", "maml", (other,))], tmp_path / "d")
    assert not (tmp_path / "d").exists()  # nothing half-written

    moved = tmp_path / "moved_data"
    shutil.copytree(runs["cdae"][0], moved)
    config = yaml.safe_load((moved / "config.yaml").read_text())
    config["data"]["root"] = str(tmp_path / "nowhere")
    (moved / "config.yaml").write_text(yaml.safe_dump(config))
    write_report([Cell("synthetic", "mevf_ban", "cdae", (moved,))], tmp_path / "e")
    stats = json.loads((tmp_path / "e" / "stats.json").read_text())
    assert f"thumbnails left out: no prepared dataset at {tmp_path / 'nowhere'} (the runs' data.root)" in stats["notes"]

    config["train"]["seed"] = 7
    (moved / "config.yaml").write_text(yaml.safe_dump(config))
    write_report([cells[0], Cell("synthetic", "mevf_ban", "cdae", (moved,)),
                  Cell("other", "mevf_ban", "maml", tuple(runs["maml"]))], tmp_path / "f")
    stats = json.loads((tmp_path / "f" / "stats.json").read_text())
    assert stats["comparisons"] == [] and stats["correction"]["tests"] == 0
    assert "synthetic / mevf_ban / cdae: not tested, no seed in common with the baseline 'maml+cdae'" in stats["notes"]
    assert "other / mevf_ban / maml: not tested, the baseline 'maml+cdae' has no runs on other / mevf_ban" in stats["notes"]


def test_report_renders_in_headless_chromium(report):
    if not CHROMIUM.is_file() and os.environ.get("CI", "").lower() != "true":
        pytest.skip(f"{CHROMIUM} not found (Debian package chromium); CI=true makes this a failure")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True,
                                                                args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto((report / "report.html").as_uri())
            page.wait_for_load_state("load")
            widths = page.evaluate("Array.from(document.images).map(image => image.complete ? image.naturalWidth : 0)")
            tables = page.evaluate("Array.from(document.querySelectorAll('table')).map(t => t.rows.length)")
            headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        finally:
            browser.close()
    assert len(widths) >= 8 and all(width > 0 for width in widths)
    assert len(tables) >= 6 and all(rows >= 2 for rows in tables)
    assert "Where encoders disagree" in headings


def test_the_bar_chart_leaves_no_slot_for_an_encoder_without_runs(report, monkeypatch):
    from medvqa.report import figures
    drawn = []
    monkeypatch.setattr(figures, "png_bytes", lambda figure: drawn.append(figure) or b"")
    figures.accuracy_bars(json.loads((report / "stats.json").read_text()))
    for axis in drawn[0].axes:
        assert [text.get_text() for text in axis.get_legend().get_texts()] == ["maml+cdae", "maml", "cdae"]
        assert len(axis.patches) == 3 * 3  # open, closed, overall for each encoder that ran
