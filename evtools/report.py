"""The report: execute the notebooks with parameters, export HTML, write an index page.

``build_report`` runs every numbered notebook in ``notebooks/`` through papermill with the
same parameters (source, seed, quick sizes, where to put results), plus any other parameter
a notebook declares that the caller sets (``evtools report -p n_events=100000``, see
:func:`parse_parameters`). It exports each executed notebook to one self-contained HTML
page with nbconvert (images embedded, no script or style loaded from the network), and
writes ``index.html``: the headline figures each notebook recorded, with links to each page
and to the profiler artefacts.

The folder is meant to be sent: every page names its notebook in its title and opens with a
line saying when, on what machine and with which parameters it ran; paths of the machine
that made it are shown relative to the report folder (``results/...``) or to the folder the
report was made from (``sqlite:///data/events.db``), or under ``~``, in the pages and in the
profiles (a flame graph's stack frames read ``evtools/rehydration.py``); links are relative;
the SQLite stores the profiling notebook works in are removed once every notebook has run.

A notebook records its headline figures with :func:`record_headlines`, which writes
``<results_dir>/<notebook>.json``; the index reads those files. A notebook that fails does
not stop the others: its page is still written (with the error in it), the index marks it,
and :class:`ReportResult` names the cell and the error.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import json
import logging
import os
import platform
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import EvtoolsError, MissingDependency, UsageError

__all__ = [
    "BEFORE_AFTER_COLUMNS",
    "Headline",
    "NotebookRun",
    "ReportResult",
    "before_after",
    "build_report",
    "code_folders",
    "export_html",
    "find_notebooks",
    "load_results",
    "notebook_parameters",
    "parse_parameters",
    "record_headlines",
    "results_sources",
    "select_notebooks",
    "shorten_paths",
    "shown_paths",
]

log = logging.getLogger(__name__)

#: Progress callback: (step name, state) with state "start", "done" or "failed".
Progress = Callable[[str, str], None]

_NETWORK_ASSET = re.compile(
    r"""<script[^>]*\bsrc=["']https?://[^"']*["'][^>]*>\s*</script>"""
    r"""|<link[^>]*\bhref=["']https?://[^"']*["'][^>]*>"""
    # a script that imports a module from the network (nbconvert's mermaid loader)
    r"""|<script\b[^>]*>(?:(?!</script>).)*?\bimport\(\s*["']https?://(?:(?!</script>).)*</script>""",
    re.I | re.S,
)

# nbconvert warns, once per page, that the figures have no alternative text (it gives them
# a placeholder): noise on the report's stderr, even with -q. Its exporter logs here.
_NBCONVERT_LOG = log.getChild("nbconvert")
_NBCONVERT_LOG.addFilter(lambda record: "Alternative text is missing" not in record.getMessage())


@dataclasses.dataclass(frozen=True)
class Headline:
    """One figure for the index page: ``label: value unit``, with a sentence of context."""

    label: str
    value: Any
    unit: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class NotebookRun:
    name: str
    html: Path | None
    executed: Path | None
    seconds: float
    ok: bool
    error: str | None = None
    cell: int | None = None  # the failing cell's execution count, as the page shows In [n]
    headlines: list[Headline] = dataclasses.field(default_factory=list)
    artefacts: list[Path] = dataclasses.field(default_factory=list)
    #: set on a page this run did not write (``only=``): when an earlier run wrote it
    earlier: datetime | None = None


@dataclasses.dataclass
class ReportResult:
    out_dir: Path
    index: Path
    runs: list[NotebookRun]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    @property
    def failures(self) -> list[NotebookRun]:
        return [r for r in self.runs if not r.ok]

    def summary(self) -> str:
        lines = [f"{r.name}: {'ok' if r.ok else 'FAILED'} ({r.seconds:.1f} s)"
                 + (f" - cell In [{r.cell}]: {r.error}" if r.error else "") for r in self.runs]
        return "\n".join(lines)


def record_headlines(results_dir: str | Path | None, notebook: str,
                     headlines: Sequence[Headline] | Mapping[str, Any]) -> Path | None:
    """Write a notebook's headline figures for the index page (no-op without a dir).

    ``headlines`` is a list of :class:`Headline`, or a mapping ``label -> value``.
    """
    if not results_dir:
        return None
    items = (list(headlines) if not isinstance(headlines, Mapping)
             else [Headline(str(k), v) for k, v in headlines.items()])
    path = Path(results_dir) / f"{Path(notebook).stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"notebook": Path(notebook).stem,
                                "headlines": [h.to_dict() for h in items]},
                               indent=2, default=str))
    return path


def find_notebooks(notebooks_dir: str | Path) -> list[Path]:
    """The report's notebooks: ``NN_name.ipynb`` files, in order."""
    found = sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise UsageError(f"no notebooks (NN_name.ipynb) found in {notebooks_dir}: run the "
                         f"report from a clone of the evtools repository, or pass the "
                         f"folder of its notebooks with --notebooks")
    return found


#: The kernel's messages are encrypted where the kernel supports it (ipykernel >= 7.3;
#: which otherwise warns, once per notebook, that it runs over TCP without encryption).
_KERNEL_CONFIG = {"KernelManager": {"transport_encryption": "auto"}}


def select_notebooks(notebooks_dir: str | Path, only: Sequence[str] | None = None
                     ) -> list[Path]:
    """:func:`find_notebooks`, keeping those whose name contains one of ``only`` (a
    :class:`~evtools.errors.UsageError` when that leaves none)."""
    notebooks = find_notebooks(notebooks_dir)
    if only is None:
        return notebooks
    keys = [key.strip() for key in only if key.strip()]
    if not keys:
        raise UsageError("no notebook named: give part of a name, such as 01 or state_loss; "
                         f"there are {', '.join(nb.stem for nb in notebooks)}")
    chosen = [nb for nb in notebooks if any(key in nb.stem for key in keys)]
    if not chosen:
        raise UsageError(f"no notebook in {notebooks_dir} matches {', '.join(keys)}; "
                         f"there are {', '.join(nb.stem for nb in notebooks)}")
    return chosen


#: Parameters the report sets itself, and the option of ``evtools report`` that sets each.
SET_BY_THE_REPORT = {"source": "--source", "seed": "--seed", "quick": "--quick",
                     "results_dir": "--out"}


def notebook_parameters(notebook: str | Path) -> dict[str, Any]:
    """The parameters a notebook declares in its cell tagged ``parameters``, with their
    defaults: the Python value where the default is a literal, else its text."""
    try:
        import papermill
    except ImportError as e:
        raise MissingDependency("papermill", "notebooks") from e
    try:
        declared = papermill.inspect_notebook(str(notebook))
    except Exception as e:  # nbformat's validation errors, a file that is not JSON
        raise UsageError(f"cannot read the notebook's parameters: {_first_line(str(e))}",
                         file=str(notebook)) from e
    defaults: dict[str, Any] = {}
    for name, spec in declared.items():
        text = str(spec.get("default", ""))
        try:
            defaults[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            defaults[name] = text
    return defaults


def parse_parameters(assignments: Sequence[str], notebooks: Sequence[Path]
                     ) -> dict[str, Any]:
    """``NAME=VALUE`` assignments (``evtools report -p``) checked against what ``notebooks``
    declare: a :class:`~evtools.errors.UsageError` for a name no notebook takes, one the
    report sets itself, or a value of another type than the notebooks' default (an int
    where the default is an int, a float or an int where it is a float, ``True`` or
    ``False`` for a bool; a default string takes the text as it is)."""
    if not assignments:
        return {}
    declared: dict[str, tuple[Any, str]] = {}  # name -> (default, the first notebook)
    for nb in notebooks:
        for name, default in notebook_parameters(nb).items():
            declared.setdefault(name, (default, nb.stem))
    values: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UsageError(f"a parameter is NAME=VALUE, such as n_events=100000, not "
                             f"{assignment!r}")
        if name in SET_BY_THE_REPORT:
            raise UsageError(f"parameter {name} is set by {SET_BY_THE_REPORT[name]}")
        if name not in declared:
            takes = sorted(set(declared) - set(SET_BY_THE_REPORT))
            raise UsageError(f"no report notebook takes parameter {name}; they take "
                             f"{', '.join(takes) or 'none'}")
        default, notebook = declared[name]
        values[name] = _parameter_value(name, text, default, notebook)
    return values


def _parameter_value(name: str, text: str, default: Any, notebook: str) -> Any:
    if isinstance(default, str):
        return text
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = text
    expected = type(default)
    if default is None or (expected is float and type(value) is int):
        return value
    if type(value) is not expected:
        kind = _KINDS.get(expected, f"a {expected.__name__}")
        raise UsageError(f"parameter {name} takes {kind} in {notebook} (default "
                         f"{default!r}), not {text!r}")
    return value


_KINDS = {int: "an int", float: "a number", bool: "True or False", list: "a list such as "
          "[1, 8]", dict: "a dict", tuple: "a tuple"}


def export_html(executed: Path, target: Path, *, hide_input: bool = False,
                paths: Sequence[tuple[str, str]] = (), banner: str = "") -> Path:
    """Export an executed notebook to one self-contained HTML page.

    The page's title is the notebook's first heading. ``paths`` rewrites absolute paths in
    the code and the text outputs: ``(folder, shown as)`` pairs, the longest folder first
    (see :func:`shown_paths`). ``banner`` is HTML put at the top of the page.
    """
    try:
        import nbformat
        from nbconvert import HTMLExporter
    except ImportError as e:
        raise MissingDependency("nbconvert", "notebooks") from e
    nb = nbformat.read(executed, as_version=4)
    if paths:
        _rewrite_notebook(nb, paths)
    exporter = HTMLExporter(template_name="lab", embed_images=True,
                            exclude_input=hide_input, exclude_input_prompt=hide_input,
                            log=_NBCONVERT_LOG)
    body, _ = exporter.from_notebook_node(
        nb, resources={"metadata": {"name": _title(nb, target.stem)}})
    # Our notebooks use neither widgets, LaTeX nor mermaid: drop the CDN scripts so the
    # page opens from disk with no network at all.
    body = _NETWORK_ASSET.sub("", body)
    if banner:
        body = re.sub(r"<body[^>]*>", lambda m: m.group(0) + banner, body, count=1)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


def _title(nb: Any, default: str) -> str:
    """The first Markdown heading of the notebook, else ``default``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip() or default
    return default


_TEXT_MIMETYPES = ("text/plain", "text/html", "text/markdown", "text/latex")


def _rewrite_notebook(nb: Any, paths: Sequence[tuple[str, str]]) -> None:
    """Rewrite the absolute paths in every cell's source and text outputs (in place)."""
    for cell in nb.cells:
        cell.source = shorten_paths(cell.source, paths)
        for output in cell.get("outputs", []):
            if "text" in output:
                output.text = shorten_paths(output.text, paths)
            for mime in _TEXT_MIMETYPES:
                value = output.get("data", {}).get(mime)
                if isinstance(value, str):
                    output.data[mime] = shorten_paths(value, paths)
                elif isinstance(value, list):
                    output.data[mime] = [shorten_paths(v, paths) for v in value]
            if "traceback" in output:
                output.traceback = [shorten_paths(t, paths) for t in output.traceback]
            if "evalue" in output:
                output.evalue = shorten_paths(output.evalue, paths)


def shown_paths(out_dir: str | Path, made_from: str | Path | None = None,
                home: str | Path | None = None, *, secrets: Sequence[str] = (),
                code: Sequence[tuple[str | Path, str]] = ()) -> list[tuple[str, str]]:
    """How the report shows this machine's paths: the report folder's as relative to it,
    ``made_from``'s (the folder the report was made from) as relative to that, the home
    folder's under ``~``, and each ``(folder, shown)`` of ``code`` as ``shown`` (the stack
    frames of profiles: see :func:`code_folders`). Longest first; the filesystem root is
    never rewritten. ``secrets`` are store URLs to show with their password hidden (they
    come first)."""
    from .stores.base import redact_url

    pairs = [(Path(out_dir), ""), (Path(made_from) if made_from else None, ""),
             (Path(home) if home else None, "~/"), *((Path(f), s) for f, s in code)]
    found: dict[str, str] = {}
    for folder, shown in pairs:
        if folder is None or len(folder.resolve().parts) < 2:
            continue
        # as resolved, and as given (texts carry either: /var/x is /private/var/x on macOS)
        for form in (folder.resolve(), folder.absolute()):
            found.setdefault(str(form), shown)
    hidden = {raw: redact_url(raw) for raw in secrets if redact_url(raw) != raw}
    return [*sorted(hidden.items(), key=lambda item: len(item[0]), reverse=True),
            *sorted(found.items(), key=lambda item: len(item[0]), reverse=True)]


def code_folders() -> list[tuple[str, str]]:
    """Where this Python's code lives, as a report shows it: evtools' package folder as
    ``evtools/``, site-packages as ``site-packages/``. Stack frames in profiles then read
    ``evtools/rehydration.py`` wherever evtools is installed."""
    import sysconfig

    site = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    return [(str(Path(__file__).parent), "evtools/"), *((s, "site-packages/") for s in site)]


# a folder is rewritten where a path starts: not inside a longer path or name; a relative
# path may follow "sqlite:///" (sqlite:////abs/x.db -> sqlite:///x.db), a "~/" may not
_PATH_START = r"(?<![\w.~/:-])"
_PATH_START_IN_URL = r"(?:(?<=sqlite:///)|(?<![\w.~/:-]))"


def shorten_paths(text: str, paths: Sequence[tuple[str, str]]) -> str:
    """``text`` with each folder of ``paths`` (see :func:`shown_paths`) rewritten: a path
    in it loses the folder's prefix (or gets ``~/`` for the home folder); the folder itself
    becomes ``.`` (or ``~``). A pair whose first item is a URL (``://``) is replaced as it
    is: a store URL by the same with its password hidden."""
    for folder, shown in paths:
        if folder not in text:
            continue
        if "://" in folder:
            text = text.replace(folder, shown)
            continue
        whole = shown.rstrip("/") or "."  # the folder itself, not a path in it

        def replace(m: re.Match[str], inside: str = shown, whole: str = whole) -> str:
            return inside if m.group(1) else whole

        start = _PATH_START_IN_URL if not shown else _PATH_START
        text = re.sub(start + re.escape(folder) + r"(/|(?![\w.~-]))", replace, text)
    return text


def build_report(out_dir: str | Path, *, notebooks_dir: str | Path = "notebooks",
                 parameters: Mapping[str, Any] | None = None,
                 overrides: Mapping[str, Any] | None = None,
                 only: Sequence[str] | None = None, hide_input: bool = False,
                 kernel_name: str = "python3", timeout: int = 1200,
                 progress: Progress | None = None) -> ReportResult:
    """Execute every report notebook with ``parameters`` and write HTML into ``out_dir``.

    Each notebook receives ``parameters`` plus ``results_dir`` (where to record headlines
    and artefacts), and those of ``overrides`` it declares (see :func:`parse_parameters`).
    Notebooks run with their own folder as working directory. Written: ``index.html``, one
    ``NN_name.html`` per notebook, ``executed/`` (the executed notebooks) and ``results/``
    (headline figures, profiles). With ``only``, the pages of the other notebooks that an
    earlier run left in ``out_dir`` stay, and the index lists them as earlier. Paths are
    shown as :func:`shown_paths` says, from the current folder.
    """
    try:
        import papermill
        from traitlets.config import Config
    except ImportError as e:
        raise MissingDependency("papermill", "notebooks") from e
    notebooks = select_notebooks(notebooks_dir, only)
    out = Path(out_dir).resolve()
    results_dir = out / "results"
    executed_dir = out / "executed"
    results_dir.mkdir(parents=True, exist_ok=True)
    executed_dir.mkdir(parents=True, exist_ok=True)
    notify = progress or (lambda step, state: None)
    paths = shown_paths(out, Path.cwd(), Path.home(), code=code_folders(),
                        secrets=[v for v in (parameters or {}).values() if isinstance(v, str)])
    made = datetime.now(UTC)
    shown = {k: shorten_paths(str(v), paths)
             for k, v in {**(parameters or {}), **(overrides or {})}.items()}
    banner = _banner(made, shown)
    runs: list[NotebookRun] = []
    for nb in notebooks:
        takes = notebook_parameters(nb) if overrides else {}
        params = {**(parameters or {}), "results_dir": str(results_dir),
                  **{k: v for k, v in (overrides or {}).items() if k in takes}}
        executed = executed_dir / nb.name
        page = out / f"{nb.stem}.html"
        # what an earlier run recorded must not pass for this run's figures
        (results_dir / f"{nb.stem}.json").unlink(missing_ok=True)
        notify(nb.stem, "start")
        started = time.perf_counter()
        error: str | None = None
        cell: int | None = None
        try:
            papermill.execute_notebook(
                str(nb), str(executed), parameters=params, kernel_name=kernel_name,
                cwd=str(nb.parent.resolve()), progress_bar=False, log_output=False,
                execution_timeout=timeout, config=Config(_KERNEL_CONFIG),
            )
        except papermill.PapermillExecutionError as e:
            cell = e.exec_count
            error = shorten_paths(f"{e.ename}: {_first_line(e.evalue)}", paths)
        except Exception as e:  # the kernel died, a timeout: report it, keep going
            error = shorten_paths(f"{type(e).__name__}: {_first_line(str(e))}", paths)
        seconds = time.perf_counter() - started
        html_path: Path | None = None
        if executed.exists():
            try:
                _make_public(executed, paths)  # it goes with the folder: no path, no password
                html_path = export_html(executed, page, hide_input=hide_input, banner=banner)
            except Exception as e:
                error = error or f"HTML export failed: {type(e).__name__}: {e}"
        run = NotebookRun(name=nb.stem, html=html_path,
                          executed=executed if executed.exists() else None,
                          seconds=seconds, ok=error is None, error=error, cell=cell,
                          headlines=_read_headlines(results_dir / f"{nb.stem}.json"),
                          artefacts=_artefacts(results_dir, nb.stem))
        if error:
            log.error("notebook %s failed at cell %s: %s", nb.name, cell, error)
        notify(nb.stem, "done" if run.ok else "failed")
        runs.append(run)
    _remove_stores(results_dir)
    for written in results_dir.rglob("*"):  # figures and profiles as the notebooks wrote them
        if written.suffix in _TEXT_RESULTS and written.is_file():
            text = written.read_text(encoding="utf-8")
            public = shorten_paths(text, paths)
            if public != text:
                written.write_text(public, encoding="utf-8")
    ran = {run.name for run in runs}
    earlier = [_earlier_run(out, nb.stem) for nb in find_notebooks(notebooks_dir)
               if nb.stem not in ran and (out / f"{nb.stem}.html").exists()]
    index = write_index(out, sorted([*runs, *earlier], key=lambda r: r.name), shown,
                        made=made, paths=paths)
    return ReportResult(out_dir=out, index=index, runs=runs)


# results a notebook may write that name this machine's paths: figures (.json), memray flame
# graphs (.html: their stack frames), py-spy flame graphs (.svg) and speedscope files (.json)
_TEXT_RESULTS = frozenset({".json", ".html", ".svg"})


def _make_public(executed: Path, paths: Sequence[tuple[str, str]]) -> None:
    """Rewrite an executed notebook's paths and store passwords (cells, outputs, and the
    parameters and paths papermill keeps in its metadata), in place."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    _rewrite_notebook(nb, paths)
    kept = nb.metadata.get("papermill")
    if kept:
        kept = json.loads(shorten_paths(json.dumps(kept, ensure_ascii=False), paths))
        if kept.get("input_path"):  # the notebook it ran, wherever its folder was
            kept["input_path"] = Path(kept["input_path"]).name
        nb.metadata["papermill"] = kept
    nbformat.write(nb, executed)


def _failure(executed: Path) -> tuple[int | None, str] | None:
    """``(cell, error)`` of the first error an executed notebook holds, else ``None``."""
    try:
        nb = json.loads(executed.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return (cell.get("execution_count"),
                        f"{output.get('ename')}: {_first_line(output.get('evalue', ''))}")
    return None


def _earlier_run(out: Path, stem: str) -> NotebookRun:
    """A page an earlier run left in ``out``, with what that run recorded (and whether it
    failed)."""
    page = out / f"{stem}.html"
    executed = out / "executed" / f"{stem}.ipynb"
    failed = _failure(executed) if executed.exists() else None
    return NotebookRun(name=stem, html=page, executed=executed if executed.exists() else None,
                       seconds=0.0, ok=failed is None,
                       cell=failed[0] if failed else None, error=failed[1] if failed else None,
                       headlines=_read_headlines(out / "results" / f"{stem}.json"),
                       artefacts=_artefacts(out / "results", stem),
                       earlier=datetime.fromtimestamp(page.stat().st_mtime, UTC))


#: The stores a notebook works in (the profiling suite's workload and its peer's): not
#: artefacts anyone opens, and most of the folder's size.
_STORE_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal")


def _remove_stores(results_dir: Path) -> None:
    for path in sorted(results_dir.rglob("*")):
        if path.is_file() and path.name.endswith(_STORE_SUFFIXES):
            log.debug("removing %s from the report", path)
            path.unlink()


def _environment() -> dict[str, str]:
    """Where the report ran, as the pages show it (no host or user names)."""
    from importlib import metadata

    try:
        version = metadata.version("evtools")
    except metadata.PackageNotFoundError:
        version = "?"
    return {"evtools": version,
            "Python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, "
                       f"{os.cpu_count() or '?'} CPUs"}


def _banner(made: datetime, parameters: Mapping[str, str]) -> str:
    """The line at the top of every page: when, where and with what it ran."""
    env = ", ".join(f"{k} {v}" for k, v in _environment().items())
    params = ", ".join(f"{k}={v}" for k, v in sorted(parameters.items())) or "defaults"
    return ("<div style='font:13px/1.4 system-ui,sans-serif;color:#5a6270;padding:.5rem 1rem;"
            "border-bottom:1px solid #d9dde5'>"
            f"Part of an evtools report made {made:%Y-%m-%d %H:%M} UTC "
            "(<a href='index.html'>index.html</a> in the same folder) · "
            f"{html.escape(env)} · parameters: {html.escape(params)}</div>")


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _read_headlines(path: Path) -> list[Headline]:
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text())
        return [Headline(**h) for h in doc.get("headlines", [])]
    except (ValueError, TypeError) as e:
        raise EvtoolsError(f"headline file is not valid: {e}", file=str(path)) from e


def _artefacts(results_dir: Path, stem: str) -> list[Path]:
    folder = results_dir / stem
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and p.suffix in {".html", ".svg", ".json", ".png"})


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


_CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:60rem;padding:0 1rem;color:#1d2330}
h1{font-size:1.6rem;margin-bottom:.2rem} .sub{color:#5a6270;margin-top:0}
section{border:1px solid #d9dde5;border-radius:8px;padding:1rem 1.2rem;margin:1rem 0}
section.failed{border-color:#c0392b;background:#fdf1ef}
h2{font-size:1.15rem;margin:.1rem 0 .6rem} table{border-collapse:collapse;width:100%}
td{padding:.25rem .5rem;border-bottom:1px solid #eef0f4;vertical-align:top}
td.v{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap;font-weight:600}
td.n{color:#5a6270;font-size:.9em} .err{color:#c0392b;font-family:monospace}
.meta{color:#5a6270;font-size:.85em}
"""


def write_index(out: Path, runs: Sequence[NotebookRun], parameters: Mapping[str, Any], *,
                made: datetime | None = None, paths: Sequence[tuple[str, str]] = ()) -> Path:
    """Write ``index.html`` summarising ``runs`` (``paths``: see :func:`shorten_paths`)."""
    sections = []
    for run in runs:
        title = html.escape(run.name.replace("_", " "))
        link = (f'<a href="{html.escape(run.html.name)}">open the page</a>'
                if run.html else "no page")
        rows = "".join(
            f"<tr><td>{html.escape(h.label)}</td><td class='v'>{html.escape(_fmt(h.value))}"
            f"{' ' + html.escape(h.unit) if h.unit else ''}</td>"
            f"<td class='n'>{html.escape(shorten_paths(h.note, paths))}</td></tr>"
            for h in run.headlines)
        arts = "".join(
            f'<li><a href="{html.escape(str(a.relative_to(out)))}">'
            f"{html.escape(a.name)}</a></li>" for a in run.artefacts
            if a.suffix in {".html", ".svg"})
        status = ("" if run.ok else
                  f"<p class='err'>failed at cell In [{run.cell}]: "
                  f"{html.escape(run.error or '')}</p>")
        when = (f"ran in {run.seconds:.1f} s" if run.earlier is None else
                f"<b>not run this time</b>: kept from an earlier run "
                f"({run.earlier:%Y-%m-%d %H:%M} UTC; its parameters are on its page)")
        sections.append(
            f"<section class='{'ok' if run.ok else 'failed'}'><h2>{title}</h2>{status}"
            f"<table>{rows}</table>"
            + (f"<p>Profiles:</p><ul>{arts}</ul>" if arts else "")
            + f"<p class='meta'>{link} · {when}</p></section>")
    params = ", ".join(f"{html.escape(str(k))}={html.escape(shorten_paths(str(v), paths))}"
                       for k, v in sorted(parameters.items()))
    env = html.escape(", ".join(f"{k} {v}" for k, v in _environment().items()))
    stamp = (made or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>evtools report</title>"
        f"<style>{_CSS}</style></head><body><h1>evtools report</h1>"
        "<p class='sub'>What untyped consumers lose from your events, what typed "
        "rehydration costs, and how fast models run on the result.</p>"
        f"<p class='meta'>Generated {stamp} · {env} · parameters: {params or 'defaults'}</p>"
        "<p class='meta'>Keep this folder together: the pages link to each other and to "
        "the profiles under <code>results/</code>. Paths are shown relative to this folder "
        "or to the folder the report was made from.</p>"
        + "".join(sections) + "</body></html>")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


# -- the before/after summary ----------------------------------------------------------------

BEFORE_AFTER_COLUMNS = ["comparison", "metric", "unit", "before", "before_value", "after",
                        "after_value", "improvement", "source"]

# metric -> (unit, higher is better)
_METRICS: dict[str, tuple[str, bool]] = {
    "events_per_s": ("events/s", True),
    "peak_mib": ("MiB peak", False),
    "allocations_per_event": ("allocations/event", False),
    "bytes_per_event": ("bytes allocated/event", False),
    "samples_per_s": ("samples/s", True),
    "corrupted_ids": ("IDs corrupted", False),
    "cost_vs_json": ("x json.loads+dumps CPU", False),
    "cost_vs_nats_py": ("x plain nats-py time", False),
}


def load_results(*folders: str | Path | None) -> dict[str, dict[str, Any]]:
    """Every result JSON (``{"benchmark": ...}``) in ``folders`` (one level deep), by its
    path in its folder without the suffix (``rehydrate-1m/suite``); folders that do not
    exist are skipped, and a later folder's file replaces one at the same path."""
    found: dict[str, dict[str, Any]] = {}
    for folder in folders:
        if not folder or not Path(folder).is_dir():
            continue
        root = Path(folder)
        for path in sorted(root.glob("*.json")) + sorted(root.glob("*/*.json")):
            try:
                doc = json.loads(path.read_text())
            except ValueError as e:
                raise EvtoolsError(f"result file is not valid JSON: {e}", file=str(path)) \
                    from e
            if isinstance(doc, dict) and "benchmark" in doc:
                doc["_file"] = str(path)
                found[path.relative_to(root).with_suffix("").as_posix()] = doc
    return found


def before_after(results: Mapping[str, Mapping[str, Any]]) -> Any:
    """One row per before/after comparison found in ``results`` (see :func:`load_results`),
    as a polars DataFrame with :data:`BEFORE_AFTER_COLUMNS`. ``improvement`` is how many
    times better *after* is than *before* (``None`` when *after* is zero and lower is
    better: nothing left to improve). ``source`` is the result's name in ``results``: the
    row of :func:`results_sources` that says where the figures come from."""
    import polars as pl

    rows: list[dict[str, Any]] = []
    for name, doc in results.items():
        kind = doc.get("benchmark")
        source = name  # as results_sources() lists it
        extract = {"rehydrate": _rehydrate_rows, "inference": _inference_rows,
                   "audit": _audit_rows, "stores": _store_rows}.get(str(kind))
        if extract is not None:
            rows.extend({**row, "source": source} for row in extract(doc))
    schema = {"comparison": pl.String, "metric": pl.String, "unit": pl.String,
              "before": pl.String, "before_value": pl.Float64, "after": pl.String,
              "after_value": pl.Float64, "improvement": pl.Float64, "source": pl.String}
    return pl.DataFrame(rows, schema=schema).unique(
        subset=["comparison", "metric"], keep="last", maintain_order=True)


def results_sources(results: Mapping[str, Mapping[str, Any]]) -> Any:
    """Where each result of ``results`` (see :func:`load_results`) comes from: one row per
    result with its file, what it measured, on how many events, with which seed, when and
    on what machine, as a polars DataFrame (``None`` where the file does not say)."""
    import polars as pl

    rows = []
    for name, doc in results.items():
        file = str(doc.get("_file", ""))
        machine = doc.get("machine") or doc.get("environment") or {}
        cpu = machine.get("cpu_model") or machine.get("device_name") or machine.get("processor")
        cpus = machine.get("cpu_count")
        when = _when(doc.get("started_at") or doc.get("when"))
        if when is None and Path(file).is_file():
            when = f"{datetime.fromtimestamp(Path(file).stat().st_mtime, UTC):%Y-%m-%d %H:%M} UTC"
        config = doc.get("config") or {}
        events = doc.get("n_events", doc.get("events"))
        if events is None:
            events = config.get("events", config.get("n_orders"))
        rows.append({
            "source": name, "file": file, "benchmark": str(doc.get("benchmark")),
            "events": int(events) if isinstance(events, int | float) else None,
            "seed": doc.get("seed", config.get("seed")),
            "when": when,
            "machine": ", ".join(str(x) for x in (cpu, f"{cpus} CPUs" if cpus else None) if x)
                       or None,
        })
    schema = {"source": pl.String, "file": pl.String, "benchmark": pl.String,
              "events": pl.Int64, "seed": pl.Int64, "when": pl.String, "machine": pl.String}
    return pl.DataFrame(rows, schema=schema)


def _when(value: Any) -> str | None:
    """A result's recorded time as ``YYYY-MM-DD HH:MM UTC`` (as given when not ISO 8601)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _row(comparison: str, metric: str, before: str, before_value: Any, after: str,
         after_value: Any) -> dict[str, Any] | None:
    if before_value is None or after_value is None:
        return None
    b, a = float(before_value), float(after_value)
    unit, higher_better = _METRICS[metric]
    better, worse = (a, b) if higher_better else (b, a)
    improvement = better / worse if worse else None
    return {"comparison": comparison, "metric": metric, "unit": unit, "before": before,
            "before_value": b, "after": after, "after_value": a, "improvement": improvement}


def _keep(rows: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    return [r for r in rows if r is not None]


def _rehydrate_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "optimisations" in doc:  # the profiling suite: its own before/after pairs
        return _keep([_row(o["optimisation"], o["metric"], o["before"], o["before_value"],
                           o["after"], o["after_value"])
                      for o in doc["optimisations"] if o.get("metric") in _METRICS])
    figures = doc.get("figures", {})  # benchmarks/bench_rehydrate.py
    typed = figures.get("typed", {}).get("events_per_s")
    return _keep([
        _row("typed rehydration vs naive json.loads + dict", "events_per_s",
             "naive json.loads + dict", figures.get("naive_json", {}).get("events_per_s"),
             "typed rehydrate()", typed),
        _row("typed rehydration vs the eventsourcing library", "events_per_s",
             "eventsourcing replay", figures.get("eventsourcing", {}).get("events_per_s"),
             "typed rehydrate()", typed),
    ])


def _inference_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    h = doc.get("headlines", {})
    device = doc.get("environment", {}).get("device", "?")
    best = h.get("typed_best_batch_size")
    # end to end, the per-row naive pipeline against the typed one at its best batch size
    # mixes batching with typing: the same batch size, the largest both ran, tells typing
    by_size: dict[str, dict[Any, Any]] = {"naive": {}, "typed": {}}
    for run in doc.get("runs", []):
        if run.get("stage") == "end-to-end" and run.get("pipeline") in by_size:
            by_size[run["pipeline"]][run.get("batch_size")] = run.get("throughput")
    common = sorted(b for b in by_size["naive"].keys() & by_size["typed"].keys()
                    if isinstance(b, int))
    same = common[-1] if common else None
    return _keep([
        _row(f"inference end to end ({device})", "samples_per_s", "naive per-row pipeline",
             h.get("naive_per_row_samples_per_s"),
             "typed pipeline, batched" + (f" ({best} a request)" if best else ""),
             h.get("typed_best_samples_per_s")),
        None if same is None else _row(
            f"inference end to end, same batch size ({same} a request; {device})",
            "samples_per_s", "naive pipeline", by_size["naive"][same], "typed pipeline",
            by_size["typed"][same]),
        _row("IDs that reach the model intact", "corrupted_ids", "naive float32 pipeline",
             h.get("naive_corrupted_ids"), "typed int64 pipeline", h.get("typed_corrupted_ids")),
    ])


def _audit_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return _keep([_row(f"auditing with the {d} dialect", "cost_vs_json",
                       "target", 3.0, "measured", r.get("median_over_median"))
                  for d, r in doc.get("ratios", {}).items()])


def _store_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    nats = doc.get("results", {}).get("nats") or {}
    ratios = nats.get("ratio_baseline_over_store") or {}  # plain nats-py rate / store rate
    return _keep([_row(f"JetStream {op}: evtools store vs plain nats-py", "cost_vs_nats_py",
                       "target", 1.5, "measured", ratios.get(key))
                  for op, key in (("append", "append"), ("read", "read_all"))])
