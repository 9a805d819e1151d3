"""Packages built from real caption text for the edge cases the real packages lack."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

from PIL import Image


def image_bytes(size: tuple[int, int] = (120, 90), fmt: str = "JPEG", color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def jats(body: str, pmid: str = "11250746", pmcid: str = "13900", licence: str = "") -> str:
    """A minimal JATS article around ``body`` (figures, formulas)."""
    ids = (f'<article-id pub-id-type="pmid">{pmid}</article-id>' if pmid else "") + \
        f'<article-id pub-id-type="pmc">{pmcid}</article-id>'
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<article xmlns:xlink="http://www.w3.org/1999/xlink">'
            f'<front><journal-meta><journal-title-group><journal-title>Test Journal</journal-title></journal-title-group>'
            f'</journal-meta><article-meta>{ids}<pub-date pub-type="epub"><year>2012</year></pub-date>'
            f'<permissions>{licence}</permissions></article-meta></front><body>{body}</body></article>')


def write_package(path: Path, folder: str, nxml: str | bytes, files: dict[str, bytes]) -> Path:
    """A PMC-style ``.tar.gz``: one folder holding the ``.nxml`` and ``files``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    members = {f"{folder}/article.nxml": nxml.encode() if isinstance(nxml, str) else nxml,
               **{f"{folder}/{name}": data for name, data in files.items()}}
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path
