"""docs/extending.md runs as written: its files are written and its commands run, in an empty folder.

The new head and the new encoder train through the stock ``medvqa`` command on the synthetic data; the
new dataset is a CSV written here from a slice of the real VQA-RAD, prepared and trained on.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"<!-- (file: (?P<name>\S+)|run) -->\n```\w+\n(?P<body>.*?)```", re.S)


def write_csv_dataset(data_root: Path, out: Path) -> None:
    """``out/qa.csv`` and ``out/images/``: the first 150 train and 30 test QA of VQA-RAD's split files."""
    rad, images = data_root / "vqa_rad" / "data_RAD", data_root / "vqa_rad" / "VQA_RAD Image Folder"
    rows = [{**item, "split": split} for split, name, n in (("train", "trainset.json", 150), ("test", "testset.json", 30))
            for item in json.loads((rad / name).read_text())[:n]]
    (out / "images").mkdir(parents=True)
    with open(out / "qa.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["qid", "image", "question", "answer", "answer_type", "split"])
        for row in rows:
            writer.writerow([row["qid"], row["image_name"], row["question"], row["answer"], row["answer_type"],
                             row["split"]])
            shutil.copyfile(images / row["image_name"], out / "images" / row["image_name"])


def test_the_three_recipes_run_as_documented(tmp_path: Path, data_root: Path) -> None:
    blocks = list(BLOCK.finditer(DOC.read_text(encoding="utf-8")))
    assert {m["name"] for m in blocks if m["name"]} >= {"concat_mlp.py", "mini_cnn.py", "csv_vqa.py"}
    for recipe in ("concat_mlp.py", "mini_cnn.py", "csv_vqa.py"):
        code = next(m["body"] for m in blocks if m["name"] == recipe)
        lines = [line for line in code.splitlines() if line.strip()]
        assert len(lines) < 40, f"{recipe}: {len(lines)} lines of user code"
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    write_csv_dataset(data_root, tmp_path / "my_vqa")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for block in blocks:
        if block["name"]:
            (tmp_path / block["name"]).write_text(block["body"], encoding="utf-8")
            continue
        for command in block["body"].strip().splitlines():
            done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    for run in ("concat_mlp", "mini_cnn", "my_vqa"):
        results = json.loads((tmp_path / "runs" / run / "results_sound.json").read_text())
        assert results["overall"] is not None and results["n_open"] + results["n_closed"] > 0
    assert json.loads((tmp_path / "runs" / "concat_mlp" / "results_pubmedclip-legacy.json").read_text())["model"] \
        == "concat_mlp"
