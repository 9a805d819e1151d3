"""JATS parsing on the real articles and on documents built from real caption text."""
from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from pmc_testutils import jats

from data_prep.pmc_oa.jats import licence_name, parse_article
from infra.errors import UserError

REAL_FIGURES = {"pmc2924383": 4, "pmc2958805": 4, "pmc3532326": 2, "PMC11518443": 0, "PMC12419688": 1}


def _package_nxml(path: Path) -> bytes:
    with tarfile.open(path) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith(".nxml"))
        return archive.extractfile(member).read()


def test_real_packages_figures_identifiers_and_licences(pmc_oa: Path) -> None:
    articles = {p.name.split(".")[0]: parse_article(_package_nxml(p), p.name)
                for p in sorted((pmc_oa / "packages").glob("*.tar.gz"))}
    assert {k: len(a.figures) for k, a in articles.items()} == REAL_FIGURES
    assert articles["pmc2958805"].other_graphics == 288  # inline and display formula images
    assert articles["PMC11518443"].pmid == "" and articles["PMC11518443"].pmcid == "11518443"
    assert articles["pmc2924383"].licence == "CC BY"  # only stated in <copyright-statement>
    assert articles["PMC11518443"].licence == "CC BY-NC"
    plant = articles["PMC12419688"]
    assert (plant.pmid, plant.doi, plant.journal, plant.year) == ("40795775", "10.1093/plcell/koaf197", "The Plant Cell", "2025")
    figure = plant.figures[0]
    assert (figure.fig_id, figure.label, figure.href) == ("koaf197-F1", "Figure.", "koaf197f1")
    assert "genes including SlGRAS47, SlBHLH48, and SlMYB28, activating" in figure.caption  # italic kept


def test_nested_caption_markup_keeps_its_text(pmc_oa: Path) -> None:
    article = parse_article(_package_nxml(pmc_oa / "packages" / "pmc3532326.tar.gz"))
    caption = article.figures[0].caption
    assert caption.startswith("Distribution of SNVs, insertions, and deletions along the C. elegans genome for Hawaiian")
    assert "  " not in caption and "\n" not in caption


def test_real_nxml_files(pmc_oa: Path) -> None:
    articles = {p.stem: parse_article(p.read_bytes(), p.name) for p in sorted((pmc_oa / "nxml").glob("*.nxml"))}
    assert sum(len(a.figures) for a in articles.values()) == 17
    assert articles["6605965a"].licence == ""  # "Copyright (c) 2010 Cancer Research UK": no open licence
    assert articles["pone.0000217"].licence == "CC BY"  # wording in <copyright-statement>
    assert articles["ehp-116-1694"].licence == "public domain"
    assert articles["mds526"].licence == "CC BY-NC"
    ehp = articles["ehp-116-1694"].figures[0]
    assert ehp.caption == ("Exposure to PBDE-47 depressed circulating concentrations of total T4 in males and females (A), "
                           "but had no effect on total T3 in males (B). *p < 0.05 compared with control.")
    assert articles["1471-2180-11-174"].pmid == "21810267"  # the article's, not a reference's


def test_fig_group_alternatives_appendix_and_caption_less_figure() -> None:
    body = (
        '<fig-group id="G1"><caption><p>Group caption.</p></caption>'
        '<fig id="F1a"><label>Figure 1a</label><caption><title>Segmented rings</title><p>The six <italic>C. '
        'elegans</italic>\n   chromosomes.</p></caption><alternatives><graphic xlink:href="f1a.tif"/>'
        '<graphic xlink:href="f1a-web"/></alternatives></fig>'
        '<fig id="F1b"><label>Figure 1b</label><graphic xlink:href="f1b"/></fig></fig-group>'
        '<p>Inline <inline-formula><inline-graphic xlink:href="e001.jpg"/></inline-formula></p>'
        '<disp-formula><graphic xlink:href="e002"/></disp-formula>'
    )
    back = '<back><app-group><app><fig id="A1"><caption><p>Appendix figure.</p></caption></fig></app></app-group></back>'
    xml = jats(body).replace("</body>", "</body>" + back)
    article = parse_article(xml.encode())
    assert [(f.fig_id, f.href) for f in article.figures] == [("F1a", "f1a.tif"), ("F1b", "f1b"), ("A1", None)]
    assert article.figures[0].caption == "Segmented rings The six C. elegans chromosomes."
    assert article.figures[1].caption == ""  # never the previous figure's caption
    assert article.other_graphics == 2


def test_malformed_xml_and_foreign_bytes() -> None:
    with pytest.raises(UserError, match="broken.nxml: malformed XML"):
        parse_article(b"<article><front>", "broken.nxml")
    latin = jats('<fig id="F1"><caption><p>R\xe9sum\xe9 of the results.</p></caption></fig>').encode("latin-1")
    article = parse_article(latin, "latin.nxml")  # declared UTF-8, bytes are not: read with replacement
    assert article.figures[0].caption == "R\ufffdsum\ufffd of the results."
    with pytest.raises(UserError, match="not a JATS article"):
        parse_article(b"<html/>", "page.nxml")


@pytest.mark.parametrize("text, name", [
    ("http://creativecommons.org/licenses/by/4.0/", "CC BY"),
    ("https://creativecommons.org/licenses/by-nc-nd/4.0/", "CC BY-NC-ND"),
    ("CC BY-SA", "CC BY-SA"),
    ("CC0", "CC0"),
    ("This is an open-access article distributed under the terms of the Creative Commons Attribution License", "CC BY"),
    ("NO-CC CODE", ""),
])
def test_licence_names(text: str, name: str) -> None:
    assert licence_name(text) == name
