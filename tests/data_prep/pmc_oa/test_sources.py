"""Finding articles, the PMC file list, licence choices and graphic-to-file resolution."""
from __future__ import annotations

from pathlib import Path

import pytest
from pmc_testutils import image_bytes, jats, write_package

from data_prep.pmc_oa.sources import (
    find_sources,
    parse_licences,
    plan_sources,
    read_article_files,
    read_file_list,
    resolve_image,
)
from infra.errors import UserError

TXT_LIST = (
    "2025-09-10 12:00:00\n"
    "oa_package/aa/bb/PMC12419688.tar.gz\tPlant Cell. 2025 Sep; 37(9):koaf197\tPMC12419688\tPMID:40795775\tCC BY\n"
    "oa_package/cc/dd/PMC11518443.tar.gz\tEur J Public Health. 2024; 34(Suppl 3)\tPMC11518443\t\tCC BY-NC\n"
)
CSV_LIST = (
    "File,Article Citation,Accession ID,Last Updated (YYYY-MM-DD HH:MM:SS),PMID,License\n"
    'oa_package/aa/bb/PMC12419688.tar.gz,"Plant Cell. 2025 Sep; 37(9):koaf197",PMC12419688,2025-09-09 19:16:59,40795775,CC BY\n'
)


def test_file_list_txt_and_csv(tmp_path: Path) -> None:
    (tmp_path / "oa_file_list.txt").write_text(TXT_LIST)
    (tmp_path / "oa_file_list.csv").write_text(CSV_LIST)
    txt = read_file_list(tmp_path / "oa_file_list.txt")
    csv = read_file_list(tmp_path / "oa_file_list.csv")
    assert [(e.accession, e.pmid, e.licence) for e in txt] == [("PMC12419688", "40795775", "CC BY"),
                                                               ("PMC11518443", "", "CC BY-NC")]
    assert csv[0] == txt[0]
    (tmp_path / "bad.txt").write_text("2025-01-01\nonly-one-field\n")
    with pytest.raises(UserError, match=r"bad.txt:2: expected tab-separated"):
        read_file_list(tmp_path / "bad.txt")
    (tmp_path / "bad.csv").write_text("File,Accession ID\nx,y\n")
    with pytest.raises(UserError, match="lacks column"):
        read_file_list(tmp_path / "bad.csv")


def test_licence_choices() -> None:
    assert parse_licences(None, False) is None
    assert parse_licences("CC BY, cc0", False) == {"CC BY", "CC0"}
    assert parse_licences(None, True) == {"CC0", "CC BY", "CC BY-SA", "CC BY-ND"}
    with pytest.raises(UserError, match="unknown licence 'GPL'"):
        parse_licences("GPL", False)


def test_sources_both_layouts_and_file_list_match(pmc_oa: Path, tmp_path: Path) -> None:
    sources = find_sources(pmc_oa)
    assert len(sources) == 13 and sum(s.is_package for s in sources) == 5
    (tmp_path / "list.txt").write_text(TXT_LIST)
    planned = {s.key: s for s in plan_sources(pmc_oa / "packages", tmp_path / "list.txt")}
    assert planned["PMC12419688"].entry.citation.startswith("Plant Cell") and planned["pmc2924383"].entry is None
    old = read_article_files(planned["pmc2924383"])
    assert old.folder == "PLoS_One_2010_Aug_19_5(8)_e12255" and "pone.0012255.g001.jpg" in old.images
    assert read_article_files(planned["PMC12419688"]).folder == "PMC12419688"
    with pytest.raises(UserError, match="no OA packages"):
        find_sources(tmp_path)


def test_truncated_package_is_one_clear_error(pmc_oa: Path, tmp_path: Path) -> None:
    data = (pmc_oa / "packages" / "PMC12419688.tar.gz").read_bytes()
    (tmp_path / "PMC1.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="PMC1.tar.gz: truncated or corrupt package"):
        read_article_files(find_sources(tmp_path / "PMC1.tar.gz")[0])
    (tmp_path / "PMC3.tar.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="truncated or corrupt"):
        read_article_files(find_sources(tmp_path / "PMC3.tar.gz")[0])


def test_graphic_resolution() -> None:
    files = dict.fromkeys(["f1.gif", "f1.jpg", "F2.TIF", "f2.gif", "f3.gif", "f4.png", "f4.jpg"], b"")
    assert resolve_image("f1", files) == "f1.jpg"  # never the thumbnail when the full image exists
    assert resolve_image("f2", files) == "F2.TIF"  # extension-less href, uppercase extension
    assert resolve_image("f3", files) == "f3.gif"  # only the gif exists
    assert resolve_image("f4.png", files) == "f4.png"  # the named file when it exists
    assert resolve_image("f4.tif", files) == "f4.jpg"  # a stated extension that is not there
    assert resolve_image("f5", files) is None


def test_package_built_from_parts_is_read(tmp_path: Path) -> None:
    path = write_package(tmp_path / "PMC9.tar.gz", "PMC9", jats(""), {"a.jpg": image_bytes(), "a.pdf": b"%PDF"})
    files = read_article_files(find_sources(path)[0])
    assert set(files.images) == {"a.jpg"} and files.nxml_name == "article.nxml"
