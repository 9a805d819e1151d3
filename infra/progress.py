"""Progress bars that show on a terminal and stay out of logs: one behaviour for every command."""
from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], enabled: bool = True, **kwargs: Any) -> tqdm:
    """``tqdm(items)`` when ``enabled`` and stderr is a terminal; otherwise a silent pass-through.

    Off a terminal (a log file, a pipe, a batch job) the carriage-return updates would only fill the log.
    """
    return tqdm(items, disable=not (enabled and sys.stderr.isatty()), **kwargs)
