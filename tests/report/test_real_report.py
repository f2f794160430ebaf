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
    store = tmp_path / "events.db"
    subprocess.run([sys.executable, "-m", "evtools", "generate", "--store",
                    f"sqlite:///{store}", "--events", "5000", "--faults",
                    "duplicate=0.002,clock_skew=0.002", "-q"], check=True, timeout=300)
    out = tmp_path / "reports"
    run = subprocess.run(
        [sys.executable, "-m", "evtools", "report", "--quick", "-q", "--source",
         f"sqlite:///{store}", "--out", str(out), "--notebooks", str(REPO / "notebooks")],
        capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "without encryption" not in run.stderr  # kernel messages encrypted: no warning
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
    # every notebook page shows at least one figure, and each one rendered
    notebook_pages = [c for c in checks if any(c.url.endswith(f"/{n}.html") for n in notebooks)]
    assert len(notebook_pages) == len(notebooks)
    assert all(c.images > 0 for c in notebook_pages), [(c.url, c.images) for c in checks]
