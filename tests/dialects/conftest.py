"""Fixtures for the dialect tests: the real consumers the go and js dialects model.

``go_consumer`` builds ``consumers/go_roundtrip`` with the installed Go toolchain (once per
session, into a temporary directory, with its own build cache and no network);
``node_consumer`` runs ``consumers/js_roundtrip.js`` with the installed Node. Both skip,
saying what to install, when the tool is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .differential import Consumer

CONSUMERS = Path(__file__).parent / "consumers"


def _version(text: str) -> tuple[int, int]:
    m = re.search(r"(\d+)\.(\d+)", text)
    assert m is not None, f"cannot read a version in {text!r}"
    return int(m.group(1)), int(m.group(2))


@pytest.fixture(scope="session")
def go_consumer(tmp_path_factory: pytest.TempPathFactory) -> Consumer:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go not found: install golang-go")
    tmp = tmp_path_factory.mktemp("go_roundtrip")
    env = {
        **os.environ,
        "GOCACHE": str(tmp / "cache"),
        "GOPATH": str(tmp / "gopath"),
        "GOTOOLCHAIN": "local",
        "GOPROXY": "off",
        "CGO_ENABLED": "0",
    }
    version = subprocess.run(
        [go, "env", "GOVERSION"], env=env, capture_output=True, text=True, check=True
    ).stdout
    binary = tmp / "go_roundtrip"
    build = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=CONSUMERS / "go_roundtrip",
        env=env,
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        pytest.fail(f"go build of the Go consumer failed:\n{build.stderr}")
    return Consumer("go", (str(binary),), _version(version))


@pytest.fixture(scope="session")
def node_consumer() -> Consumer:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not found: install nodejs")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True
    ).stdout
    return Consumer("js", (node, str(CONSUMERS / "js_roundtrip.js")), _version(version))
