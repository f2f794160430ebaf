"""The README's quickstart runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_gives_the_two_commands() -> None:
    text = README.read_text()
    assert "make report" in text and "make test" in text


def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    block, *_ = python_blocks()
    assert len(block.strip().splitlines()) <= 16
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "9007199254740992" in out.stdout  # what the comment promises
    assert "/order_id" in out.stdout and "/total" in out.stdout


def test_your_own_aggregate_runs_as_written(tmp_path: Path) -> None:
    _, block, *_ = python_blocks()
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "9007199254740993", "2"]  # what the comment says
    (tmp_path / "carts.py").write_text(block)  # and the command line the text gives
    done = subprocess.run([sys.executable, "-m", "evtools", "rehydrate", "sqlite:///carts.db",
                           "--aggregate", "carts:Cart", "--registry", "carts:registry",
                           "--strict", "--format", "json"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '"aggregate_id": "9007199254740993"' in done.stdout


def test_profiling_your_own_code_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("memray")
    from evtools.profiling import py_spy_status

    ok, reason = py_spy_status()
    if not ok:
        pytest.skip(f"py-spy cannot sample here: {reason}")
    _, _, block = python_blocks()
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0].split()
    assert first[:2] == [str(sum(len(str(i)) for i in range(100_000))), "True"]
    assert first[2] == str(tmp_path / "profiles" / "rebuild.flamegraph.html")
    assert "<string>" in out.stdout or "rebuild" in out.stdout  # the sites: the user's code
    assert (tmp_path / "profiles" / "rebuild.flamegraph.html").is_file()
    assert (tmp_path / "profiles" / "cpu.svg").is_file()


def command_lines() -> list[list[str]]:
    """The ``evtools ...`` lines of the README's command-line block, comments dropped."""
    (block,) = re.findall(r"## The command line\n\n```bash\n(.*?)```", README.read_text(),
                          re.S)
    lines = [line.split("  #")[0].split() for line in block.splitlines() if line.strip()]
    assert all(line[0] == "evtools" for line in lines)
    return [line[1:] for line in lines]


def test_every_command_line_parses() -> None:
    from evtools.cli import build_parser

    parser = build_parser()
    for args in command_lines():
        assert callable(parser.parse_args(args).func), args


_RUNNABLE = ("generate", "audit", "dialect", "rehydrate", "copy", "schema")


def test_the_data_commands_run_in_order(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """generate, then every command that reads what it wrote, at a small size; a check
    exits 1 only where the line asks for one (--strict, --fail-on-...)."""
    from evtools.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    ran = 0
    for args in command_lines():
        if args[0] not in _RUNNABLE or "twitter.json" in args:
            continue
        args = [("400" if prev == "--events" else a)
                for prev, a in zip(["", *args], args, strict=False)]
        code = main([*args, "-q"] if args[0] != "dialect" else args)
        checks = any(a == "--strict" or a.startswith("--fail-on") for a in args)
        assert code in ((0, 1) if checks else (0,)), args
        ran += 1
    assert ran >= 8
    assert (tmp_path / "export.jsonl").stat().st_size > 0
    assert (tmp_path / "violations.json").stat().st_size > 0
