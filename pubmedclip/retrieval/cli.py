"""Command line: ``pubmedclip index | caption | search`` and the ``captioning`` task of ``pubmedclip evaluate``."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

from infra.cli import Parser
from infra.errors import UserError
from infra.files import write_text_atomic
from pubmedclip.retrieval.search import Hit


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-k", type=int, default=None, help="results per query")
    parser.add_argument("--backend", default="auto", choices=("auto", "faiss", "torch"),
                        help="auto: FAISS when installed, else the exact chunked torch search")
    parser.add_argument("--out", help="results file: .jsonl (default format) or .csv; without it, JSONL on stdout")


def _index_and_encoder(args: argparse.Namespace):
    from pubmedclip import cli
    from pubmedclip.retrieval.index import EmbeddingIndex

    index = EmbeddingIndex(args.index)
    args.checkpoint = args.checkpoint or index.manifest.get("checkpoint")
    if args.checkpoint is None:
        raise UserError(f"index {args.index} does not name its checkpoint: give --checkpoint")
    return index, cli._encoder(args)


def _write_results(rows: list[dict[str, Any]], field: str, out: str | None) -> None:
    """One JSON line per query, or one CSV row per hit (``query,rank,id,<field>,score``)."""
    if out is not None and Path(out).suffix == ".csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(("query", "rank", "id", field, "score"))
        writer.writerows((row["query"], h["rank"], h["id"], h[field], h["score"]) for row in rows for h in row["results"])
        write_text_atomic(out, text.getvalue())
        print(f"wrote {len(rows)} queries to {out}")
        return
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if out is None:
        print(text, end="")
    else:
        write_text_atomic(out, text)
        print(f"wrote {len(rows)} queries to {out}")


def _rows(queries: list[str], hits: list[list[Hit]], field: str) -> list[dict[str, Any]]:
    return [{"query": q, "results": [{"rank": h.rank, "id": h.id, field: h.value, "score": round(h.score, 6)}
                                     for h in query_hits]}
            for q, query_hits in zip(queries, hits)]


def _image_paths(spec: str) -> list[Path]:
    from pubmedclip.encoder import list_images

    path = Path(spec)
    if path.is_file():
        return [path]
    if not path.exists():
        raise UserError(f"image or image directory not found: {path}")
    paths = list_images(path)
    if not paths:
        raise UserError(f"no images in {path}")
    return paths


def index_main(argv: list[str] | None = None) -> int:
    from pubmedclip import cli
    from pubmedclip.retrieval.bank import read_captions
    from pubmedclip.retrieval.index import build_caption_index, build_image_index

    parser = Parser(prog="pubmedclip index", description="Embed a caption bank or an image folder once, for search.")
    cli._runtime_args(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--captions", help="ROCO folder, captions.txt, or a CSV/TSV/JSONL with a caption column")
    source.add_argument("--images", help="folder of images (searched recursively)")
    parser.add_argument("--out", required=True, help="index folder")
    parser.add_argument("--chunk-size", type=int, default=4096, help="items encoded between progress records")
    parser.add_argument("--approximate", action="store_true", help="also build a FAISS inverted-file index")
    parser.add_argument("--overwrite", action="store_true", help="replace an index of other inputs or another model")
    args = parser.parse_args(argv)
    if args.checkpoint is None:
        raise UserError("pubmedclip index needs --checkpoint (an index of random weights could never be searched)")
    checkpoint = str(Path(args.checkpoint).resolve())
    encoder = cli._encoder(args)
    if args.captions:
        index = build_caption_index(encoder.loaded, read_captions(args.captions), args.out, source=args.captions,
                                    checkpoint=checkpoint, batch_size=args.batch_size, device=args.device,
                                    chunk_size=args.chunk_size, approximate=args.approximate, overwrite=args.overwrite)
    else:
        paths = _image_paths(args.images)
        index = build_image_index(encoder, paths, args.out, root=args.images, checkpoint=checkpoint,
                                  chunk_size=args.chunk_size, approximate=args.approximate, overwrite=args.overwrite)
    skipped = index.manifest["skipped"]
    print(f"index {args.out}: {index.count} {index.kind} x {index.dim}"
          + (f"; skipped {len(skipped)} undecodable images (e.g. {skipped[0]})" if skipped else ""))
    return 0


def caption_main(argv: list[str] | None = None) -> int:
    from pubmedclip import cli
    from pubmedclip.retrieval.search import caption_images

    parser = Parser(prog="pubmedclip caption", description="Caption images with the best captions of a caption index.")
    cli._runtime_args(parser)
    parser.add_argument("--index", required=True, help="caption index folder (pubmedclip index --captions)")
    parser.add_argument("--images", required=True, help="an image file or a folder of images")
    _common(parser)
    args = parser.parse_args(argv)
    paths = _image_paths(args.images)
    index, encoder = _index_and_encoder(args)
    hits = caption_images(index, encoder, paths, args.k or 5, args.backend)
    _write_results(_rows([str(p) for p in paths], hits, "caption"), "caption", args.out)
    return 0


def search_main(argv: list[str] | None = None) -> int:
    from pubmedclip import cli
    from pubmedclip.retrieval.search import search_images, search_text

    parser = Parser(prog="pubmedclip search", description="Find images of an image index by text or by image.")
    cli._runtime_args(parser)
    parser.add_argument("--index", required=True, help="image index folder (pubmedclip index --images)")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", action="append", help="text query (repeatable)")
    query.add_argument("--image", help="query image file or folder: image-to-image search")
    _common(parser)
    args = parser.parse_args(argv)
    index, encoder = _index_and_encoder(args)
    if args.text:
        queries, hits = args.text, search_text(index, encoder.loaded, args.text, args.k or 10, args.backend)
    else:
        paths = _image_paths(args.image)
        queries, hits = [str(p) for p in paths], search_images(index, encoder, paths, args.k or 10, args.backend)
    _write_results(_rows(queries, hits, "path"), "path", args.out)
    return 0


def captioning_result(encoder, args: argparse.Namespace) -> dict[str, Any]:
    """``pubmedclip evaluate --task captioning``: the report, with per-image results beside ``--out``."""
    from pubmedclip.retrieval.captioning import evaluate_captioning

    per_image = Path(args.out).with_suffix(".jsonl") if args.out else None
    if per_image is not None and per_image == Path(args.out):
        raise UserError(f"--out {args.out}: give a .json file (the per-image results go to {per_image})")
    return evaluate_captioning(encoder, args.data, args.image_root, args.bank, args.bank_image_root, args.protocol,
                               per_image=per_image, backend="auto")
