"""The extraction run: articles processed in parallel (a local process pool or dask), consumed in list
order into shards, so the output does not depend on the engine or the number of workers.

Layout of the output folder::

    000000.tar ...   WebDataset shards: <key>.jpg, <key>.txt (caption), <key>.json (metadata)
    pairs.jsonl      one row per pair: its shard and the sample's metadata
    articles.jsonl   one row per article, in the BiomedCLIP data pipeline's field names
    errors.jsonl     articles that could not be read: article key, source, reason
    summary.json     counts, every dropped figure by reason
    .work/           resume state: per-article results not yet in a shard, one record per published shard

Resuming: each worker stores its article's result in ``.work/articles/``; each published shard gets a
record in ``.work/parts/`` saying where in the article list it ends. A rerun (after kill -9 too) starts
after the last record, reuses the stored results and never rewrites a published shard differently.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import shutil
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.pmc_oa.article import ArticleResult, DownloadOptions, ExtractOptions, process_article
from data_prep.pmc_oa.shards import SHARD_NAME, ShardWriter, sample_key, shard_name
from data_prep.pmc_oa.sources import ArticleSource
from infra.errors import UserError
from infra.files import replace_atomic, write_text_atomic
from infra.progress import progress

FORMAT = 1
OUTPUT_FILES = ("pairs.jsonl", "articles.jsonl", "errors.jsonl", "summary.json")


@dataclass
class RunSettings:
    """How to run (none of these change the output)."""

    workers: int = 0  # 0: every core of this machine
    engine: str = "local"  # local (process pool) | dask
    scheduler: str | None = None  # dask scheduler address; None starts a local dask cluster
    dask_processes: bool = True  # local dask cluster: worker processes (False: threads, for quick checks)
    shard: tuple[int, int] | None = None  # (I, N): process only articles i with i % N == I, write no shards
    show_progress: bool = True


class _Deferred:
    """A call made when its result is asked for."""

    def __init__(self, fn, args: tuple):
        self.fn, self.args = fn, args

    def result(self) -> Any:
        return self.fn(*self.args)


class _Inline:
    """The executor interface, run in this process (one worker), each article when it is consumed."""

    def submit(self, fn, *args) -> _Deferred:
        return _Deferred(fn, args)


def _exit_with_parent(parent: int) -> None:
    """Pool initializer: end this worker when its parent is gone (after kill -9 it would wait forever)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


@contextlib.contextmanager
def _executor(settings: RunSettings, workers: int) -> Iterator[Any]:
    if settings.engine == "dask":
        from dask.distributed import Client, LocalCluster

        if settings.scheduler:
            with Client(settings.scheduler) as client:
                yield client
        else:
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=settings.dask_processes,
                              dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
                yield client
    elif workers == 1:
        yield _Inline()
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
            yield pool


def _window(executor: Any, workers: int) -> int:
    """Articles in flight: a few per worker (a dask cluster's size is its number of threads)."""
    if hasattr(executor, "nthreads"):  # a dask Client
        workers = max(1, sum(executor.nthreads().values()))
    return 4 * workers


def _cache_path(work: Path, source: ArticleSource) -> Path:
    return work / "articles" / f"{source.key}.pkl"


def process_to_cache(source: ArticleSource, options: ExtractOptions, download_options: DownloadOptions,
                     cache: str) -> ArticleResult | None:
    """Process one article and store its result at ``cache``; a download that may succeed later is
    returned, not stored, so that the next run tries again.

    The result is renamed into place (a killed worker leaves no partial file) but not synced to disk:
    it is a cache, and one that a power cut garbled is processed again (``_load_cached``).
    """
    result = process_article(source, options, download_options)
    if result.retry:
        return result
    path = Path(cache)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(tmp, path)
    return None


def _load_cached(path: Path) -> ArticleResult | None:
    try:
        return pickle.loads(path.read_bytes())
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError):
        return None


def _results(sources: list[ArticleSource], indices: list[int], options: ExtractOptions,
             download_options: DownloadOptions, work: Path, executor: Any, window: int) -> Iterator[ArticleResult]:
    """Results for ``indices`` in order; missing ones are computed up to ``window`` ahead in parallel."""
    todo = deque(i for i in indices if not _cache_path(work, sources[i]).is_file())
    running: dict[int, Any] = {}
    for index in indices:
        while todo and len(running) < window:
            i = todo.popleft()
            running[i] = executor.submit(process_to_cache, sources[i], options, download_options,
                                         str(_cache_path(work, sources[i])))
        cache = _cache_path(work, sources[index])
        returned = running.pop(index).result() if index in running else None
        result = returned or _load_cached(cache)
        if result is None:  # a stored result that cannot be read: process the article again
            result = process_to_cache(sources[index], options, download_options, str(cache)) or _load_cached(cache)
        yield result


@dataclass
class _Part:
    """What one shard adds to the run: its pairs, articles, errors, duplicate keys and counts."""

    shard: str | None = None
    next_article: int = 0
    pending: list[int] = field(default_factory=list)  # candidates of article next_article still to write
    pairs: list[dict] = field(default_factory=list)
    articles: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    seen_pairs: list[str] = field(default_factory=list)
    seen_articles: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    final: bool = False


def _part_path(work: Path, index: int) -> Path:
    return work / "parts" / f"{index:06d}.json"


def _read_part(work: Path, index: int) -> _Part:
    raw = json.loads(_part_path(work, index).read_text(encoding="utf-8"))
    return _Part(**{**raw, "counts": Counter(raw["counts"])})


def _light(part: _Part) -> _Part:
    """The part without its rows and keys (they stay on disk), so memory does not grow with the shards."""
    return _Part(part.shard, part.next_article, part.pending, counts=part.counts, final=part.final)


def _load_parts(work: Path) -> tuple[list[_Part], set[str], set[str]]:
    """The published parts (light) and the duplicate keys they hold."""
    parts, seen_pairs, seen_articles = [], set(), set()
    while _part_path(work, len(parts)).is_file():
        part = _read_part(work, len(parts))
        seen_pairs.update(part.seen_pairs)
        seen_articles.update(part.seen_articles)
        parts.append(_light(part))
    return parts, seen_pairs, seen_articles


def _prepare(out: Path, fingerprint: dict, overwrite: bool) -> Path:
    """The work folder of ``out``; a previous run with other settings is refused (or removed with ``overwrite``)."""
    work = out / ".work"
    settings = work / "settings.json"
    if settings.is_file() and json.loads(settings.read_text(encoding="utf-8")) != fingerprint:
        if not overwrite:
            raise UserError(f"{out} holds an extraction with other sources or settings; use another --out or --overwrite")
        shutil.rmtree(work)
        for path in out.iterdir():
            if path.name in OUTPUT_FILES or SHARD_NAME.match(path.name):
                path.unlink()
    elif not settings.is_file() and out.is_dir() and any(p.name in OUTPUT_FILES or SHARD_NAME.match(p.name)
                                                         for p in out.iterdir()):
        raise UserError(f"{out} holds extraction output but no resume state; use another --out")
    (work / "articles").mkdir(parents=True, exist_ok=True)
    (work / "parts").mkdir(parents=True, exist_ok=True)
    write_text_atomic(settings, json.dumps(fingerprint, sort_keys=True))
    return work


def _account(result: ArticleResult, part: _Part, seen_pairs: set[str], seen_articles: set[str]) -> list[int]:
    """Count one article into ``part`` and return the indices of its candidates that become pairs."""
    counts = part.counts
    counts["articles"] += 1
    counts["non_figure_graphics"] += result.other_graphics
    figures = len(result.candidates) + sum(result.dropped.values())
    counts["figures"] += figures
    for reason, n in result.dropped.items():
        counts[f"dropped.{reason}"] += n
    if result.error:
        counts["articles_failed"] += 1
        part.errors.append({"article": result.key, "source": result.source, "reason": result.error})
        return []
    if result.excluded:
        counts[f"articles_excluded.{result.excluded}"] += 1
        return []
    pmc = result.meta["pmc"]
    if pmc and pmc in seen_articles:
        counts["articles_excluded.duplicate_article"] += 1
        counts["dropped.duplicate"] += len(result.candidates)
        return []
    if pmc:
        seen_articles.add(pmc)
        part.seen_articles.append(pmc)
    kept = []
    for index, candidate in enumerate(result.candidates):
        key = candidate.duplicate_key
        if key in seen_pairs:
            counts["dropped.duplicate"] += 1
            continue
        seen_pairs.add(key)
        part.seen_pairs.append(key)
        kept.append(index)
    figures_out = [{"fig_caption": c.caption, "fig_id": c.fig_id, "fig_label": c.fig_label,
                    "graphic_ref": c.graphic_ref, "pair_id": c.pair_id} for c in (result.candidates[i] for i in kept)]
    part.articles.append({**result.meta, "figures": figures_out})
    return kept


def _sample(result: ArticleResult, index: int) -> tuple[str, dict[str, bytes], dict]:
    candidate = result.candidates[index]
    key = sample_key(candidate.pair_id)
    meta = {"key": key, "pair_id": candidate.pair_id, **{k: result.meta[k] for k in
            ("pmid", "pmc", "doi", "journal", "year", "license")},
            "fig_id": candidate.fig_id, "fig_label": candidate.fig_label, "graphic_ref": candidate.graphic_ref,
            "width": candidate.width, "height": candidate.height, "sha1": candidate.sha1, "caption": candidate.caption}
    files = {"jpg": candidate.jpeg, "txt": candidate.caption.encode("utf-8"),
             "json": json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")}
    return key, files, meta


def _write_part(work: Path, index: int, part: _Part) -> None:
    raw = {**part.__dict__, "counts": dict(sorted(part.counts.items()))}
    write_text_atomic(_part_path(work, index), json.dumps(raw, ensure_ascii=False))


def _assemble(out: Path, work: Path, parts: list[_Part], total_articles: int) -> dict:
    """Concatenate the parts, read back one at a time, into the index files and the summary (all atomic)."""
    counts: Counter = Counter()
    for part in parts:
        counts.update(part.counts)

    def jsonl(name: str) -> None:
        def write(tmp: Path) -> None:
            with tmp.open("w", encoding="utf-8") as handle:
                for index in range(len(parts)):
                    for row in getattr(_read_part(work, index), name):
                        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        replace_atomic(out / f"{name}.jsonl", write)

    for name in ("pairs", "articles", "errors"):
        jsonl(name)
    summary = {
        "format": FORMAT,
        "articles": total_articles,
        "articles_read": counts["articles"] - counts["articles_failed"],
        "articles_failed": counts["articles_failed"],
        "articles_excluded": {k.split(".", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("articles_excluded.")},
        "figures": counts["figures"],
        "pairs": counts["pairs"],
        "shards": [p.shard for p in parts if p.shard],
        "dropped": {k.split(".", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("dropped.")},
        "non_figure_graphics": counts["non_figure_graphics"],
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def fingerprint(sources: list[ArticleSource], options: ExtractOptions, shard_size: int) -> dict:
    digest = hashlib.sha1("\n".join(f"{s.key}\t{s.entry.licence if s.entry else ''}" for s in sources).encode())
    return {"format": FORMAT, "options": options.fingerprint(), "shard_size": shard_size,
            "articles": len(sources), "sources": digest.hexdigest()}


def extract(sources: list[ArticleSource], out: str | Path, options: ExtractOptions = ExtractOptions(),
            download_options: DownloadOptions = DownloadOptions(), settings: RunSettings = RunSettings(),
            shard_size: int = 1000, overwrite: bool = False) -> dict:
    """Turn ``sources`` into shards and indexes under ``out``; returns the summary (plus ``seconds``).

    With ``settings.shard = (I, N)`` only every N-th article (from I) is processed and stored in the work
    folder; a run without it then writes the shards, reusing the stored results.
    """
    if shard_size < 1:
        raise UserError(f"shard size must be at least 1, got {shard_size}")
    out = Path(out)
    keys = [s.key for s in sources]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k, n in Counter(keys).items() if n > 1)
        raise UserError(f"two sources share the name {duplicate!r}: give each article a distinct file name")
    work = _prepare(out, fingerprint(sources, options, shard_size), overwrite)
    workers = settings.workers or os.cpu_count() or 1
    start = time.perf_counter()
    if settings.shard:
        number, count = settings.shard
        indices = [i for i in range(len(sources)) if i % count == number]
        done_before = sum(_cache_path(work, sources[i]).is_file() for i in indices)
        with _executor(settings, workers) as executor:
            results = _results(sources, indices, options, download_options, work, executor, _window(executor, workers))
            failed = sum(result.retry for result in progress(results, settings.show_progress, total=len(indices),
                                                             desc=f"part {number}/{count}"))
        return {"part": f"{number}/{count}", "articles": len(indices), "stored_before": done_before,
                "download_failures": failed, "seconds": time.perf_counter() - start}

    parts, seen_pairs, seen_articles = _load_parts(work)
    if not parts or not parts[-1].final:
        _consume(sources, out, work, (parts, seen_pairs, seen_articles), options, download_options, settings, workers,
                 shard_size)
    summary = _assemble(out, work, parts, len(sources))
    return {**summary, "seconds": time.perf_counter() - start}


def _consume(sources: list[ArticleSource], out: Path, work: Path, state: tuple[list[_Part], set[str], set[str]],
             options: ExtractOptions, download_options: DownloadOptions, settings: RunSettings, workers: int,
             shard_size: int) -> None:
    """Write shards from the article results in list order, continuing after the last published part
    (``state``: the published parts and their duplicate keys; new parts are appended)."""
    parts, seen_pairs, seen_articles = state
    first = parts[-1].next_article if parts else 0
    pending = parts[-1].pending if parts else []
    part, writer, cleared = _Part(), ShardWriter(out / shard_name(len(parts))), first

    def publish(next_article: int, still_pending: list[int], final: bool) -> None:
        nonlocal part, writer, cleared
        if writer.count:
            part.shard = writer.publish().name
        else:
            writer.discard()
        part.next_article, part.pending, part.final = next_article, still_pending, final
        _write_part(work, len(parts), part)
        parts.append(_light(part))
        for i in range(cleared, next_article):  # these articles are in published shards now
            _cache_path(work, sources[i]).unlink(missing_ok=True)
        cleared = next_article
        if not final:
            part, writer = _Part(), ShardWriter(out / shard_name(len(parts)))

    indices, retry = list(range(first, len(sources))), []
    with _executor(settings, workers) as executor:
        results = _results(sources, indices, options, download_options, work, executor, _window(executor, workers))
        for index, result in zip(indices, progress(results, settings.show_progress, total=len(indices),
                                                   desc="articles")):
            if result.retry or retry:  # shards stop before it; the articles after it are still processed and stored
                retry += [result.error] if result.retry else []
                continue
            kept = pending if pending and index == first else _account(result, part, seen_pairs, seen_articles)
            for position, candidate in enumerate(kept):
                key, files, meta = _sample(result, candidate)
                writer.add(key, files)
                part.pairs.append({"shard": shard_name(len(parts)), **meta})
                part.counts["pairs"] += 1
                if writer.count == shard_size:
                    rest = kept[position + 1:]
                    publish(index if rest else index + 1, rest, final=False)
    if retry:
        writer.discard()
        raise UserError(f"{len(retry)} package downloads failed after their retries ({retry[0]}); the shards before "
                        f"the first are written: run the same command again to continue")
    publish(len(sources), [], final=True)
