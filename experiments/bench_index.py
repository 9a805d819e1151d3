"""Embedding-index speed: search queries/s and peak memory, FAISS exact against the chunked torch search, and index
building against the bare encoder forward.

    python experiments/bench_index.py                      # 200,000 x 512 bank, a few minutes on 2 cores
    python experiments/bench_index.py --bank 1000000       # the full million (about 2 GB of vectors on disk)

Search: a bank of random 512-d unit vectors is written as an index folder; each backend then answers the same
``--queries`` top-10 queries in a fresh process (so its peak resident memory is its own), and the rows both
return are compared. Building: ``--captions`` real ROCO captions and ``--images`` real ROCO images are embedded
by a random ``--arch`` model once bare (tokenize/decode + forward in the same batches) and once through
``build_caption_index`` / ``build_image_index``, alternating ``--rounds`` times; the ratio of the median rates is
the index's overhead (target >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from pubmedclip.data import ImageDataset, collate, read_pairs
from pubmedclip.encoder import ImageEncoder
from pubmedclip.retrieval.bank import read_captions
from pubmedclip.retrieval.index import FORMAT, EmbeddingIndex, build_caption_index, build_image_index, unit_rows

DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_bank(folder: Path, count: int, dim: int, seed: int = 0) -> None:
    """An index folder of ``count`` random unit vectors, written in blocks (the writer never holds the bank)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(folder / "vectors.f32", "wb") as handle:
        for start in range(0, count, 65536):
            unit_rows(rng.standard_normal((min(65536, count - start), dim), dtype=np.float32)).tofile(handle)
    (folder / "items.jsonl").write_text("".join(f'{{"id": "v{i}", "caption": ""}}\n' for i in range(count)))
    manifest = {"format": FORMAT, "kind": "captions", "identity": "random-bench", "count": count, "dim": dim,
                "approximate": False, "skipped": []}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def search_worker(folder: str, backend: str, queries: int, out: str) -> None:
    """Run in a fresh process: open the index, answer the queries, print timings and peak memory as JSON."""
    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # torch, faiss, open_clip loaded
    index = EmbeddingIndex(folder)
    q = unit_rows(np.random.default_rng(1).standard_normal((queries, index.dim), dtype=np.float32))
    start = time.perf_counter()
    index.search(q[:1], 10, backend=backend)  # FAISS copies the bank into its index on first use
    first = time.perf_counter() - start
    start = time.perf_counter()
    _, rows = index.search(q, 10, backend=backend)
    elapsed = time.perf_counter() - start
    np.save(out, rows)
    print(json.dumps({"backend": backend, "first_query_s": first, "queries_per_s": queries / elapsed,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "imports_mib": imported}))


def bench_search(count: int, dim: int, queries: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bank"
        start = time.perf_counter()
        write_bank(folder, count, dim)
        print(f"bank: {count:,} x {dim} float32 unit vectors ({count * dim * 4 / 2**20:,.0f} MiB) written in "
              f"{time.perf_counter() - start:.1f} s; {queries} queries, top-10, {torch.get_num_threads()} threads")
        results = {}
        for backend in ("faiss", "torch"):
            out = Path(tmp) / f"{backend}.npy"
            line = subprocess.run([sys.executable, __file__, "--search-worker", str(folder), backend, str(queries),
                                   str(out)], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[backend] = json.loads(line)
            r = results[backend]
            r["search_mib"] = r["peak_mib"] - r["imports_mib"]
            print(f"  {backend:5s}: {r['queries_per_s']:9.1f} queries/s  peak memory {r['peak_mib']:7.0f} MiB, of which "
                  f"{r['search_mib']:6.0f} MiB above the imports  (first query, with loading: {r['first_query_s']:.2f} s)")
        same = np.array_equal(np.load(Path(tmp) / "faiss.npy"), np.load(Path(tmp) / "torch.npy"))
        print(f"  torch / faiss: {results['torch']['queries_per_s'] / results['faiss']['queries_per_s']:.2f}x the "
              f"queries/s with {results['torch']['search_mib'] / results['faiss']['search_mib']:.2f}x the memory above "
              f"the imports; "
              f"same top-10 rows: {same}")


def _rate(fn, items: int) -> float:
    start = time.perf_counter()
    fn()
    return items / (time.perf_counter() - start)


def bench_building(arch: str, n_captions: int, n_images: int, rounds: int, batch_size: int) -> None:
    torch.manual_seed(0)
    encoder = ImageEncoder(arch=arch, batch_size=batch_size)
    loaded, model = encoder.loaded, encoder.loaded.model
    captions = read_captions(DATA_ROOT / "roco" / "validation" / "radiology" / "captions.txt")[:n_captions]
    images = [p.image for p in read_pairs(DATA_ROOT / "roco_images" / "index.tsv")][:n_images]
    texts = [c.text for c in captions]

    @torch.no_grad()
    def bare_text() -> None:
        for i in range(0, len(texts), 256):
            model.encode_text(loaded.tokenizer(texts[i:i + 256]))

    @torch.no_grad()
    def bare_images() -> None:
        loader = DataLoader(ImageDataset(images, encoder.transform), batch_size=batch_size, collate_fn=collate)
        for batch in loader:
            model.encode_image(batch.images)

    with tempfile.TemporaryDirectory() as tmp:
        rates: dict[str, list[float]] = {"bare text": [], "index captions": [], "bare images": [], "index images": []}
        for r in range(rounds):
            rates["bare text"].append(_rate(bare_text, len(texts)))
            rates["index captions"].append(_rate(lambda: build_caption_index(
                loaded, captions, Path(tmp) / f"c{r}", batch_size=256), len(texts)))
            rates["bare images"].append(_rate(bare_images, len(images)))
            rates["index images"].append(_rate(lambda: build_image_index(encoder, images, Path(tmp) / f"i{r}"),
                                               len(images)))
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"building ({arch}, random weights, {rounds} alternating rounds, medians):")
    for what in ("text", "images"):
        bare, built = median[f"bare {what}"], median[f"index {'captions' if what == 'text' else 'images'}"]
        print(f"  {what:6s}: bare forward {bare:7.1f}/s  index build {built:7.1f}/s  ratio {built / bare:.2f} "
              f"(target >= 0.9)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=int, default=200_000, help="bank vectors (the issue's figure: 1000000)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--arch", default="ViT-B/32", help="model for the building benchmark (random weights)")
    parser.add_argument("--captions", type=int, default=1024)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32, help="image batch size")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-building", action="store_true")
    parser.add_argument("--search-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.search_worker:
        folder, backend, queries, out = args.search_worker
        search_worker(folder, backend, int(queries), out)
        return 0
    bench_search(args.bank, args.dim, args.queries)
    if not args.skip_building:
        bench_building(args.arch, args.captions, args.images, args.rounds, args.batch_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
