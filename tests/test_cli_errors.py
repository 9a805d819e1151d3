"""Both command lines report a usage mistake or bad input as one line on stderr with exit status 2."""
from __future__ import annotations

import pytest

from medvqa.cli import main as medvqa_main
from pubmedclip.cli import main as pubmedclip_main


@pytest.mark.parametrize(("main", "argv", "message"), [
    (medvqa_main, ["evaluate", "--run", "runs/x", "--protocol", "published"],
     "unknown protocol 'published': choose from sound, mevf-legacy, pubmedclip-legacy"),
    (medvqa_main, ["train", "--out", "runs/x"], "medvqa train: the following arguments are required: --config"),
    (medvqa_main, ["frobnicate"], "unknown command 'frobnicate'"),
    (pubmedclip_main, ["encode", "--images", "x"], "pubmedclip encode: the following arguments are required: --out"),
    (pubmedclip_main, ["frobnicate"], "unknown command 'frobnicate'"),
])
def test_one_line_errors(main, argv, message, capsys) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err
    assert "usage:" not in captured.err
