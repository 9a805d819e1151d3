"""Where articles come from: OA packages (``.tar.gz``, either layout), extracted article folders and bare
``.nxml`` files, plus the PMC file list (``oa_file_list.txt`` or its CSV form) that names each package's
licence and citation.
"""
from __future__ import annotations

import csv
import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from data_prep.pmc_oa.jats import licence_name
from infra.errors import UserError
from infra.files import read_text

PACKAGE_SUFFIXES = (".tar.gz", ".tgz")
# image files a <graphic> may point to, best first: the .gif is PMC's thumbnail, used only when nothing else exists
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif")
COMMERCIAL_LICENCES = ("CC0", "CC BY", "CC BY-SA", "CC BY-ND")  # PMC's commercial-use subset
CSV_COLUMNS = ("File", "Article Citation", "Accession ID", "PMID", "License")


@dataclass(frozen=True)
class ListEntry:
    """One row of the PMC file list."""

    file: str  # e.g. oa_package/08/e0/PMC13900.tar.gz (relative to the download base URL)
    citation: str
    accession: str  # PMC13900
    pmid: str
    licence: str  # short name (see jats.licence_name); "" when the row names none we know


@dataclass(frozen=True)
class ArticleSource:
    """One article to process: a package or an ``.nxml`` (its images, if any, beside it)."""

    key: str  # unique, path-derived name used for caches and the error log
    path: str
    entry: ListEntry | None = None  # its file-list row, when a list was given
    url: str | None = None  # where to fetch the package when it is not on disk yet

    @property
    def is_package(self) -> bool:
        return self.path.endswith(PACKAGE_SUFFIXES)


@dataclass
class ArticleFiles:
    """The ``.nxml`` text and the image files an article's graphics may refer to (name -> bytes)."""

    folder: str  # the article's folder: the package's top folder, or the .nxml's parent
    nxml_name: str
    nxml: bytes
    images: dict[str, bytes | Path]  # a package's images are read with it; a folder's when asked for

    def read(self, name: str) -> bytes:
        image = self.images[name]
        return image.read_bytes() if isinstance(image, Path) else image


def package_stem(name: str) -> str:
    name = PurePosixPath(name).name
    for suffix in PACKAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return PurePosixPath(name).stem


def read_file_list(path: str | Path) -> list[ListEntry]:
    """``oa_file_list.txt`` (a timestamp line, then tab-separated rows) or the CSV form with a header."""
    path = Path(path)
    lines = read_text(path).splitlines()
    entries = []
    if lines and lines[0].startswith("File,"):
        reader = csv.DictReader(io.StringIO("\n".join(lines)))
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: file list lacks column(s) {', '.join(missing)}")
        for number, row in enumerate(reader, 2):
            if None in row or not row["File"]:
                raise UserError(f"{path}:{number}: malformed row")
            entries.append(ListEntry(row["File"], row["Article Citation"], row["Accession ID"],
                                     re.sub(r"^PMID:", "", row["PMID"] or ""), licence_name(row["License"] or "")))
        return entries
    for number, line in enumerate(lines[1:], 2):  # the first line is the list's timestamp
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            raise UserError(f"{path}:{number}: expected tab-separated File, citation, accession, PMID, licence; "
                            f"got {line[:60]!r}")
        fields += [""] * (5 - len(fields))
        entries.append(ListEntry(fields[0], fields[1], fields[2], re.sub(r"^PMID:", "", fields[3]),
                                 licence_name(fields[4])))
    return entries


def parse_licences(text: str | None, commercial: bool) -> frozenset[str] | None:
    """The allowed licence names from ``--licences`` / ``--commercial`` (None: no licence filter)."""
    allowed = set(COMMERCIAL_LICENCES) if commercial else set()
    for item in (text or "").split(","):
        if item.strip():
            name = licence_name(item)
            if not name:
                raise UserError(f"--licences: unknown licence {item.strip()!r} (e.g. CC BY, CC BY-SA, CC BY-NC, CC0)")
            allowed.add(name)
    return frozenset(allowed) if allowed else None


def find_sources(root: str | Path) -> list[ArticleSource]:
    """Every package and ``.nxml`` under ``root`` (or ``root`` itself), sorted by path."""
    root = Path(root)
    if root.is_file():
        if not (root.name.endswith(PACKAGE_SUFFIXES) or root.suffix == ".nxml"):
            raise UserError(f"{root}: not an OA package (.tar.gz) or a .nxml file")
        return [ArticleSource(package_stem(root.name), str(root))]
    if not root.is_dir():
        raise UserError(f"source not found: {root}")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and (p.name.endswith(PACKAGE_SUFFIXES)
                                                                   or p.suffix == ".nxml"))
    sources = []
    for path in paths:
        relative = path.relative_to(root).as_posix()
        key = relative[: -len(path.name)] + package_stem(path.name)
        sources.append(ArticleSource(re.sub(r"[^A-Za-z0-9_.-]+", "_", key), str(path)))
    if not sources:
        raise UserError(f"{root}: no OA packages (.tar.gz) or .nxml files found")
    return sources


def read_article_files(source: ArticleSource) -> ArticleFiles:
    """The ``.nxml`` and candidate images of one article; a broken package is a ``UserError``."""
    path = Path(source.path)
    if not source.is_package:
        images: dict[str, bytes | Path] = {p.name: p for p in sorted(path.parent.iterdir())
                                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
        return ArticleFiles(path.parent.name, path.name, path.read_bytes(), images)
    nxml: list[tuple[str, str, bytes]] = []
    images = {}
    try:
        with tarfile.open(path, "r|gz") as archive:  # one sequential pass over the stream
            for member in archive:
                name = PurePosixPath(member.name).name
                suffix = PurePosixPath(name).suffix.lower()
                if member.isfile() and (suffix == ".nxml" or suffix in IMAGE_SUFFIXES):
                    data = archive.extractfile(member).read()
                    if suffix == ".nxml":
                        nxml.append((name, PurePosixPath(member.name).parent.as_posix(), data))
                    else:
                        images[name] = data
    except (tarfile.TarError, EOFError, OSError) as error:
        raise UserError(f"{path}: truncated or corrupt package ({error})") from None
    if not nxml:
        raise UserError(f"{path}: package holds no .nxml")
    nxml.sort()
    name, folder, data = nxml[0]
    return ArticleFiles(folder, name, data, images)


def resolve_image(href: str, images: dict[str, bytes | Path]) -> str | None:
    """The file a ``<graphic xlink:href>`` names: the exact name, else the same stem with the best extension
    (case-insensitive; the ``.gif`` thumbnail only when no full image exists)."""
    name = PurePosixPath(href).name
    if name in images and not name.lower().endswith(".gif"):
        return name
    by_lower = {n.lower(): n for n in images}
    stems = [name.lower()]
    if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES:
        stems.append(PurePosixPath(name.lower()).stem)
    for suffix in IMAGE_SUFFIXES:
        for stem in stems:
            if stem + suffix in by_lower:
                return by_lower[stem + suffix]
    return name if name in images else None


def plan_sources(root: str | Path, file_list: str | Path | None = None, base_url: str | None = None) -> list[ArticleSource]:
    """The articles of a run. With ``base_url`` every file-list package is fetched into ``root``;
    otherwise the articles are those under ``root``, each matched to its file-list row by name."""
    entries = read_file_list(file_list) if file_list else []
    if base_url:
        if not entries:
            raise UserError("--download needs --file-list (the packages to fetch)")
        return [ArticleSource(re.sub(r"[^A-Za-z0-9_.-]+", "_", package_stem(e.file)),
                              str(Path(root) / PurePosixPath(e.file).name), e, f"{base_url.rstrip('/')}/{e.file}")
                for e in entries]
    sources = find_sources(root)
    if not entries:
        return sources
    by_name = {}
    for entry in entries:
        by_name[package_stem(entry.file).upper()] = entry
        by_name.setdefault(entry.accession.upper(), entry)
    return [ArticleSource(s.key, s.path, by_name.get(package_stem(s.path).upper())) for s in sources]
