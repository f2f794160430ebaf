"""Writing what a command produces into a file the user named (private)."""

from __future__ import annotations

import logging
import os
import sys
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


def write_stdout(text: str, stream: IO[str] | None = None) -> None:
    """``text`` onto ``stream`` (stdout). When its reader has gone (``evtools ... | head``),
    what is left goes nowhere and the command ends with its own exit status: a
    ``--fail-on-...`` check still exits 1."""
    stream = stream if stream is not None else sys.stdout
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        silence(stream)


def silence(stream: IO[str] | None = None) -> None:
    """What is left to print to ``stream`` (stdout) goes nowhere: its reader has gone."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, (stream or sys.stdout).fileno())
