"""The js dialect against real Node: every output line byte-identical (issue 3).

All documents go through ``consumers/js_roundtrip.js`` in one process and through
``JsDialect``; successes and rejections (``ERR<TAB>`` and the error's message) must match
byte for byte. The documents: the hand-written corpus, every byte in every position the
parser distinguishes, deep nesting, and 20,000 seeded random documents (``jsongen``).

V8's messages changed between Node versions, so the byte-for-byte comparison needs Node
20 (the version modelled); with another Node, ``test_js_verdicts_and_outputs`` still
compares every successful output and which documents are rejected.

Node's JSON.stringify fails with "Maximum call stack size exceeded" past a depth that
depends on the machine's stack and varies between runs (about 4,100 on x86-64). The deep
documents here are either at most ``SHALLOW`` levels or at least ``DEEP`` levels, and the
dialect runs with ``max_depth=SHALLOW``: any limit between the two reproduces Node.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from evtools.dialects.js import STACK_OVERFLOW, JsDialect

from .differential import Consumer, assert_identical, model_lines
from .jsongen import byte_level_tricky, deep_documents, documents, tricky_documents

# The real-world files of issue 3 (twitter.json has tweet ids above 2**53).
CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"  # copied from shared/corpus
SEED = 20240502
COUNT = 20_000
SHALLOW, DEEP = 3000, 9999
DEPTHS = [1, 2, 999, 1000, 1001, SHALLOW - 1, SHALLOW, DEEP, 10001, 12000]
PARTS = ["tricky", "bytes", "deep", f"random (seed={SEED})"]


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[bytes]]:
    return {
        "tricky": tricky_documents(),
        "bytes": byte_level_tricky(),
        "deep": deep_documents(DEPTHS),
        f"random (seed={SEED})": documents(SEED, COUNT),
    }


@pytest.fixture(scope="module")
def stack_limit(node_consumer: Consumer) -> int:
    """The deepest array nesting this Node's JSON.stringify writes (binary search)."""
    probe = """
    let lo = 1, hi = 100000;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      try { JSON.stringify(JSON.parse('['.repeat(mid) + ']'.repeat(mid))); lo = mid; }
      catch (e) { hi = mid - 1; }
    }
    console.log(lo);
    """
    node = node_consumer.command[0]
    return int(subprocess.run([node, "-e", probe], capture_output=True, check=True).stdout)


@pytest.fixture(scope="module")
def outputs(
    node_consumer: Consumer, corpus: dict[str, list[bytes]], stack_limit: int
) -> dict[str, tuple[list[bytes], list[bytes]]]:
    """(real lines, model lines) per part of the corpus, from ONE run of the Node script."""
    if not SHALLOW < stack_limit < DEEP:
        pytest.skip(
            f"this Node's JSON.stringify stops at depth {stack_limit}, outside "
            f"({SHALLOW}, {DEEP}): the deep documents would not tell the dialect's limit"
        )
    dialect = JsDialect(max_depth=SHALLOW)
    everything = [doc for docs in corpus.values() for doc in docs]
    real = node_consumer.run(everything)
    result, start = {}, 0
    for name, docs in corpus.items():
        result[name] = (real[start : start + len(docs)], model_lines(dialect, docs))
        start += len(docs)
    return result


@pytest.mark.parametrize("part", PARTS)
def test_js_dialect_matches_real_node(
    part: str,
    node_consumer: Consumer,
    corpus: dict[str, list[bytes]],
    outputs: dict[str, tuple[list[bytes], list[bytes]]],
) -> None:
    if node_consumer.version[0] != 20:
        pytest.skip(
            f"node {node_consumer.version[0]} found; the js dialect words errors as Node 20 "
            "does (install nodejs 20 for this check)"
        )
    real, model = outputs[part]
    assert_identical(corpus[part], real, model, f"js, {part}")


@pytest.mark.parametrize("part", PARTS)
def test_js_verdicts_and_outputs(
    part: str,
    corpus: dict[str, list[bytes]],
    outputs: dict[str, tuple[list[bytes], list[bytes]]],
) -> None:
    """With any Node: the same documents rejected, the same bytes written for the rest."""
    real, model = outputs[part]

    def verdicts(lines: list[bytes]) -> list[bytes]:
        return [b"ERR" if line.startswith(b"ERR\t") else line for line in lines]

    assert_identical(corpus[part], verdicts(real), verdicts(model), f"js verdicts, {part}")


def test_the_corpus_exercises_both_verdicts(
    outputs: dict[str, tuple[list[bytes], list[bytes]]],
) -> None:
    real = [line for lines, _ in outputs.values() for line in lines]
    rejected = [line for line in real if line.startswith(b"ERR\t")]
    assert len(real) > COUNT
    assert 0.1 < len(rejected) / len(real) < 0.5
    assert any(line == b"ERR\t" + STACK_OVERFLOW.encode() for line in rejected)
    accepted = b"\n".join(line for line in real if not line.startswith(b"ERR\t"))
    for written in [b"null", b'"\\ud83d"', b"e-7", b"e+21", "\ufffd".encode(), b'{"0":']:
        assert written in accepted


def test_real_world_files(node_consumer: Consumer) -> None:
    files = sorted(CORPUS.glob("*.json"))
    assert len(files) == 3, f"twitter, citm_catalog and canada expected in {CORPUS}"
    # One line each: a raw newline can only be whitespace between tokens in valid JSON.
    docs = [f.read_bytes().replace(b"\n", b" ") for f in files]
    real = node_consumer.run(docs)
    assert not any(line.startswith(b"ERR") for line in real)
    assert_identical(docs, real, model_lines(JsDialect(), docs), "js, real-world files")
