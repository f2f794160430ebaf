from __future__ import annotations

import json
import re
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


# -- pages that travel -----------------------------------------------------------------------

# a 1x1 PNG: nbconvert gives images without alternative text a placeholder, and warns
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
       "RU5ErkJggg==")


def executed_notebook(path: Path, out: Path, made_from: Path, home: Path) -> Path:
    """A notebook as papermill leaves it, with this machine's paths in code and outputs."""
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell(
        f'source = "sqlite:///{made_from}/data/events.db"\nresults_dir = "{out}/results"')
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout",
                               text=f"5,000 events from sqlite:///{made_from}/data/events.db\n"),
        nbformat.v4.new_output("display_data", data={
            "text/plain": "<table>", "text/html": f"<b>{home}/cache</b> and {out}"}),
        nbformat.v4.new_output("execute_result", execution_count=1, data={
            "text/plain": f"PosixPath('{out}/results/01.json')"}),
        nbformat.v4.new_output("display_data", data={"image/png": PNG,
                                                     "text/plain": "<Figure>"}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("intro text\n\n# 07 · What travels\n\nmore"),
                code]
    nbformat.write(nb, path)
    return path


def test_exported_page_is_titled_quiet_offline_and_free_of_machine_paths(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from evtools.report import export_html, shown_paths

    made_from, home = tmp_path / "work" / "repo", tmp_path / "home" / "user"
    out = made_from / "reports"
    executed = executed_notebook(tmp_path / "07_travels.ipynb", out, made_from, home)
    with caplog.at_level("WARNING"):
        page = export_html(executed, out / "07_travels.html",
                           paths=shown_paths(out, made_from, home),
                           banner="<div id='made'>made today</div>").read_text()
    assert "<title>07 · What travels</title>" in page  # not "Notebook"
    assert str(tmp_path) not in page, [line for line in page.splitlines()
                                       if str(tmp_path) in line][:3]
    assert "sqlite:///data/events.db" in page  # as given, relative to where it was made
    assert "results/01.json" in page and "~/cache" in page
    assert "made today" in page.split("<body", 1)[1][:300]  # the banner opens the page
    assert "cdnjs" not in page and 'import("https://' not in page  # nothing from the network
    assert "data:image/png;base64," in page
    assert not [r for r in caplog.records if "Alternative text" in r.getMessage()]


def test_shorten_paths_rewrites_folders_not_lookalikes(tmp_path: Path) -> None:
    from evtools.report import shorten_paths, shown_paths

    out, cwd, home = tmp_path / "a" / "out", tmp_path / "a", tmp_path / "h"
    paths = shown_paths(out, cwd, home)
    assert [folder for folder, _ in paths] == [str(out), str(cwd), str(home)]  # longest first
    text = f"{out}/results/x.json {out} {cwd}/data.db {cwd}b/other {home}/y {home}"
    assert shorten_paths(text, paths) == (
        f"results/x.json . data.db {cwd}b/other ~/y ~")
    assert shown_paths("/", "/", "/") == []  # the root is never rewritten
    code = shown_paths(out, cwd, home, code=[(tmp_path / "venv" / "site-packages",
                                              "site-packages/")])
    assert shorten_paths(f'"{tmp_path}/venv/site-packages/msgspec/__init__.py"', code) == (
        '"site-packages/msgspec/__init__.py"')  # a stack frame in a flame graph
    assert shorten_paths("/usr/bin", shown_paths("/", None, None)) == "/usr/bin"


def test_empty_only_is_a_usage_error(notebooks: Path) -> None:
    from evtools.report import select_notebooks

    with pytest.raises(UsageError, match="no notebook named"):
        select_notebooks(notebooks, [])
    with pytest.raises(UsageError, match="no notebook named"):
        select_notebooks(notebooks, [" ", ""])
    assert [p.stem for p in select_notebooks(notebooks, None)] == ["01_first", "02_second"]


def test_cli_report_only_naming_nothing_exits_2_in_one_line(
        notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from evtools.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["report", "-q", "--only", ",", "--source", "memory:", "--notebooks",
                 str(notebooks), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "no notebook named" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_report_without_its_notebooks_says_where_they_are(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from evtools.cli import main

    monkeypatch.chdir(tmp_path)  # as after `pip install evtools`, outside a clone
    code = main(["report", "-q", "--source", "memory:"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "no notebooks (NN_name.ipynb) found in notebooks: run the report from a clone" \
        in err and "--notebooks" in err
    assert not (tmp_path / "reports").exists()


def test_cli_report_without_papermill_stops_before_any_work(
        notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from evtools.cli import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None
                        if name == "papermill" else find_spec(name, *a))
    monkeypatch.chdir(tmp_path)
    code = main(["report", "-q", "--quick", "--notebooks", str(notebooks)])
    err = capsys.readouterr().err
    assert code == 2 and "papermill is not installed" in err, err
    assert not (tmp_path / "data").exists() and not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_cli_report_a_notebook_missing_a_library_is_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from evtools.cli import main

    folder = tmp_path / "notebooks"
    folder.mkdir()
    make_notebook(folder / "01_needs.ipynb",
                  "from evtools.errors import MissingDependency\n"
                  "raise MissingDependency('torch', 'torch')")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "none.jsonl").touch()
    code = main(["report", "-q", "--source", "none.jsonl", "--notebooks", str(folder)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "evtools: error: notebook 01_needs needs what is not installed: torch is not " \
           "installed" in err


def test_results_sources_say_what_when_and_where(tmp_path: Path) -> None:
    from evtools.report import before_after, load_results, results_sources

    bench, run = tmp_path / "bench", tmp_path / "run"
    bench.mkdir()
    run.mkdir()
    (bench / "rehydrate.json").write_text(json.dumps({
        "benchmark": "rehydrate", "events": 1_000_000, "seed": 2024,
        "machine": {"cpu_model": "Xeon", "cpu_count": 2},
        "figures": {"naive_json": {"events_per_s": 2.0}, "typed": {"events_per_s": 6.0}}}))
    (run / "inference.json").write_text(json.dumps({
        "benchmark": "inference", "config": {"n_orders": 500, "seed": 7},
        "environment": {"device_name": "H100", "cpu_count": 16},
        "headlines": {"naive_per_row_samples_per_s": 10.0, "typed_best_samples_per_s": 50.0}}))
    results = load_results(bench, run)
    results["measured-here/suite"] = {"benchmark": "rehydrate", "n_events": 3000, "seed": 7,
                                      "started_at": "2026-01-02T03:04:05+01:00",
                                      "_file": "measured in this notebook"}
    sources = {r["source"]: r for r in results_sources(results).iter_rows(named=True)}
    assert sources["rehydrate"]["events"] == 1_000_000 and sources["rehydrate"]["seed"] == 2024
    assert sources["rehydrate"]["machine"] == "Xeon, 2 CPUs"
    assert sources["rehydrate"]["when"].endswith(" UTC")  # from the file's time
    assert sources["inference"]["events"] == 500 and sources["inference"]["machine"] == \
        "H100, 16 CPUs"
    assert sources["measured-here/suite"]["when"] == "2026-01-02 02:04 UTC"
    table = before_after(results)
    # each row names the result it comes from, as results_sources lists it
    assert set(table["source"]) == {"rehydrate", "inference"}


def test_inference_before_after_also_compares_at_the_same_batch_size() -> None:
    from evtools.report import before_after

    def run(pipeline: str, batch: int, throughput: float) -> dict[str, object]:
        return {"stage": "end-to-end", "pipeline": pipeline, "batch_size": batch,
                "throughput": throughput}

    doc = {"benchmark": "inference", "environment": {"device": "cpu"},
           "headlines": {"naive_per_row_samples_per_s": 10.0, "typed_best_batch_size": 256,
                         "typed_best_samples_per_s": 380.0},
           "runs": [run("naive", 1, 10.0), run("naive", 64, 100.0), run("typed", 1, 11.0),
                    run("typed", 64, 120.0), run("typed", 256, 380.0),
                    {"stage": "model", "pipeline": "typed", "batch_size": 512,
                     "throughput": 9e9}]}
    rows = {r["comparison"]: r for r in before_after({"inference": doc}).iter_rows(named=True)}
    mixed = rows["inference end to end (cpu)"]  # batching and typing together: 38x
    assert mixed["after"] == "typed pipeline, batched (256 a request)"
    assert mixed["improvement"] == pytest.approx(38.0)
    same = rows["inference end to end, same batch size (64 a request; cpu)"]
    assert (same["before_value"], same["after_value"]) == (100.0, 120.0)  # typing alone
    assert same["improvement"] == pytest.approx(1.2)


@pytest.mark.slow
def test_only_keeps_earlier_pages_drops_stale_figures_and_stores(
        notebooks: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_notebook(notebooks / "02_second.ipynb",
                  "from pathlib import Path\n"
                  "work = Path(results_dir, '02_second'); work.mkdir(parents=True, exist_ok=True)\n"
                  "(work / 'workload.db').write_bytes(b'x'); (work / 'graph.html').write_text('g')")
    first = build_report(out, notebooks_dir=notebooks, parameters={"seed": 7})
    assert first.ok, first.summary()
    assert not list(out.rglob("*.db"))  # the stores the notebooks worked in: not sent
    assert (out / "results" / "02_second" / "graph.html").exists()  # artefacts stay

    again = build_report(out, notebooks_dir=notebooks, only=["02"])
    assert [r.name for r in again.runs] == ["02_second"]
    index = again.index.read_text()
    assert 'href="01_first.html"' in index and "IDs rounded" in index  # still listed
    assert "not run this time" in index and index.count("not run this time") == 1

    make_notebook(notebooks / "01_first.ipynb", "raise ValueError('bad data')",
                  "from evtools.report import record_headlines\n"
                  "record_headlines(results_dir, '01_first', {'IDs rounded': 1})")
    failed = build_report(out, notebooks_dir=notebooks, only=["01"])
    assert not failed.ok
    index = failed.index.read_text()
    assert "IDs rounded" not in index  # the earlier run's figure is not this run's
    assert "failed at cell" in index
    page = (out / "01_first.html").read_text()
    assert "Part of an evtools report" in page and str(tmp_path) not in page

    # a page that failed in an earlier run is listed as failed when it is not run again
    again = build_report(out, notebooks_dir=notebooks, only=["02"])
    index = again.index.read_text()
    earlier_01 = index.split("<h2>01 first</h2>", 1)[0].rsplit("<section", 1)[1]
    assert "class='failed'" in earlier_01, earlier_01
    assert "ValueError: bad data" in index.split("<h2>01 first</h2>", 1)[1].split("</section>")[0]


def test_shorten_paths_only_where_a_path_starts(tmp_path: Path) -> None:
    from evtools.report import shorten_paths, shown_paths

    cwd, home = tmp_path / "work" / "main", tmp_path / "root"
    paths = shown_paths(cwd / "reports", cwd, home)
    assert shorten_paths(f"/srv{cwd}/x /proc/1{home}/etc file://{cwd}/r.html", paths) == (
        f"/srv{cwd}/x /proc/1{home}/etc file://{cwd}/r.html")  # inside other paths: kept
    assert shorten_paths(f"sqlite:///{cwd}/data/e.db '{cwd}/data' {home}/x", paths) == (
        "sqlite:///data/e.db 'data' ~/x")
    # under the home folder, a SQLite URL stays absolute: sqlite:///~/x.db would be relative
    assert shorten_paths(f"sqlite:///{home}/x.db", paths) == f"sqlite:///{home}/x.db"
    real = tmp_path / "real"
    real.mkdir()
    linked = tmp_path / "linked"
    linked.symlink_to(real)  # as /var is /private/var on macOS
    paths = shown_paths(linked / "reports", linked)
    assert shorten_paths(f"{linked}/a.db {real}/b.db", paths) == "a.db b.db"


def test_results_sources_read_the_events_from_the_config() -> None:
    from evtools.report import results_sources

    frame = results_sources({"audit": {"benchmark": "audit", "config": {"events": 500}}})
    assert frame["events"].to_list() == [500]


@pytest.mark.slow
def test_a_report_on_a_store_with_a_password_never_shows_it(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    make_notebook(notebooks / "01_t.ipynb",
                  "print(results_dir, source)\n"
                  "from evtools.report import record_headlines, Headline\n"
                  "record_headlines(results_dir, '01_t', [Headline('n', 1, '', source)])\n"
                  "import json, pathlib\n"
                  "pathlib.Path(results_dir, 'figures.json').write_text("
                  "json.dumps({'source': source, 'folder': results_dir}))",
                  parameters="results_dir = ''\nsource = ''")
    out = tmp_path / "out"
    source = "esdb://admin:s3cr@t@db.example:2113?tls=false"
    result = build_report(out, notebooks_dir=notebooks, parameters={"source": source})
    assert result.ok, result.summary()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".html", ".ipynb", ".json"}
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert "s3cr" not in text, path  # not in a page, the index, executed/ or results/
        assert str(tmp_path) not in text, (path, [line for line in text.splitlines()
                                                  if str(tmp_path) in line][:2])
    assert "esdb://admin:***@db.example:2113" in (out / "01_t.html").read_text()


SIZES = "n_events = 5000\nratio = 0.5\nflag = False\nname = 'x'\nsizes = [1, 8]\n" \
        "anything = None\nresults_dir = ''"


def test_parameters_take_the_type_of_the_notebooks_default(tmp_path: Path) -> None:
    from evtools.report import notebook_parameters, parse_parameters

    nb = make_notebook(tmp_path / "01_sizes.ipynb", "pass", parameters=SIZES)
    assert notebook_parameters(nb) == {"n_events": 5000, "ratio": 0.5, "flag": False,
                                       "name": "x", "sizes": [1, 8], "anything": None,
                                       "results_dir": ""}
    assert parse_parameters(["n_events=100000", "ratio=2", "flag=True", "name=12",
                             "sizes=[64, 256]", "anything=3.5"], [nb]) == {
        "n_events": 100000, "ratio": 2, "flag": True, "name": "12", "sizes": [64, 256],
        "anything": 3.5}
    assert parse_parameters(["name=a=b"], [nb]) == {"name": "a=b"}  # split at the first =
    assert parse_parameters([], [nb]) == {}


@pytest.mark.parametrize(("assignment", "message"), [
    ("n_events=1.5", "parameter n_events takes an int in 01_sizes (default 5000), not '1.5'"),
    ("n_events=abc", "parameter n_events takes an int"),
    ("n_events=True", "parameter n_events takes an int"),  # a bool is no size
    ("ratio=fast", "parameter ratio takes a number"),
    ("flag=1", "parameter flag takes True or False"),
    ("sizes=3", "parameter sizes takes a list such as [1, 8]"),
    ("n_events", "a parameter is NAME=VALUE, such as n_events=100000, not 'n_events'"),
    ("=5", "a parameter is NAME=VALUE"),
    ("n-events=5", "a parameter is NAME=VALUE"),
    ("seed=3", "parameter seed is set by --seed"),
    ("results_dir=/tmp", "parameter results_dir is set by --out"),
    ("n_orders=5", "no report notebook takes parameter n_orders; they take anything, flag, "
                   "n_events, name, ratio, sizes"),
])
def test_a_bad_parameter_is_a_usage_error(tmp_path: Path, assignment: str,
                                          message: str) -> None:
    from evtools.report import parse_parameters

    nb = make_notebook(tmp_path / "01_sizes.ipynb", "pass", parameters=SIZES)
    with pytest.raises(UsageError, match="^" + re.escape(message)):
        parse_parameters([assignment], [nb])


def test_a_notebook_that_is_not_json_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    from evtools.report import parse_parameters

    (tmp_path / "01_broken.ipynb").write_text("{not json")
    with pytest.raises(UsageError, match="cannot read the notebook's parameters") as e:
        parse_parameters(["n=1"], [tmp_path / "01_broken.ipynb"])
    assert e.value.context.file == str(tmp_path / "01_broken.ipynb")


@pytest.mark.slow
def test_cli_report_sets_a_parameter_only_where_a_notebook_declares_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from evtools.cli import main

    folder = tmp_path / "notebooks"
    folder.mkdir()
    make_notebook(folder / "01_sized.ipynb", "assert n_events == 123, n_events",
                  parameters="n_events = 5\nresults_dir = ''")
    make_notebook(folder / "02_unsized.ipynb", "assert 'n_events' not in globals()")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "none.jsonl").touch()
    code = main(["report", "-q", "--source", "none.jsonl", "--notebooks", str(folder),
                 "-p", "n_events=123", "--out", "out"])
    assert code == 0, capsys.readouterr().err
    assert "parameters: n_events=123, " in (tmp_path / "out" / "index.html").read_text()
    assert "parameters: n_events=123, " in (tmp_path / "out" / "02_unsized.html").read_text()


def test_cli_report_bad_parameter_exits_2_before_any_work(
        notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from evtools.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["report", "-q", "--notebooks", str(notebooks), "-p", "n_events=5"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "no report notebook takes parameter n_events; they take none" in err
    assert not (tmp_path / "data").exists() and not (tmp_path / "reports").exists()
