from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from evtools.errors import UsageError
from evtools.report import Headline, build_report, find_notebooks, record_headlines

from .browser import check_report

PLOT_CELL = """
%matplotlib inline
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.plot([1, 2, 3], [1, 4, 9])
ax.set_title("squares"); ax.set_xlabel("n"); ax.set_ylabel("n squared")
plt.show()
"""


def make_notebook(path: Path, *cells: str, parameters: str = "results_dir = ''") -> Path:
    nb = nbformat.v4.new_notebook()
    param = nbformat.v4.new_code_cell(parameters)
    param.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test notebook"), param,
                *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    make_notebook(folder / "01_first.ipynb", PLOT_CELL,
                  "from evtools.report import record_headlines, Headline\n"
                  "record_headlines(results_dir, '01_first', "
                  "[Headline('IDs rounded', 42, 'values', 'ints above 2^53')])\n"
                  "assert True")
    make_notebook(folder / "02_second.ipynb", "x = 1 + 1", "assert x == 2")
    (folder / "scratch.ipynb").write_text("{}")  # not numbered: not part of the report
    return folder


@pytest.mark.slow
def test_report_executes_exports_and_indexes(notebooks: Path, tmp_path: Path) -> None:
    steps: list[tuple[str, str]] = []
    result = build_report(tmp_path / "out", notebooks_dir=notebooks,
                          parameters={"seed": 7}, progress=lambda s, st: steps.append((s, st)))
    assert result.ok, result.summary()
    assert [r.name for r in result.runs] == ["01_first", "02_second"]
    assert steps == [("01_first", "start"), ("01_first", "done"),
                     ("02_second", "start"), ("02_second", "done")]
    index = result.index.read_text()
    assert "IDs rounded" in index and "42 values" in index
    assert 'href="01_first.html"' in index and 'href="02_second.html"' in index
    page = (tmp_path / "out" / "01_first.html").read_text()
    assert "data:image/png;base64," in page  # the figure is embedded
    assert "https://" not in "".join(line for line in page.splitlines()
                                     if "<script" in line and "src=" in line)
    # the parameters reached the notebook
    executed = nbformat.read(tmp_path / "out" / "executed" / "02_second.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "seed = 7" in injected[0].source

    checks = check_report(result.index)
    assert len(checks) == 3  # the index and two pages
    for c in checks:
        assert not c.broken_images and not c.python_errors, c
    assert sum(c.images for c in checks) >= 1


@pytest.mark.slow
def test_failing_notebook_is_named_with_its_cell_and_others_still_written(
        notebooks: Path, tmp_path: Path) -> None:
    make_notebook(notebooks / "03_broken.ipynb", "y = 1", "raise ValueError('bad data')")
    result = build_report(tmp_path / "out", notebooks_dir=notebooks)
    assert not result.ok
    (failed,) = result.failures
    # In [4]: the parameters cell, papermill's injected cell, y = 1, then the raise
    assert failed.name == "03_broken" and failed.cell == 4
    assert failed.error == "ValueError: bad data"
    assert failed.html is not None and failed.html.exists()  # still written, with the error
    assert (tmp_path / "out" / "01_first.html").exists()
    assert "failed at cell In [4]: ValueError: bad data" in result.index.read_text()


def test_record_headlines_is_a_no_op_without_a_results_dir(tmp_path: Path) -> None:
    assert record_headlines("", "01_x", {"a": 1}) is None
    path = record_headlines(tmp_path, "01_x.ipynb", {"events": 10})
    assert path is not None
    assert json.loads(path.read_text())["headlines"] == [
        Headline("events", 10).to_dict()]


def test_no_notebooks_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no notebooks"):
        find_notebooks(tmp_path)


def test_load_results_keeps_same_named_files_of_different_folders(tmp_path: Path) -> None:
    from evtools.errors import EvtoolsError
    from evtools.report import load_results

    bench, run = tmp_path / "bench", tmp_path / "run"
    for folder, size in ((bench / "rehydrate-1m", 1), (bench / "rehydrate-200k", 2),
                         (run, 3)):
        folder.mkdir(parents=True)
        (folder / "suite.json").write_text(json.dumps({"benchmark": "rehydrate", "n": size}))
    (bench / "notes.json").write_text(json.dumps({"not": "a result"}))
    (run / "rehydrate-1m").mkdir()
    (run / "rehydrate-1m" / "suite.json").write_text(json.dumps({"benchmark": "rehydrate",
                                                                "n": 4}))
    found = load_results(bench, tmp_path / "missing", run)
    assert {k: v["n"] for k, v in found.items()} == {
        "rehydrate-1m/suite": 4, "rehydrate-200k/suite": 2, "suite": 3}  # later folder wins
    (run / "broken.json").write_text("{")
    with pytest.raises(EvtoolsError, match="not valid JSON") as info:
        load_results(run)
    assert info.value.context.file == str(run / "broken.json")
