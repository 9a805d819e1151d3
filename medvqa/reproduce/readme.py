"""Copy a report's files into the blocks of a Markdown file that quote them."""
from __future__ import annotations

import re
from pathlib import Path

from infra.errors import UserError
from infra.files import write_text_atomic

README_OPENER = re.compile(r"<!-- reproduce: (\S+) -->\n")
README_BLOCK = re.compile(rf"({README_OPENER.pattern})(?:(?!<!-- reproduce: ).)*?(?=<!-- /reproduce -->)", re.S)


def update_readme(readme: Path, out: Path) -> int:
    """Refresh every block of ``readme`` that quotes a file of ``out``; returns how many.

    A block is ``<!-- reproduce: experiments/results/cpu/table.md -->``, the file's text between
    blank lines, then ``<!-- /reproduce -->``; the path is relative to the README's folder.
    """
    if not readme.is_file():
        raise UserError(f"--readme {readme} is not a file")
    text, updated = readme.read_text(), 0
    closed = {match.start() for match in README_BLOCK.finditer(text)}
    for opener in README_OPENER.finditer(text):
        if opener.start() not in closed:
            raise UserError(f"{readme} line {text.count(chr(10), 0, opener.start()) + 1}: the block quoting "
                            f"{opener[1]} has no '<!-- /reproduce -->' before the next block or the end")

    def quote(match: re.Match) -> str:
        nonlocal updated
        path = (readme.parent / match[2]).resolve()
        if path.parent != out.resolve():
            return match[0]
        if not path.is_file():
            raise UserError(f"{readme} quotes {match[2]}, which the report did not write")
        updated += 1
        return f"{match[1]}\n{path.read_text()}\n"  # blank lines: Markdown sees a table, not HTML

    text = README_BLOCK.sub(quote, text)
    if not updated:
        raise UserError(f"{readme} has no block quoting a file of {out}: add '<!-- reproduce: "
                        f"{out}/table.md -->' and '<!-- /reproduce -->' on lines of their own")
    write_text_atomic(readme, text)
    return updated
