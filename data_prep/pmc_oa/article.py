"""One article in, its candidate figure-caption pairs out: the work each pipeline worker does.

Everything here depends only on the article's own files and the options, so any worker (a local
process, a dask worker on another machine) produces the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from data_prep.pmc_oa.download import DownloadError, download
from data_prep.pmc_oa.jats import parse_article
from data_prep.pmc_oa.sources import ArticleSource, read_article_files, resolve_image
from infra.errors import UserError


@dataclass(frozen=True)
class ExtractOptions:
    """Settings that change what is extracted (a resumed run must use the same ones)."""

    min_image_size: int = 64  # pixels on the shorter side
    min_caption_chars: int = 10
    licences: tuple[str, ...] | None = None  # allowed licence names; None keeps every licence
    jpeg_quality: int = 95  # for images converted to JPEG (TIFF, PNG, GIF, CMYK JPEG)

    def fingerprint(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DownloadOptions:
    retries: int = 3
    timeout: float = 60.0
    wait: float = 1.0  # seconds before the first retry; doubled each time


@dataclass
class Candidate:
    """A figure that passed the per-article filters; the cross-article duplicate filter comes later."""

    fig_id: str
    fig_label: str
    caption: str
    graphic_ref: str  # <folder>/<file> of the image used
    pair_id: str
    jpeg: bytes
    width: int
    height: int
    sha1: str  # of the JPEG bytes written

    @property
    def duplicate_key(self) -> str:
        """Same image content with the same caption."""
        return hashlib.blake2b(self.sha1.encode() + self.caption.encode(), digest_size=16).hexdigest()


@dataclass
class ArticleResult:
    key: str
    source: str
    meta: dict = field(default_factory=dict)  # pmid, pmc, location, doi, journal, year, license, citation
    candidates: list[Candidate] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)  # figure-level reason -> count
    other_graphics: int = 0
    error: str | None = None  # the article could not be read
    retry: bool = False  # the error may go away (a download that failed after its retries): never stored
    excluded: str | None = None  # "licence" when the article's licence is not allowed


def to_jpeg(data: bytes, min_size: int, quality: int) -> tuple[bytes, int, int]:
    """The image as JPEG bytes (unchanged when it already is an RGB or gray JPEG) and its size.

    Raises ``ValueError("corrupt_image")`` or ``ValueError("small_image")``. PIL raises many types on
    broken files (OSError, SyntaxError, struct.error, ...): all of them mean a corrupt image here.
    """
    try:
        image = Image.open(io.BytesIO(data))
    except Exception:
        raise ValueError("corrupt_image") from None
    width, height = image.size
    if min(width, height) < min_size:
        raise ValueError("small_image")
    try:
        image.load()  # decodes fully: a truncated file fails here
        if image.format == "JPEG" and image.mode in ("RGB", "L"):
            return data, width, height
        if image.mode in ("RGBA", "LA", "P", "PA"):
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, (255, 255, 255))
            image.paste(rgba, mask=rgba.getchannel("A"))
        elif image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        return out.getvalue(), width, height
    except Exception:
        raise ValueError("corrupt_image") from None


def _pair_ids(prefix: str, fig_ids: list[str]) -> list[str]:
    """``<prefix>_<fig id>``, unique within the article (a missing or repeated id gets its position)."""
    ids, seen = [], set()
    for index, fig_id in enumerate(fig_ids, 1):
        pair_id = f"{prefix}_{fig_id or f'fig{index}'}"
        if pair_id in seen:
            pair_id = f"{pair_id}_{index}"
        seen.add(pair_id)
        ids.append(pair_id)
    return ids


def process_article(source: ArticleSource, options: ExtractOptions, download_options: DownloadOptions) -> ArticleResult:
    """Read, parse and filter one article; problems with the article itself end up in ``result.error``,
    so that one bad file among millions is logged, not fatal."""
    try:
        return _process(source, options, download_options)
    except Exception as error:  # anything else an odd file triggers in lxml, PIL or tarfile
        return ArticleResult(source.key, source.path, error=f"{type(error).__name__}: {error}")


def _process(source: ArticleSource, options: ExtractOptions, download_options: DownloadOptions) -> ArticleResult:
    result = ArticleResult(source.key, source.path)
    entry = source.entry
    if options.licences is not None and entry and entry.licence and entry.licence not in options.licences:
        result.excluded = "licence"  # known from the file list: not fetched, not read
        return result
    try:
        if source.url and not Path(source.path).is_file():
            download(source.url, source.path, download_options.retries, download_options.timeout, download_options.wait)
    except DownloadError as error:
        result.error, result.retry = str(error), not error.permanent
        return result
    try:
        files = read_article_files(source)
        article = parse_article(files.nxml, f"{source.path}:{files.nxml_name}" if source.is_package else source.path)
    except UserError as error:
        result.error = str(error)
        return result
    licence = (entry.licence if entry and entry.licence else "") or article.licence
    prefix = f"PMC{article.pmcid}" if article.pmcid else re.sub(r"[^A-Za-z0-9_-]", "-", source.key)
    result.meta = {
        "pmid": article.pmid or (entry.pmid if entry else ""),
        "pmc": article.pmcid,
        "location": files.folder,
        "doi": article.doi,
        "journal": article.journal,
        "year": article.year,
        "license": licence,
        "citation": entry.citation if entry else "",
    }
    result.other_graphics = article.other_graphics
    if options.licences is not None and licence not in options.licences:
        result.excluded = "licence"
        result.dropped["licence"] += len(article.figures)
        return result
    for figure, pair_id in zip(article.figures, _pair_ids(prefix, [f.fig_id for f in article.figures])):
        name = resolve_image(figure.href, files.images) if figure.href else None
        if name is None:
            result.dropped["missing_image"] += 1
            continue
        if len(figure.caption) < options.min_caption_chars:
            result.dropped["short_caption"] += 1
            continue
        try:
            jpeg, width, height = to_jpeg(files.read(name), options.min_image_size, options.jpeg_quality)
        except ValueError as reason:
            result.dropped[str(reason)] += 1
            continue
        result.candidates.append(Candidate(
            figure.fig_id, figure.label, figure.caption, f"{files.folder}/{name}", pair_id, jpeg, width, height,
            hashlib.sha1(jpeg).hexdigest(),
        ))
    return result
