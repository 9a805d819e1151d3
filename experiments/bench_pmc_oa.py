"""Throughput, scaling and memory of ``pubmedclip pmc-oa extract``, and caption fidelity against pubmed_parser.

    python experiments/bench_pmc_oa.py                 # 40 copies of the 5 staged packages = 200 articles
    python experiments/bench_pmc_oa.py --copies 80 --skip-dask

The staged OA packages are repacked under new PMC ids (and a copy number in each caption, so that the
duplicate filter keeps them) into a temporary folder. Each configuration runs in its own process, so its
peak memory is its own: 1 worker, 2 worker processes, a 2-worker local dask cluster. The shards of all
runs must be byte-identical. "main CPU" is the share of all CPU time spent in the process that writes the
shards (the serial part); on a busy machine the speed-up falls short of what that share allows.
Memory: the 1-worker run on a quarter of the articles against all of them.

Caption fidelity: every figure of every real article in ../shared/data/pmc_oa, this pipeline's caption
against pubmed_parser's ``parse_pubmed_caption`` (optional: ``pip install pubmed-parser``), with the
words one side lacks and why.
"""
from __future__ import annotations

import argparse
import difflib
import hashlib
import io
import json
import os
import re
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lxml import etree  # noqa: E402

from data_prep.pmc_oa.jats import parse_article  # noqa: E402
from data_prep.pmc_oa.pipeline import RunSettings, extract  # noqa: E402
from data_prep.pmc_oa.sources import find_sources  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "pmc_oa"


def replicate(packages: Path, copies: int, out: Path) -> int:
    """``copies`` repacked copies of every package, each under a new PMC id; returns the number of articles."""
    out.mkdir(parents=True, exist_ok=True)
    originals = sorted(packages.glob("*.tar.gz"))
    for number, package in enumerate(originals):
        with tarfile.open(package) as archive:
            members = [(m, archive.extractfile(m).read() if m.isfile() else None) for m in archive.getmembers()]
        for copy in range(copies):
            pmcid = 90_000_000 + copy * len(originals) + number
            with tarfile.open(out / f"PMC{pmcid}.tar.gz", "w:gz", compresslevel=6) as target:
                for member, data in members:
                    if data is not None and member.name.endswith(".nxml"):
                        text = re.sub(rb'(<article-id pub-id-type="pmc">)\d+', rb"\g<1>%d" % pmcid, data)
                        data = text.replace(b"<caption>", b"<caption><p>[copy %d]</p>" % copy)
                        member.size = len(data)
                    target.addfile(member, io.BytesIO(data) if data is not None else None)
    return copies * len(originals)


def peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM (reset by exec, unlike ru_maxrss, which keeps the
    forking parent's) where /proc exists."""
    status = Path("/proc/self/status")
    if status.is_file():
        return int(re.search(r"VmHWM:\s+(\d+) kB", status.read_text())[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(source: str, out: str, engine: str, workers: int) -> None:
    """One configuration in this process; prints its figures as JSON."""
    settings = RunSettings(workers=workers, engine=engine, show_progress=False)
    summary = extract(find_sources(source), out, settings=settings)
    usage_self, usage_children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"seconds": summary["seconds"], "articles": summary["articles"], "figures": summary["figures"],
                      "pairs": summary["pairs"], "peak_rss_mib": peak_rss_mib(),
                      "cpu_main_s": usage_self.ru_utime + usage_self.ru_stime,
                      "cpu_workers_s": usage_children.ru_utime + usage_children.ru_stime}))


def measure(source: Path, out: Path, engine: str, workers: int) -> dict:
    command = [sys.executable, __file__, "--run-one", str(source), str(out), engine, str(workers)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def shards_digest(out: Path) -> str:
    digest = hashlib.sha256()
    for shard in sorted(out.glob("*.tar")):
        digest.update(shard.read_bytes())
    return digest.hexdigest()[:16]


def real_articles(scratch: Path) -> list[tuple[str, Path]]:
    """(name, .nxml path) of every real article: the bare files and the packages' documents."""
    articles = [(p.name, p) for p in sorted((DATA / "nxml").glob("*.nxml"))]
    for package in sorted((DATA / "packages").glob("*.tar.gz")):
        with tarfile.open(package) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith(".nxml"))
            path = scratch / f"{package.name}.nxml"
            path.write_bytes(archive.extractfile(member).read())
            articles.append((package.name, path))
    return articles


def why(ours: str, theirs: str, title: str) -> str:
    """The word-level differences, and their cause where it is one of the known ones."""
    if " ".join(theirs.split()) == ours:
        return "spaces only: pubmed_parser keeps unicode spaces (U+200A) that we normalise"
    a, b = ours.split(), theirs.split()
    changes = [(" ".join(a[i1:i2]), " ".join(b[j1:j2]))
               for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if tag != "equal"]
    if title and changes and changes[0][0].startswith(" ".join(title.split()[:3])) and not changes[0][1]:
        return f"pubmed_parser drops the caption <title> '{title}'"
    listed = "; ".join(f"'{o}' -> '{t}'" if t else f"'{o}' dropped" for o, t in changes[:3])
    if all(not t or len(t) < len(o) for o, t in changes):
        return f"pubmed_parser drops the text of nested inline markup: {listed}"
    return listed


def _titles(path: Path) -> dict[str, str]:
    root = etree.parse(str(path)).getroot()
    return {fig.get("id", ""): " ".join("".join(fig.find("caption/title").itertext()).split())
            for fig in root.iter("fig") if fig.find("caption/title") is not None}


def fidelity(scratch: Path) -> None:
    try:
        import pubmed_parser
    except ImportError:
        print("\ncaption fidelity: pubmed_parser is not installed (pip install pubmed-parser); table skipped")
        return
    rows, total = [], 0
    for name, path in real_articles(scratch):
        ours = {f.fig_id: f.caption for f in parse_article(path.read_bytes(), name).figures}
        titles = _titles(path)
        for figure in pubmed_parser.parse_pubmed_caption(str(path)) or []:
            total += 1
            theirs = figure["fig_caption"]
            if ours.get(figure["fig_id"]) != theirs:
                rows.append((name, figure["fig_id"], why(ours.get(figure["fig_id"], ""), theirs,
                                                         titles.get(figure["fig_id"], ""))))
        total += len(ours) - len(pubmed_parser.parse_pubmed_caption(str(path)) or [])
    print(f"\ncaption fidelity against pubmed_parser {pubmed_parser.__version__}: {len(rows)} of {total} captions differ")
    print(f"{'article':<26} {'figure':<22} why")
    for row in rows:
        print(f"{row[0]:<26} {row[1]:<22} {row[2]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=40, help="copies of each of the 5 staged packages")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--run-one", nargs=4, metavar=("SOURCE", "OUT", "ENGINE", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        source, out, engine, workers = args.run_one
        run_one(source, out, engine, int(workers))
        return
    with tempfile.TemporaryDirectory(prefix="bench_pmc_oa_") as tmp:
        scratch = Path(tmp)
        start = time.perf_counter()
        articles = replicate(DATA / "packages", args.copies, scratch / "packages")
        print(f"{articles} articles repacked in {time.perf_counter() - start:.1f} s "
              f"({sum(p.stat().st_size for p in (scratch / 'packages').iterdir()) / 2**20:.0f} MiB)")
        configs = [("1 worker", "local", 1), (f"{args.workers} workers", "local", args.workers)]
        if not args.skip_dask:
            configs.append((f"dask, {args.workers} workers", "dask", args.workers))
        results = {}
        print(f"load average before the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'run':<18} {'seconds':>8} {'articles/s':>11} {'figures/s':>10} {'speed-up':>9} {'CPU s':>6} "
              f"{'main CPU':>9} {'peak MiB':>9} shards")
        for label, engine, workers in configs:
            out = scratch / label.replace(" ", "_").replace(",", "")
            result = measure(scratch / "packages", out, engine, workers)
            results[label] = result
            base = results["1 worker"]["seconds"]
            cpu = result["cpu_main_s"] + result["cpu_workers_s"]
            print(f"{label:<18} {result['seconds']:>8.2f} {result['articles'] / result['seconds']:>11.1f} "
                  f"{result['figures'] / result['seconds']:>10.1f} {base / result['seconds']:>8.2f}x "
                  f"{cpu:>6.1f} {result['cpu_main_s'] / cpu:>8.0%} {result['peak_rss_mib']:>9.0f} {shards_digest(out)}")
        quarter = scratch / "quarter"
        quarter.mkdir()
        for package in sorted((scratch / "packages").iterdir())[: articles // 4]:
            (quarter / package.name).symlink_to(package)
        small = measure(quarter, scratch / "quarter_out", "local", 1)
        print(f"peak memory, 1 worker: {small['peak_rss_mib']:.0f} MiB for {small['articles']} articles, "
              f"{results['1 worker']['peak_rss_mib']:.0f} MiB for {articles} "
              f"(ratio {results['1 worker']['peak_rss_mib'] / small['peak_rss_mib']:.2f})")
        fidelity(scratch)


if __name__ == "__main__":
    main()
