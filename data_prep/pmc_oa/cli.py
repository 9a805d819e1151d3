"""``pubmedclip pmc-oa extract``: OA packages, article folders or ``.nxml`` files -> WebDataset shards."""
from __future__ import annotations

import re

from data_prep.pmc_oa.article import DownloadOptions, ExtractOptions
from data_prep.pmc_oa.pipeline import RunSettings, extract
from data_prep.pmc_oa.sources import COMMERCIAL_LICENCES, parse_licences, plan_sources
from infra.cli import Parser, run_command
from infra.errors import UserError


def _shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not int(match[1]) < int(match[2]):
        raise UserError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 3/16")
    return int(match[1]), int(match[2])


def _summary_line(summary: dict) -> str:
    dropped = ", ".join(f"{reason} {n}" for reason, n in summary["dropped"].items()) or "none"
    excluded = sum(summary["articles_excluded"].values())
    return (f"{summary['articles']} articles ({summary['articles_failed']} failed, {excluded} excluded), "
            f"{summary['figures']} figures -> {summary['pairs']} pairs in {len(summary['shards'])} shards; "
            f"dropped: {dropped}; {summary['non_figure_graphics']} non-figure graphics skipped; "
            f"{summary['seconds']:.1f} s ({summary['articles'] / max(summary['seconds'], 1e-9):.1f} articles/s)")


def extract_main(argv: list[str]) -> int:
    parser = Parser(prog="pubmedclip pmc-oa extract", description="Figure-caption pairs from PMC Open Access articles.")
    parser.add_argument("--source", required=True, help="folder of OA packages / article folders / .nxml files, or "
                        "one of them; with --download, the folder the packages are fetched into")
    parser.add_argument("--out", required=True, help="output folder (shards, pairs.jsonl, articles.jsonl, summary.json)")
    parser.add_argument("--file-list", help="PMC oa_file_list.txt or its CSV form: licence, citation, PMID per package")
    parser.add_argument("--licences", help="keep only these licences, comma-separated (e.g. 'CC BY,CC0')")
    parser.add_argument("--commercial", action="store_true",
                        help=f"keep PMC's commercial-use subset ({', '.join(COMMERCIAL_LICENCES)})")
    parser.add_argument("--download", action="store_true", help="fetch the file list's packages from --base-url")
    parser.add_argument("--base-url", help="where the file list's paths are served (e.g. an OA mirror or bucket)")
    parser.add_argument("--retries", type=int, default=3, help="download retries per package")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a download retry")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default: every core)")
    parser.add_argument("--engine", choices=("local", "dask"), default="local")
    parser.add_argument("--scheduler", help="dask scheduler address (default: a local dask cluster of --workers)")
    parser.add_argument("--shard", type=_shard, help="I/N: process every N-th article from I (an array job's part); "
                        "a run without --shard then writes the shards")
    parser.add_argument("--shard-size", type=int, default=1000, help="pairs per tar shard")
    parser.add_argument("--min-image-size", type=int, default=64, help="shorter image side in pixels")
    parser.add_argument("--min-caption-chars", type=int, default=10)
    parser.add_argument("--overwrite", action="store_true", help="replace an extraction made with other settings")
    args = parser.parse_args(argv)
    if args.download and not args.base_url:
        raise UserError("--download needs --base-url")
    if args.scheduler and args.engine != "dask":
        raise UserError("--scheduler needs --engine dask")
    if args.workers < 0 or args.retries < 0:
        raise UserError("--workers and --retries must not be negative")
    sources = plan_sources(args.source, args.file_list, args.base_url if args.download else None)
    licences = parse_licences(args.licences, args.commercial)
    options = ExtractOptions(args.min_image_size, args.min_caption_chars, tuple(sorted(licences)) if licences else None)
    settings = RunSettings(args.workers, args.engine, args.scheduler, shard=args.shard)
    summary = extract(sources, args.out, options, DownloadOptions(args.retries, args.timeout), settings,
                      args.shard_size, args.overwrite)
    if args.shard:
        print(f"part {summary['part']}: {summary['articles']} articles ({summary['stored_before']} done before, "
              f"{summary['download_failures']} downloads failed) in {summary['seconds']:.1f} s; "
              f"run without --shard on the same --out to write the shards")
    else:
        print(_summary_line(summary) + f"; output in {args.out}")
    return 0


COMMANDS = {"extract": extract_main}


def main(argv: list[str] | None = None) -> int:
    return run_command("pubmedclip pmc-oa", COMMANDS, argv)
