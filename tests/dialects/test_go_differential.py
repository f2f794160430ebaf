"""The go dialect against real Go: every output line byte-identical (issue 3).

All documents go through ``consumers/go_roundtrip`` in one process and through
``GoDialect(version=<the installed Go>)``; successes and rejections (``ERR<TAB>`` and
``err.Error()``) must match byte for byte. The documents: the hand-written corpus, every
byte in every position the scanner distinguishes, nesting around Go's 10000 limit, and
20,000 seeded random documents (``jsongen``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from evtools.dialects.go import GoDialect

from .differential import Consumer, assert_identical, model_lines
from .jsongen import (
    byte_level_tricky,
    deep_documents,
    documents,
    long_numbers,
    tricky_documents,
)

# The real-world files of issue 3 (twitter.json has tweet ids above 2**53).
CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"  # copied from shared/corpus
SEED = 20240501
COUNT = 20_000
DEPTHS = [1, 2, 999, 1000, 1001, 9999, 10000, 10001, 10002, 12000]


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[bytes]]:
    return {
        "tricky": tricky_documents(),
        "bytes": byte_level_tricky(),
        "deep": deep_documents(DEPTHS),
        f"random (seed={SEED})": documents(SEED, COUNT),
    }


@pytest.fixture(scope="module")
def outputs(
    go_consumer: Consumer, corpus: dict[str, list[bytes]]
) -> dict[str, tuple[list[bytes], list[bytes]]]:
    """(real lines, model lines) per part of the corpus, from ONE run of the Go program."""
    major, minor = go_consumer.version
    if (major, minor) < (1, 19):
        pytest.skip(f"Go {major}.{minor} found; the go dialect models Go 1.19 and later")
    dialect = GoDialect(version=f"{major}.{minor}")
    everything = [doc for docs in corpus.values() for doc in docs]
    real = go_consumer.run(everything)
    result, start = {}, 0
    for name, docs in corpus.items():
        result[name] = (real[start : start + len(docs)], model_lines(dialect, docs))
        start += len(docs)
    return result


@pytest.mark.parametrize("part", ["tricky", "bytes", "deep", f"random (seed={SEED})"])
def test_go_dialect_matches_real_go(
    part: str, corpus: dict[str, list[bytes]], outputs: dict[str, tuple[list[bytes], list[bytes]]]
) -> None:
    real, model = outputs[part]
    assert_identical(corpus[part], real, model, f"go, {part}")


def test_the_corpus_exercises_both_verdicts(
    outputs: dict[str, tuple[list[bytes], list[bytes]]],
) -> None:
    real = [line for lines, _ in outputs.values() for line in lines]
    rejected = [line for line in real if line.startswith(b"ERR\t")]
    assert len(real) > COUNT
    assert 0.1 < len(rejected) / len(real) < 0.5
    reasons = b"\n".join(rejected)
    for reason in [
        b"unexpected end of JSON input",
        b"looking for beginning of value",
        b"exceeded max depth",
        b"json: cannot unmarshal number",
        b"in string escape code",
        b"in \\u hexadecimal character escape",
        b"after top-level value",
        b"in literal null (expecting 'u')",
    ]:
        assert reason in reasons
    accepted = b"\n".join(line for line in real if not line.startswith(b"ERR\t"))
    for written in [b"\\u003c", b"\\u2028", "\ufffd".encode(), b"-0", b"e-7", b"e+21"]:
        assert written in accepted
    assert b"\\u0008" in accepted or b"\\b" in accepted  # \b is short from Go 1.22


def test_real_world_files(go_consumer: Consumer) -> None:
    files = sorted(CORPUS.glob("*.json"))
    assert len(files) == 3, f"twitter, citm_catalog and canada expected in {CORPUS}"
    # One line each: a raw newline can only be whitespace between tokens in valid JSON.
    docs = [f.read_bytes().replace(b"\n", b" ") for f in files]
    real = go_consumer.run(docs)
    assert not any(line.startswith(b"ERR") for line in real)
    dialect = GoDialect(version="{}.{}".format(*go_consumer.version))
    assert_identical(docs, real, model_lines(dialect, docs), "go, real-world files")


def test_long_numbers_are_read_as_strconv_reads_them(go_consumer: Consumer) -> None:
    """Past 800 characters Go's ParseFloat is not correctly rounded (its slow path puts
    the decimal point after the 800 digits it keeps; exponents stop at 10000): the
    dialect gives Go's float64, not the nearest one."""
    docs = long_numbers(SEED, 400)
    real = go_consumer.run(docs)
    dialect = GoDialect(version="{}.{}".format(*go_consumer.version))
    assert_identical(docs, real, model_lines(dialect, docs), "go, long numbers")
    nearest = [float(doc) for doc in docs]
    misread = [
        doc for doc, line, f in zip(docs, real, nearest, strict=True)
        if math.isfinite(f) and line != GoDialect().encode(f)
    ]
    assert len(misread) > 20, "these documents must show Go's misreadings"
