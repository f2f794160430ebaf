"""Writing what a command produces into a file the user named (private)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import UsageError

log = logging.getLogger("evtools")


@contextmanager
def writing(out: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """``out`` opened for text (its folder created); any failure to write it, at open,
    write or close, is a one-line :class:`~evtools.errors.UsageError` that names it."""
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as fh:
            yield fh
    except OSError as e:
        raise UsageError(f"cannot write {os.fspath(out)}: {e.strerror or e}") from e
    log.info("wrote %s", os.fspath(out))
