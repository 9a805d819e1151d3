"""The extraction run: real packages end to end, every filter counted, the same bytes for any worker
count, engine or split, and resumption after an interruption."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image
from pmc_testutils import image_bytes, jats, write_package

from data_prep.pmc_oa import article as article_module
from data_prep.pmc_oa import pipeline
from data_prep.pmc_oa.article import ExtractOptions
from data_prep.pmc_oa.pipeline import RunSettings, extract
from data_prep.pmc_oa.shards import ShardWriter
from data_prep.pmc_oa.sources import find_sources
from infra.errors import UserError
from pubmedclip.cli import main

ROOT = Path(__file__).resolve().parents[3]

# real caption text (from the staged articles) for the built packages
SEGMENTS = "Segmented rings on the outside represent the six <italic>C. elegans</italic> chromosomes."
EXPOSURE = "Exposure to PBDE-47 depressed circulating concentrations of total T<sub>4</sub> in males and females."
DIETARY = "Dietary PBDE-47 exposure elevated mRNA levels for TR&#x003b1; in females."
CC_BY = '<license xlink:href="http://creativecommons.org/licenses/by/4.0/"><license-p>CC BY</license-p></license>'
CC_BY_NC = '<license xlink:href="http://creativecommons.org/licenses/by-nc/4.0/"/>'


def _fig(fig_id: str, href: str | None, caption: str | None) -> str:
    graphic = f'<graphic xlink:href="{href}"/>' if href else ""
    text = f"<caption><p>{caption}</p></caption>" if caption is not None else ""
    return f'<fig id="{fig_id}"><label>Figure</label>{text}{graphic}</fig>'


def _tiff() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (100, 80), (10, 120, 200)).save(out, "TIFF")
    return out.getvalue()


def build_edge_cases(root: Path) -> Path:
    """Six packages covering every filter and failure; see the counts in ``test_every_filter_is_counted``."""
    shared = image_bytes(color=(40, 160, 40))
    body_a = (f'<fig-group id="G1"><fig id="F1"><label>Figure 1</label><caption><title>Rings</title><p>{SEGMENTS}</p>'
              f'</caption><alternatives><graphic xlink:href="a1"/><graphic xlink:href="a1-web"/></alternatives></fig></fig-group>'
              + _fig("F2", "a2", None) + _fig("F3", "a3", SEGMENTS) + _fig("F4", "a4", SEGMENTS)
              + _fig("F5", "a5", SEGMENTS) + _fig("F6", "a6", EXPOSURE)
              + '<p>Inline <inline-formula><inline-graphic xlink:href="e1.jpg"/></inline-formula></p>')
    write_package(root / "PMC101.tar.gz", "PMC101", jats(body_a, "1001", "101", CC_BY), {
        "a1.TIF": _tiff(), "a1.gif": image_bytes(), "a2.jpg": image_bytes(), "a4.jpg": image_bytes((20, 20)),
        "a5.jpg": image_bytes()[:300], "a6.jpg": shared, "a6.gif": image_bytes((30, 20), "GIF"), "e1.jpg": image_bytes()})
    body_b = _fig("F1", "b1", EXPOSURE) + _fig("F2", "b2", DIETARY)
    write_package(root / "PMC102.tar.gz", "J_Test_2012_1_e2", jats(body_b, "1002", "102", CC_BY),
                  {"b1.jpg": shared, "b2.jpg": shared})
    write_package(root / "PMC103.tar.gz", "PMC103", jats(_fig("F1", "c1", DIETARY), "1003", "103", CC_BY_NC),
                  {"c1.jpg": image_bytes()})
    write_package(root / "PMC104.tar.gz", "PMC104", "<article><front>", {})
    good = (root / "PMC101.tar.gz").read_bytes()
    (root / "PMC105.tar.gz").write_bytes(good[: len(good) // 2])
    body_f = _fig("F1", "f1", DIETARY) + _fig("F1", "f2", SEGMENTS)  # no PMID, a repeated figure id
    write_package(root / "PMC106.tar.gz", "PMC106", jats(body_f, "", "106", CC_BY),
                  {"f1.png": image_bytes(fmt="PNG", color=(1, 2, 3)), "f2.jpg": image_bytes(color=(9, 9, 9))})
    return root


@pytest.fixture(scope="module")
def edge_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_edge_cases(tmp_path_factory.mktemp("edge"))


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def _samples(shard: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(shard) as archive:
        for member in archive.getmembers():
            key, extension = member.name.split(".", 1)
            samples.setdefault(key, {})[extension] = archive.extractfile(member).read()
    return samples


def test_real_packages_end_to_end(pmc_oa: Path, tmp_path: Path) -> None:
    summary = extract(find_sources(pmc_oa), tmp_path, settings=RunSettings(workers=1, show_progress=False), shard_size=4)
    assert (summary["articles"], summary["figures"], summary["pairs"]) == (13, 28, 11)
    assert summary["dropped"] == {"missing_image": 17}  # the bare .nxml files have no images
    assert summary["non_figure_graphics"] == 320 and summary["shards"] == ["000000.tar", "000001.tar", "000002.tar"]
    samples = {k: v for shard in sorted(tmp_path.glob("*.tar")) for k, v in _samples(shard).items()}
    assert len(samples) == 11 and all(set(v) == {"jpg", "txt", "json"} for v in samples.values())
    plant = samples["PMC12419688_koaf197-F1"]
    meta = json.loads(plant["json"])
    assert meta["graphic_ref"] == "PMC12419688/koaf197f1.jpg" and meta["pmid"] == "40795775"
    assert Image.open(io.BytesIO(plant["jpg"])).size == (meta["width"], meta["height"])
    assert "along the C. elegans genome" in samples["PMC3532326_F1"]["txt"].decode()
    articles = [json.loads(line) for line in (tmp_path / "articles.jsonl").read_text().splitlines()]
    assert len(articles) == 13
    record = next(a for a in articles if a["pmc"] == "12419688")
    assert set(record) >= {"pmid", "pmc", "location", "figures"} and record["location"] == "PMC12419688"
    assert set(record["figures"][0]) == {"fig_caption", "fig_id", "fig_label", "graphic_ref", "pair_id"}
    pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len({p["pair_id"] for p in pairs}) == 11 and {p["shard"] for p in pairs} == set(summary["shards"])
    assert not list(tmp_path.glob(".*.partial")) and not list((tmp_path / ".work" / "articles").iterdir())


def test_every_filter_is_counted(edge_root: Path, tmp_path: Path) -> None:
    options = ExtractOptions(licences=("CC BY",))
    summary = extract(find_sources(edge_root), tmp_path, options, settings=RunSettings(workers=1, show_progress=False),
                      shard_size=2)
    assert summary["dropped"] == {"missing_image": 1, "short_caption": 1, "small_image": 1, "corrupt_image": 1,
                                  "duplicate": 1, "licence": 1}
    assert summary["articles_failed"] == 2 and summary["articles_excluded"] == {"licence": 1}
    assert summary["non_figure_graphics"] == 1 and summary["figures"] == 11 and summary["pairs"] == 5
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [(e["article"], "malformed XML" in e["reason"] or "truncated" in e["reason"]) for e in errors] == [
        ("PMC104", True), ("PMC105", True)]
    pairs = {p["pair_id"]: p for p in map(json.loads, (tmp_path / "pairs.jsonl").read_text().splitlines())}
    assert sorted(pairs) == ["PMC101_F1", "PMC101_F6", "PMC102_F2", "PMC106_F1", "PMC106_F1_2"]
    assert pairs["PMC101_F1"]["graphic_ref"] == "PMC101/a1.TIF"  # alternatives, extension-less, uppercase
    assert pairs["PMC101_F1"]["caption"].startswith("Rings Segmented rings") and "C. elegans chromosomes" in pairs[
        "PMC101_F1"]["caption"]
    assert pairs["PMC101_F6"]["graphic_ref"] == "PMC101/a6.jpg"  # not the gif thumbnail
    assert pairs["PMC106_F1"]["pmid"] == ""
    samples = {k: v for shard in sorted(tmp_path.glob("*.tar")) for k, v in _samples(shard).items()}
    assert Image.open(io.BytesIO(samples["PMC101_F1"]["jpg"])).format == "JPEG"  # the TIFF converted
    assert Image.open(io.BytesIO(samples["PMC106_F1"]["jpg"])).format == "JPEG"  # the PNG converted


def test_same_bytes_for_any_worker_count_engine_and_split(pmc_oa: Path, edge_root: Path, tmp_path: Path) -> None:
    sources = find_sources(edge_root) + find_sources(pmc_oa / "packages")
    reference = tmp_path / "one"
    extract(sources, reference, settings=RunSettings(workers=1, show_progress=False), shard_size=3)
    expected = _outputs(reference)
    assert len([n for n in expected if n.endswith(".tar")]) == 6

    extract(sources, tmp_path / "two", settings=RunSettings(workers=2, show_progress=False), shard_size=3)
    assert _outputs(tmp_path / "two") == expected

    dask = RunSettings(workers=2, engine="dask", dask_processes=False, show_progress=False)
    extract(sources, tmp_path / "dask", settings=dask, shard_size=3)
    assert _outputs(tmp_path / "dask") == expected

    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        remote = RunSettings(engine="dask", scheduler=cluster.scheduler_address, show_progress=False)
        extract(sources, tmp_path / "scheduler", settings=remote, shard_size=3)
    assert _outputs(tmp_path / "scheduler") == expected

    for part in range(3):  # an array job of three tasks, then the run that writes the shards
        result = extract(sources, tmp_path / "split", settings=RunSettings(workers=1, shard=(part, 3), show_progress=False),
                         shard_size=3)
        assert result["articles"] == len(range(part, len(sources), 3))
    assert not list((tmp_path / "split").glob("*.tar"))
    calls = []
    original = article_module.process_article
    pipeline.process_article = lambda *args: calls.append(args) or original(*args)
    try:
        extract(sources, tmp_path / "split", settings=RunSettings(workers=1, show_progress=False), shard_size=3)
    finally:
        pipeline.process_article = original
    assert calls == [] and _outputs(tmp_path / "split") == expected


def test_resume_after_interruption(pmc_oa: Path, edge_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = find_sources(edge_root) + find_sources(pmc_oa / "packages")
    extract(sources, tmp_path / "whole", settings=RunSettings(workers=1, show_progress=False), shard_size=3)
    add, added = ShardWriter.add, []

    def interrupted_add(self: ShardWriter, key: str, files: dict[str, bytes]) -> None:
        if len(added) == 7:  # mid-shard, mid-article: the process dies here
            raise KeyboardInterrupt
        added.append(key)
        add(self, key, files)

    monkeypatch.setattr(ShardWriter, "add", interrupted_add)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        extract(sources, out, settings=RunSettings(workers=1, show_progress=False), shard_size=3)
    assert sorted(p.name for p in out.glob("*.tar")) == ["000000.tar", "000001.tar"]  # the partial third is not published
    stored = sorted(p.name for p in (out / ".work" / "articles").iterdir())
    assert stored == ["PMC11518443.pkl", "PMC12419688.pkl", "pmc2924383.pkl"]  # processed, not in a published shard
    (out / ".work" / "articles" / "PMC12419688.pkl").write_bytes(b"garbled by a power cut")
    monkeypatch.setattr(ShardWriter, "add", add)
    calls = []
    original = article_module.process_article
    monkeypatch.setattr(pipeline, "process_article", lambda *args: calls.append(args[0].key) or original(*args))
    extract(sources, out, settings=RunSettings(workers=1, show_progress=False), shard_size=3)
    assert _outputs(out) == _outputs(tmp_path / "whole")
    done_before = {"PMC101", "PMC102", "PMC103", "PMC104", "PMC105", "PMC106"}  # their pairs were all in shards 0-1
    assert calls == ["PMC12419688", "pmc2958805", "pmc3532326"]  # the stored results are reused, the garbled one redone
    assert not done_before & set(calls)


def test_settings_change_is_refused_then_overwritten(edge_root: Path, tmp_path: Path) -> None:
    sources = find_sources(edge_root)
    extract(sources, tmp_path, settings=RunSettings(workers=1, show_progress=False))
    with pytest.raises(UserError, match="other sources or settings"):
        extract(sources, tmp_path, ExtractOptions(min_caption_chars=50), settings=RunSettings(workers=1, show_progress=False))
    summary = extract(sources, tmp_path, ExtractOptions(min_caption_chars=500),
                      settings=RunSettings(workers=1, show_progress=False), overwrite=True)
    assert summary["pairs"] == 0 and not list(tmp_path.glob("*.tar"))


def test_command_line(edge_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["pmc-oa", "extract", "--source", str(edge_root), "--out", str(tmp_path / "out"), "--workers", "1",
            "--licences", "CC BY"]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("6 articles (2 failed, 1 excluded), 11 figures -> 5 pairs in 1 shards; dropped: ")
    assert main(["pmc-oa", "extract", "--source", str(edge_root), "--out", str(tmp_path), "--shard", "3/3"]) == 2
    assert "--shard '3/3': expected I/N" in capsys.readouterr().err
    assert main(["pmc-oa", "extract", "--source", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "source not found" in capsys.readouterr().err


def test_the_command_starts_without_the_model_libraries(edge_root: Path, tmp_path: Path) -> None:
    """``pubmedclip pmc-oa`` needs no model: torch and the CLIP libraries stay unimported (seconds of start-up)."""
    script = ("import sys; from pubmedclip.cli import main; "
              f"main(['pmc-oa', 'extract', '--source', {str(edge_root)!r}, '--out', {str(tmp_path / 'out')!r}, "
              "'--workers', '1']); "
              "print('imported:', sorted({'torch', 'open_clip', 'transformers'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert "6 pairs in 1 shards" in done.stdout and done.stdout.strip().endswith("imported: []"), done.stderr


def test_an_unexpected_failure_is_one_article_error(edge_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(data: bytes, name: str = "") -> None:
        if "PMC102" in name:
            raise RecursionError("maximum recursion depth exceeded")
        return parse(data, name)

    parse = article_module.parse_article
    monkeypatch.setattr(article_module, "parse_article", explode)
    summary = extract(find_sources(edge_root), tmp_path, settings=RunSettings(workers=1, show_progress=False))
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert summary["articles_failed"] == 3
    assert {"article": "PMC102", "source": str(edge_root / "PMC102.tar.gz"),
            "reason": "RecursionError: maximum recursion depth exceeded"} in errors


def test_extracted_article_folders_give_the_packages_pairs(pmc_oa: Path, tmp_path: Path) -> None:
    for package in sorted((pmc_oa / "packages").glob("*.tar.gz")):
        with tarfile.open(package) as archive:
            archive.extractall(tmp_path / "folders", filter="data")
    settings = RunSettings(workers=1, show_progress=False)
    folders = extract(find_sources(tmp_path / "folders"), tmp_path / "from_folders", settings=settings)
    packages = extract(find_sources(pmc_oa / "packages"), tmp_path / "from_packages", settings=settings)
    assert folders["pairs"] == packages["pairs"] == 11
    def samples(out: Path) -> dict[str, dict[str, bytes]]:  # the folders sort in another order than the packages
        return {k: v for shard in sorted(out.glob("*.tar")) for k, v in _samples(shard).items()}

    assert samples(tmp_path / "from_folders") == samples(tmp_path / "from_packages")
