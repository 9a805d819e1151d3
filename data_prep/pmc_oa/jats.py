"""JATS (``.nxml``) articles read with lxml: identifiers, journal, year, licence and every figure.

A figure is every ``<fig>`` of the document (also inside ``<fig-group>``, ``<floats-group>`` and
appendices). Its caption is the text of the title and every paragraph, nested inline markup included
(``<italic>C. elegans</italic>`` keeps its words), with whitespace collapsed. A figure without a caption
has an empty one: it never borrows another figure's. Graphics outside figures (inline and display
formulas, table images) are counted, not returned.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from infra.errors import UserError

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"

# licence URL path or wording -> short name; the first match wins, so the longer variants come first
LICENCE_URLS = (
    ("publicdomain/zero", "CC0"),
    ("publicdomain/mark", "public domain"),
    ("licenses/by-nc-nd", "CC BY-NC-ND"),
    ("licenses/by-nc-sa", "CC BY-NC-SA"),
    ("licenses/by-nc", "CC BY-NC"),
    ("licenses/by-nd", "CC BY-ND"),
    ("licenses/by-sa", "CC BY-SA"),
    ("licenses/by", "CC BY"),
)
LICENCE_WORDS = (
    (r"\bcc0\b|public domain dedication", "CC0"),
    (r"attribution[- ]non-?commercial[- ]no-?deriv|\bcc[- ]by[- ]nc[- ]nd\b", "CC BY-NC-ND"),
    (r"attribution[- ]non-?commercial[- ]share-?alike|\bcc[- ]by[- ]nc[- ]sa\b", "CC BY-NC-SA"),
    (r"attribution[- ]non-?commercial|\bcc[- ]by[- ]nc\b", "CC BY-NC"),
    (r"attribution[- ]no-?deriv|\bcc[- ]by[- ]nd\b", "CC BY-ND"),
    (r"attribution[- ]share-?alike|\bcc[- ]by[- ]sa\b", "CC BY-SA"),
    (r"creative commons attribution|\bcc[- ]by\b", "CC BY"),
    (r"public domain", "public domain"),
)


@dataclass
class Figure:
    """One ``<fig>``: its id, label, caption text and the ``xlink:href`` of its first graphic (None: no graphic)."""

    fig_id: str
    label: str
    caption: str
    href: str | None


@dataclass
class Article:
    """What the pipeline needs from one JATS document."""

    pmid: str
    pmcid: str  # digits only, as in the BiomedCLIP pipeline's "pmc" field
    doi: str
    journal: str
    year: str
    licence: str  # short name ("CC BY", "CC BY-NC", "CC0", ...) or "" when none is stated
    figures: list[Figure] = field(default_factory=list)
    other_graphics: int = 0  # graphics outside figures: formulas, table images


def normalise_space(text: str) -> str:
    return " ".join(text.split())


def _text(element: etree._Element | None) -> str:
    return "" if element is None else normalise_space("".join(element.itertext()))


def licence_name(text: str) -> str:
    """A licence URL, a file-list licence ("CC BY", "CC BY-NC") or licence wording -> its short name ("" if none)."""
    lowered = text.lower()
    for needle, name in LICENCE_URLS:
        if needle in lowered:
            return name
    for pattern, name in LICENCE_WORDS:
        if re.search(pattern, lowered):
            return name
    return ""


def _licence(meta: etree._Element) -> str:
    """From ``<license>`` (its link, its type, its text), else from ``<copyright-statement>``."""
    for licence in meta.iter("license"):
        for candidate in (licence.get(XLINK_HREF, ""), _text(licence), licence.get("license-type", "")):
            if name := licence_name(candidate):
                return name
        for ref in licence.iter("{*}license_ref"):  # <ali:license_ref>
            if name := licence_name(_text(ref)):
                return name
    for statement in meta.iter("copyright-statement"):
        if name := licence_name(_text(statement)):
            return name
    return ""


PUB_DATE_ORDER = ("epub", "ppub", "pub", "collection", "epub-ppub")  # which <pub-date> gives the year, best first


def _year(meta: etree._Element) -> str:
    def rank(date: etree._Element) -> int:
        kind = date.get("pub-type") or date.get("date-type") or "pub"
        return PUB_DATE_ORDER.index(kind) if kind in PUB_DATE_ORDER else len(PUB_DATE_ORDER)

    dated = [d for d in meta.findall("pub-date") if d.find("year") is not None]
    return _text(min(dated, key=rank).find("year")) if dated else ""


def _parse_tree(data: bytes, name: str) -> etree._Element:
    """The document root; bytes that are not valid in the declared encoding are read as UTF-8 with replacement."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        if "encod" not in str(error).lower() and "utf-8" not in str(error).lower():
            raise UserError(f"{name}: malformed XML: {error}") from None
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", data.decode("utf-8", errors="replace"))
    try:
        return etree.fromstring(text, parser)
    except etree.XMLSyntaxError as error:
        raise UserError(f"{name}: malformed XML: {error}") from None


def parse_article(data: bytes, name: str = "article") -> Article:
    """Parse one ``.nxml`` document; malformed XML is a ``UserError`` naming ``name``."""
    root = _parse_tree(data, name)
    meta = root.find("front/article-meta")
    if meta is None:
        raise UserError(f"{name}: no <front>/<article-meta>: not a JATS article")
    ids = {el.get("pub-id-type"): _text(el) for el in meta.findall("article-id")}
    pmcid = ids.get("pmc") or ids.get("pmcid") or ids.get("pmc-uid") or ""
    journal = _text(root.find("front/journal-meta//journal-title"))
    if not journal:
        journal = _text(root.find("front/journal-meta/journal-id"))
    figures, fig_graphics = [], set()
    for fig in root.iter("fig"):
        graphics = list(fig.iter("graphic"))
        fig_graphics.update(graphics)
        caption = fig.find("caption")
        parts = [] if caption is None else [_text(child) for child in caption if isinstance(child.tag, str)]
        if caption is not None and not parts:
            parts = [_text(caption)]
        figures.append(Figure(
            fig_id=fig.get("id", ""),
            label=_text(fig.find("label")),
            caption=" ".join(p for p in parts if p),
            href=(graphics[0].get(XLINK_HREF) or graphics[0].get("href")) if graphics else None,
        ))
    others = sum(1 for g in root.iter("graphic", "inline-graphic") if g not in fig_graphics)
    return Article(
        pmid=ids.get("pmid", ""),
        pmcid=re.sub(r"^PMC", "", pmcid, flags=re.IGNORECASE),
        doi=ids.get("doi", ""),
        journal=journal,
        year=_year(meta),
        licence=_licence(meta),
        figures=figures,
        other_graphics=others,
    )
