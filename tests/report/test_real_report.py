"""The real report, as ``make report --quick`` builds it, opened in headless Chromium."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .browser import check_report, chromium_or_skip

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_report_renders_in_chromium(tmp_path: Path) -> None:
    chromium_or_skip()
    # made as a user makes it: from a folder of theirs, with a store in it
    subprocess.run([sys.executable, "-m", "evtools", "generate", "--store",
                    "sqlite:///events.db", "--events", "5000", "--faults",
                    "duplicate=0.002,clock_skew=0.002", "-q"], check=True, timeout=300,
                   cwd=tmp_path)
    out = tmp_path / "reports"
    run = subprocess.run(
        [sys.executable, "-m", "evtools", "report", "--quick", "-q", "--source",
         "sqlite:///events.db", "--out", "reports", "--notebooks", str(REPO / "notebooks")],
        capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "without encryption" not in run.stderr  # kernel messages encrypted: no warning
    assert "Alternative text" not in run.stderr and "warning" not in run.stderr.lower(), \
        run.stderr
    # the folder travels: no path of this machine, no store nobody opens, nothing fetched
    for page in [out / "index.html", *out.glob("[0-9][0-9]_*.html")]:
        text = page.read_text()
        for machine_path in (str(tmp_path), str(REPO), str(Path.home()) + "/"):
            assert machine_path not in text, (page.name, machine_path, [
                line[:200] for line in text.splitlines() if machine_path in line][:3])
        assert "PosixPath(" not in text, page.name  # no stray return values
        assert "cdnjs" not in text, page.name
        assert "sqlite:///events.db" in text, page.name  # the source, as the user gave it
    assert not list(out.rglob("*.db")), list(out.rglob("*.db"))
    # nor in what the pages link to: executed notebooks, figures, flame graphs' stack frames
    sent = [p for p in out.rglob("*") if p.suffix in {".ipynb", ".json", ".html", ".svg"}]
    assert any(p.name.endswith(".flamegraph.html") for p in sent), sent
    for path in sent:
        text = path.read_text(encoding="utf-8")
        for machine_path in (str(tmp_path), str(REPO), str(Path.home()) + "/"):
            assert machine_path not in text, (path.relative_to(out), machine_path)
    import nbformat

    for executed in sorted((out / "executed").glob("*.ipynb")):  # no warnings on the pages
        stderr = [o.text[:300] for c in nbformat.read(executed, as_version=4).cells
                  for o in c.get("outputs", []) if o.get("name") == "stderr"]
        assert not stderr, (executed.name, stderr)
    notebooks = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    pages = sorted(p.stem for p in out.glob("[0-9][0-9]_*.html"))
    assert pages == notebooks and len(pages) >= 5
    index = (out / "index.html").read_text()
    for name in notebooks:
        assert f'href="{name}.html"' in index
    checks = check_report(out / "index.html")
    assert len(checks) >= len(notebooks) + 1
    for check in checks:
        assert not check.python_errors, check
        assert not check.broken_images, check
        assert check.title and check.title != "Notebook", check  # named in the browser tab
    # every notebook page shows at least one figure, and each one rendered
    notebook_pages = [c for c in checks if any(c.url.endswith(f"/{n}.html") for n in notebooks)]
    assert len(notebook_pages) == len(notebooks)
    assert all(c.images > 0 for c in notebook_pages), [(c.url, c.images) for c in checks]
