"""experiments/bench_vqa.py on the built-in synthetic dataset: every column is printed and sane."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from medvqa.cli import main as medvqa_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("bench") / "synthetic"
    medvqa_main(["prepare", "synthetic", "--out", str(data), "--synthetic-images", "16",
                 "--image-specs", "gray84,gray128",
                 "--encoder-weights", str(REPO.parent / "shared" / "data" / "vqa_rad" / "data_RAD")])
    return data


def test_benchmark_prints_a_row_per_setting(synthetic) -> None:
    data = synthetic
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "bench_vqa.py"), "--vqa-rad", str(data),
                           "--slake", "", "--models", "mevf_ban", "--modes", "frozen", "--steps", "1"],
                          capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    header, row = lines[1], lines[2].split()
    assert header.split()[:4] == ["model", "dataset", "mode", "s/epoch"] and header.endswith("GFLOP/s of matmul")
    assert row[:3] == ["mevf_ban", "vqa_rad", "frozen"]
    seconds_per_epoch, gflop_per_step, share = float(row[3]), float(row[7]), float(row[9])
    assert seconds_per_epoch > 0 and gflop_per_step > 1 and 0 < share < 5


def test_profile_shows_each_layer_of_a_kind_apart(synthetic) -> None:
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "bench_vqa.py"), "--vqa-rad", str(synthetic),
                           "--profile", "mevf_ban:finetuned", "--steps", "1"],
                          capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    backward = [line for line in done.stdout.splitlines() if line.strip().startswith("aten::convolution_backward")]
    shapes = [line[line.index("[["):].strip() for line in backward]
    assert len(shapes) > 1 and len(set(shapes)) == len(shapes)  # one row per layer: its input shapes


def load_bench():
    """experiments/bench_vqa.py as a module (the experiments folder is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_vqa", REPO / "experiments" / "bench_vqa.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_flop_count_includes_the_fused_lstm() -> None:
    """The CPU LSTM is one oneDNN op torch's counter does not see: its products are counted by the benchmark."""
    bench = load_bench()
    lstm = torch.nn.LSTM(30, 16, num_layers=2, bidirectional=True, batch_first=True)
    with FlopCounterMode(display=False, custom_mapping=bench.RNN_FLOPS) as counter:
        lstm(torch.randn(4, 12, 30))[0].sum().backward()
    gate_products = 4 * 16 * ((30 + 16) + (2 * 16 + 16))  # per direction: layer 1, then layer 2 (input 2 x 16)
    assert counter.get_total_flops() == 3 * 2 * 4 * 12 * 2 * gate_products  # (forward + 2 backward) x 2 FLOPs


def test_side_by_side_with_the_published_code(tmp_path, data_root) -> None:
    """``--published``: the published MEVF code and ours on the same 3,064 training QA, one round, one step."""
    data = tmp_path / "vqa_rad"
    assert medvqa_main(["prepare", "vqa-rad", "--source", str(data_root / "vqa_rad"), "--out", str(data),
                        "--image-specs", "gray84,gray128"]) == 0
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "bench_vqa.py"), "--published",
                           str(data_root.parent / "peers"), "--data-root", str(data_root), "--vqa-rad", str(data),
                           "--models", "mevf_ban", "--modes", "frozen", "--rounds", "1", "--steps", "2"],
                          capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("mevf_ban")]
    measured = {(row[2], row[3]): row for row in rows if row[1] == "1"}
    assert measured[("published", "3064")] and measured[("ours", "frozen")][4] == "3064"
    summary = {row[1]: float(row[-1].rstrip("x")) for row in rows if row[1] != "1"}
    assert summary["published"] == 1.0 and summary["ours"] > 0


def test_side_by_side_names_a_missing_import_of_the_published_code_before_timing(monkeypatch) -> None:
    """The published QCR imports h5py: without it the benchmark stops at once, naming it and the extra to install."""
    bench = load_bench()
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "h5py" else find_spec(name))
    timed = []
    monkeypatch.setattr(bench, "published", lambda *a: timed.append(a))
    with pytest.raises(SystemExit, match=r"imports h5py, not installed here: pip install -e '\.\[bench\]'"):
        bench.main(["--published", "peers", "--models", "mevf_ban,qcr"])
    assert not timed
