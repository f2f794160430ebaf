"""Running the real consumers and comparing their output with a dialect's, line by line.

``Consumer.run`` feeds every document to one process: one document per line, lines split
on ``\\n`` bytes only (a final ``\\n`` does not start another document; ``\\r`` stays in
its line, where JSON reads it as whitespace), one output line per document: the
consumer's output, or ``ERR<TAB>`` and its error text. ``model_lines`` writes the same for
a dialect, as ``evtools dialect roundtrip`` does.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from evtools.dialects import Dialect
from evtools.errors import ConsumerRejected

__all__ = ["Consumer", "assert_identical", "model_lines"]


@dataclass(frozen=True)
class Consumer:
    """A real consumer program and the version of its runtime."""

    name: str
    command: tuple[str, ...]
    version: tuple[int, int]  # (major, minor): Go 1.19 -> (1, 19), Node v20.20.2 -> (20, 20)

    def run(self, docs: Sequence[bytes]) -> list[bytes]:
        """One output line per document, from a single run of the program."""
        assert docs and not any(b"\n" in d for d in docs), "documents must be single lines"
        proc = subprocess.run(
            self.command, input=b"\n".join(docs) + b"\n", capture_output=True, timeout=600
        )
        if proc.returncode != 0:
            pytest.fail(f"{self.name} consumer failed ({proc.returncode}): {proc.stderr[-2000:]!r}")
        lines = proc.stdout.split(b"\n")
        assert lines[-1] == b"", "output must end with a newline"
        lines.pop()
        assert len(lines) == len(docs), f"{len(docs)} documents in, {len(lines)} lines out"
        return lines


def model_lines(dialect: Dialect, docs: Sequence[bytes]) -> list[bytes]:
    """What ``evtools dialect roundtrip`` prints for each document: the round trip, or
    ``ERR<TAB>reason`` for a rejected one."""
    out = []
    for doc in docs:
        try:
            out.append(dialect.roundtrip(doc))
        except ConsumerRejected as e:
            out.append(b"ERR\t" + e.reason.encode("utf-8"))
    return out


def assert_identical(
    docs: Sequence[bytes], real: Sequence[bytes], model: Sequence[bytes], what: str
) -> None:
    """All lines equal, or a failure that shows the first differing documents."""
    assert len(real) == len(model) == len(docs)
    differing = [i for i, (a, b) in enumerate(zip(real, model, strict=True)) if a != b]
    if not differing:
        return
    same = 100 * (len(docs) - len(differing)) / len(docs)
    shown = "\n".join(
        f"  document {i}: {docs[i][:300]!r}\n    real:  {real[i][:300]!r}\n"
        f"    model: {model[i][:300]!r}"
        for i in differing[:5]
    )
    pytest.fail(
        f"{what}: {len(differing)} of {len(docs)} lines differ ({same:.3f}% identical); "
        f"first ones:\n{shown}",
        pytrace=False,
    )
