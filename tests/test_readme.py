"""The README's quickstart runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_gives_the_two_commands() -> None:
    text = README.read_text()
    assert "make report" in text and "make test" in text


def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    (block,) = python_blocks()
    assert len(block.strip().splitlines()) <= 16
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "9007199254740992" in out.stdout  # what the comment promises
    assert "/order_id" in out.stdout and "/total" in out.stdout
