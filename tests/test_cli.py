"""The ``evtools`` command: the user-facing contract of DESIGN.md (exit codes, formats)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evtools.cli import main
from evtools.errors import MissingDependency


def run(*args: str, stdin: bytes | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "evtools", *args], input=stdin,
                          capture_output=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cli") / "events.db"
    url = f"sqlite:///{path}"
    assert main(["generate", "--store", url, "--events", "600", "--seed", "3",
                 "--faults", "duplicate=0.02", "-q"]) == 0
    return url


def test_audit_json_has_the_contract_keys_and_fail_on_loss_exits_1(store: str) -> None:
    out = run("audit", store, "--dialect", "go,js", "--format", "json", "--fail-on-loss")
    assert out.returncode == 1, out.stderr
    rows = json.loads(out.stdout)
    assert {tuple(sorted(r)) for r in rows} == {tuple(sorted(
        ["dialect", "path", "values", "at_risk", "value_changed", "text_changed",
         "type_changed", "dropped", "rejected", "examples"]))}
    ids = [r for r in rows if r["dialect"] == "go" and r["path"] == "/order_id"]
    assert ids and ids[0]["value_changed"] > 0


def test_audit_formats_write_files(store: str, tmp_path: Path) -> None:
    for fmt in ("csv", "html", "table"):
        target = tmp_path / f"audit.{fmt}"
        assert main(["audit", store, "--dialect", "python", "--format", fmt,
                     "--out", str(target)]) == 0
        assert target.stat().st_size > 0
    assert (tmp_path / "audit.csv").read_text().startswith("dialect,path,values")
    assert "<table" in (tmp_path / "audit.html").read_text()


def test_audit_by_default_leaves_out_a_dialect_whose_library_is_missing(
        store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import evtools.dialects

    real = evtools.dialects.get_dialect

    def without_torch(name: str, **options: object) -> object:
        if name == "torch":  # as on an installation without the torch extra
            raise MissingDependency("torch", "torch")
        return real(name, **options)

    monkeypatch.setattr(evtools.dialects, "get_dialect", without_torch)
    target = tmp_path / "audit.json"
    assert main(["audit", store, "--format", "json", "--out", str(target)]) == 0
    assert {r["dialect"] for r in json.loads(target.read_text())} == {
        "go", "js", "pandas", "polars"}
    assert "the torch dialect is left out: torch is not installed; install it first, " \
           "alone: pip install torch==2.13.0" in capsys.readouterr().err
    assert main(["audit", store, "--dialect", "torch"]) == 2  # asked for by name: an error


def test_python_baseline_finds_no_loss(store: str) -> None:
    assert main(["audit", store, "--dialect", "python", "--format", "json",
                 "--fail-on-loss", "--out", "/dev/null"]) == 0


def test_dialect_roundtrip_writes_one_line_per_input_line() -> None:
    docs = b'{"b":1,"a":9007199254740993}\n1e400\n{"x":"<\\u2028>"}\n[1,\n'
    go = run("dialect", "roundtrip", "--dialect", "go", stdin=docs)
    assert go.returncode == 0, go.stderr
    assert go.stdout.split(b"\n") == [
        b'{"a":9007199254740992,"b":1}',
        b"ERR\tjson: cannot unmarshal number 1e400 into Go value of type float64",
        b'{"x":"\\u003c\\u2028\\u003e"}',
        b"ERR\tunexpected end of JSON input",
        b"",
    ]
    js = run("dialect", "roundtrip", "--dialect", "js", stdin=docs)
    assert js.stdout.split(b"\n")[:3] == [b'{"b":1,"a":9007199254740992}', b"null",
                                          '{"x":"<\u2028>"}'.encode()]


def test_rehydrate_strict_exits_1_on_violations(store: str) -> None:
    assert main(["rehydrate", store, "--format", "json", "--out", "/dev/null"]) == 0
    assert main(["rehydrate", store, "--strict", "--format", "json",
                 "--out", "/dev/null"]) == 1


def test_copy_to_jsonl_and_audit_it(store: str, tmp_path: Path) -> None:
    target = tmp_path / "export.jsonl"
    assert main(["copy", store, str(target), "-q"]) == 0
    assert sum(1 for _ in target.open("rb")) >= 600
    assert main(["audit", str(target), "--dialect", "go", "--format", "json",
                 "--out", str(tmp_path / "a.json")]) == 0


@pytest.mark.parametrize("args, message", [
    (["audit", "{missing}"], "cannot read"),
    (["audit", "{bad}"], "not a JSON document"),
    (["audit", "{truncated}"], "truncated"),
    (["audit", "{bad}", "--dialect", "cobol"], "unknown dialect 'cobol'"),
    (["rehydrate", "sqlite:///{tmp}/no/such/dir.db"], "does not exist"),
    (["generate", "--store", "ftp://x"], "ftp"),
    (["nosuchcommand"], "invalid choice"),
    (["generate", "--store", "sqlite:///{tmp}/g.db", "--faults", "gap=0.01"],
     "--store events.jsonl"),
    (["generate", "--store", "{tmp}/g.jsonl", "--events", "0"], "--events must be >= 1"),
    (["generate", "--store", "{tmp}/dir.jsonl", "--events", "5"], "Is a directory"),
    (["generate", "--store", "{tmp}/bad.json/g.jsonl", "--events", "5"], "bad.json: File exists"),
    (["rehydrate", "{tmp}/g.jsonl", "--snapshot-every", "-1"], "--snapshot-every must be"),
    (["rehydrate", "{existing}", "--format", "json", "--out", "{tmp}/dir.jsonl"],
     "Is a directory"),
    (["report", "--only", "zzz", "--out", "{tmp}/r"], "no notebook in notebooks matches zzz"),
    (["rehydrate", "{tmp}/dir.jsonl"], "a directory, not a file"),
    (["rehydrate", "sqlite:///{tmp}/dir.jsonl"], "a directory, not a database file"),
    (["rehydrate", "{existing}", "--stream", "snapshot-order-42"],
     "is a snapshot stream, not an Order stream: rehydrate uses the snapshots of a stream by "
     "itself; pass --stream order-42"),
    (["rehydrate", "{existing}", "--out", "{tmp}/dir.jsonl"], "cannot write"),

    (["bench", "rehydrate", "--events", "0"], "--events must be 1 or more, not 0"),
    (["bench", "inference", "--n-orders", "-3"], "--n-orders must be 1 or more, not -3"),
    # an option of the other benchmark would be ignored: a run that misleads
    (["bench", "rehydrate", "--events", "100", "--device", "cuda", "--dtype", "float16"],
     "--device and --dtype: only for 'evtools bench inference'"),
    (["bench", "inference", "--events", "5"], "--events: only for 'evtools bench rehydrate'"),
    (["bench", "inference", "--artefacts", "{tmp}/a"],
     "--artefacts: only for 'evtools bench rehydrate'"),
    (["audit"], "evtools: error: audit: the following arguments are required: source "
                "(`evtools audit --help` lists the options)"),
    (["rehydrate", "x.jsonl", "--bogus"], "evtools: error: rehydrate: unrecognized arguments: "
                                          "--bogus (`evtools rehydrate --help` lists the "
                                          "options)"),
    (["dialect", "roundtrip", "x.json", "--dialect", "go", "--bogus", "1"],
     "evtools: error: dialect roundtrip: unrecognized arguments: --bogus 1 "
     "(`evtools dialect roundtrip --help` lists the options)"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, args: list[str],
                                               message: str) -> None:
    (tmp_path / "bad.json").write_text("not json")
    (tmp_path / "truncated.json").write_text('{"statuses": [{"id": 1}, {"id":')
    (tmp_path / "dir.jsonl").mkdir()
    (tmp_path / "existing.jsonl").write_bytes(
        b'{"stream": "order-1", "version": 0, "type": "T", "data": {}}\n')
    paths = {"missing": str(tmp_path / "missing.json"), "bad": str(tmp_path / "bad.json"),
             "truncated": str(tmp_path / "truncated.json"), "tmp": str(tmp_path),
             "existing": str(tmp_path / "existing.jsonl")}
    before = sorted(p.name for p in tmp_path.iterdir())
    out = run(*[a.format(**paths) for a in args], cwd=Path(__file__).parents[1])
    assert out.returncode == 2
    err = out.stderr.decode()
    assert message in err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created


def test_generate_to_jsonl_keeps_delivery_faults(tmp_path: Path) -> None:
    target = tmp_path / "w.jsonl"
    assert main(["generate", "--store", str(target), "--events", "300",
                 "--faults", "gap=0.05", "-q"]) == 0
    assert main(["rehydrate", str(target), "--strict", "--format", "json",
                 "--out", str(tmp_path / "r.json")]) == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["violations"] and {v["kind"] for v in report["violations"]} == {"gap"}


@pytest.mark.parametrize("args", [
    ["audit", "{db}", "--dialect", "go"],
    ["copy", "{db}", "{tmp}/out.jsonl"],
    ["schema", "infer", "{db}", "--out", "{tmp}/schemas"],
    ["schema", "check", "{db}", "--registry", "evtools.orders:order_registry"],
    ["rehydrate", "{db}"],
    ["rehydrate", "{db}", "--snapshot-every", "5", "--strict"],
    ["profile", "cpu", "{db}", "--out", "{tmp}/profiles"],
    ["profile", "memory", "{db}", "--out", "{tmp}/profiles"],
    ["report", "--quick", "--source", "{db}", "--only", "02", "--out", "{tmp}/r"],
])
def test_commands_that_read_never_create_a_missing_store(tmp_path: Path,
                                                         args: list[str]) -> None:
    missing = tmp_path / "missing.db"
    out = run(*[a.format(db=f"sqlite:///{missing}", tmp=tmp_path) for a in args],
              cwd=Path(__file__).parents[1])
    assert out.returncode == 2, out.stderr
    assert "no such database file" in out.stderr.decode()
    assert list(tmp_path.iterdir()) == []


def test_generate_writes_only_into_an_empty_store(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db, export = f"sqlite:///{tmp_path / 'g.db'}", tmp_path / "g.jsonl"
    assert main(["generate", "--store", db, "--events", "300", "--seed", "1",
                 "--faults", "snapshot_conflict=0.2", "-q"]) == 0
    said = capsys.readouterr().err
    snapshots = int(re.search(r"and (\d+) snapshots", said).group(1))  # type: ignore[union-attr]
    assert snapshots > 0 and "wrote 300 events in " in said  # order events, then snapshots
    assert main(["generate", "--store", db, "--events", "300", "--seed", "2", "-q"]) == 2
    assert "already holds events" in capsys.readouterr().err
    assert main(["generate", "--store", str(export), "--events", "50", "-q"]) == 0
    content = export.read_bytes()
    assert main(["generate", "--store", str(export), "--events", "50", "--seed", "2"]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert export.read_bytes() == content


def test_generate_refuses_a_negative_seed_before_creating_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "new" / "e.db"
    assert main(["generate", "--store", f"sqlite:///{db}", "--seed", "-3", "-q"]) == 2
    assert "--seed must be >= 0, got -3" in capsys.readouterr().err
    assert not db.exists() and not db.parent.exists()


def test_rehydrate_snapshot_every_writes_snapshots_the_next_run_starts_from(
        tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["generate", "--store", db, "--events", "400", "--seed", "5", "-q"]) == 0
    reports = []
    for i in range(2):
        out = tmp_path / f"r{i}.json"
        assert main(["rehydrate", db, "--snapshot-every", "3", "--strict", "--format", "json",
                     "--out", str(out)]) == 0
        reports.append(json.loads(out.read_text()))
    first, second = reports
    assert first["events_seen"] == 400
    assert second["events_seen"] < first["events_seen"]  # replay starts after snapshots
    assert first["streams"] == second["streams"]
    state = {r["stream"]: r["state_hash"] for r in first["stream_results"]}
    assert len(state) == first["streams"] > 0
    assert {r["stream"]: r["state_hash"] for r in second["stream_results"]} == state
    written = sum(r["snapshot_written"] is not None for r in first["stream_results"])
    assert written > 0
    table = tmp_path / "t.txt"
    assert main(["rehydrate", db, "--out", str(table)]) == 0
    assert f"; {written} started from a snapshot, 0 snapshots written" in table.read_text()


def test_audit_reads_a_parquet_export_as_events(store: str, tmp_path: Path) -> None:
    target = tmp_path / "export.parquet"
    assert main(["copy", store, str(target), "-q"]) == 0
    out = run("audit", str(target), "--dialect", "go", "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert any(r["path"] == "/order_id" and r["value_changed"] > 0 for r in rows)


def test_audit_table_out_creates_its_folder(store: str, tmp_path: Path) -> None:
    target = tmp_path / "new" / "audit.txt"
    assert main(["audit", store, "--dialect", "go", "--out", str(target)]) == 0
    assert "/order_id" in target.read_text()


def test_rehydrate_says_when_there_is_nothing_to_rebuild(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert main(["rehydrate", str(empty)]) == 0
    assert "has no Order streams (names starting 'order-')" in capsys.readouterr().err
    assert main(["rehydrate", str(empty), "--strict"]) == 1  # a gate that checked nothing
    assert "under --strict, rebuilding nothing is a failure" in capsys.readouterr().err


CART_MODULE = """
import msgspec
from evtools import Aggregate, Registry, handles, invariant
from evtools.scalars import Int64

registry = Registry()


@registry.register("ItemPut")
class ItemPut(msgspec.Struct, frozen=True):
    cart_id: Int64
    sku: Int64
    quantity: int


class Cart(Aggregate):
    id_field = "cart_id"
    stream_prefix = "cart-"
    cart_id: Int64 | None = None
    items: int = 0

    @handles(ItemPut)
    def _put(self, e: ItemPut) -> None:
        self.cart_id = e.cart_id
        self.items += e.quantity

    @invariant()
    def some(self) -> bool | str:
        return self.items > 0 or "an empty cart"
"""


def test_rehydrate_rebuilds_the_users_own_aggregate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evtools.stores import NewEvent, open_store

    (tmp_path / "carts.py").write_text(CART_MODULE)
    url = f"sqlite:///{tmp_path / 'carts.db'}"
    big = 2**53 + 1
    with open_store(url) as store:
        store.append(f"cart-{big}", [NewEvent("ItemPut", json.dumps(
            {"cart_id": big, "sku": 2**62 + 7, "quantity": q}).encode()) for q in (2, 3)])
        store.append("cart-2", [NewEvent("ItemPut", b'{"cart_id": 2, "sku": 1, '
                                                    b'"quantity": 0}')])
    cart = [f"{tmp_path / 'carts.py'}:Cart", "--registry", f"{tmp_path / 'carts.py'}:registry"]
    assert main(["rehydrate", url, "--aggregate", *cart, "--format", "json",
                 "--out", str(tmp_path / "r.json")]) == 0
    done = json.loads((tmp_path / "r.json").read_text())
    assert (done["streams"], done["events_seen"]) == (2, 3), done
    assert {r["aggregate_id"] for r in done["stream_results"]} == {str(big), "2"}  # exact
    assert [v["message"] for v in done["violations"]] == ["some: an empty cart"]
    assert main(["rehydrate", url, "--aggregate", *cart, "--strict"]) == 1  # the invariant
    assert main(["rehydrate", url, "--strict"]) == 1  # Order finds no stream: a failure
    capsys.readouterr()
    assert main(["rehydrate", url, "--aggregate", f"{tmp_path / 'carts.py'}:Cart"]) == 2
    assert "needs --registry" in capsys.readouterr().err
    assert main(["rehydrate", url, "--aggregate", "evtools.orders:Currency"]) == 2
    assert "not an evtools Aggregate subclass" in capsys.readouterr().err


def _stream_names(url: str, tmp_path: Path) -> list[str]:
    report = tmp_path / "names.json"
    assert main(["rehydrate", url, "--format", "json", "--out", str(report)]) == 0
    return [r["stream"] for r in json.loads(report.read_text())["stream_results"]]


def test_a_table_out_is_a_plain_text_file_with_every_row_and_cell(
        store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = _stream_names(store, tmp_path)
    capsys.readouterr()
    target = tmp_path / "t.txt"
    assert main(["rehydrate", store, "--out", str(target)]) == 0
    assert capsys.readouterr().out == ""  # the table went to the file, not to stdout
    text = target.read_text()
    assert "\x1b[" not in text and "…" not in text
    assert len(names) > 50 and all(name in text for name in names)  # every row, whole


def test_bench_table_out_writes_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import polars as pl

    long = "typed-materialized-with-a-long-name-" * 8

    class Suite:
        def to_frame(self, full: bool = True) -> pl.DataFrame:
            return pl.DataFrame({"path": [long], "events_per_s": [123456.0]})

        def to_dict(self) -> dict[str, str]:
            return {"path": long}

    monkeypatch.setattr("evtools.profiling.run_rehydration_suite", lambda **kw: Suite())
    target = tmp_path / "bench.txt"
    assert main(["bench", "rehydrate", "--events", "100", "--out", str(target)]) == 0
    assert capsys.readouterr().out == ""
    text = target.read_text()
    assert long in text and "123,456" in text and "\x1b[" not in text


def test_piped_tables_cut_no_cell(store: str, tmp_path: Path) -> None:
    names = _stream_names(store, tmp_path)
    out = run("rehydrate", store)
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    assert "…" not in text
    assert all(name in text for name in names[:50])


@pytest.mark.parametrize("target", ["sqlite:///{tmp}/typo.db", "{tmp}/typo.jsonl"])
def test_rehydrate_snapshot_every_never_creates_a_missing_source(tmp_path: Path,
                                                                 target: str) -> None:
    out = run("rehydrate", target.format(tmp=tmp_path), "--snapshot-every", "5", "--strict")
    assert out.returncode == 2, out.stderr
    assert "typo" in out.stderr.decode() and "no such" in out.stderr.decode()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_copy_leaves_no_new_destination(tmp_path: Path) -> None:
    gaps = tmp_path / "gaps.jsonl"
    assert main(["generate", "--store", str(gaps), "--events", "300",
                 "--faults", "gap=0.05", "-q"]) == 0
    for dest in ("new.db", "sqlite:///{tmp}/new2.db", "new.jsonl", "new.parquet"):
        out = run("copy", str(gaps), dest.format(tmp=tmp_path), "-q", cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert "nothing was copied" in out.stderr.decode()
        assert [p.name for p in tmp_path.iterdir()] == ["gaps.jsonl"], dest
    # a destination that was there before a failed copy stays
    kept = tmp_path / "kept.jsonl"
    kept.write_bytes(gaps.read_bytes().split(b"\n", 1)[0] + b"\n")
    assert run("copy", str(gaps), str(kept), "-q").returncode == 2
    assert kept.read_bytes() == gaps.read_bytes().split(b"\n", 1)[0] + b"\n"


def test_profile_cpu_rate_and_repeat(store: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[dict[str, object]] = []

    class Profile:
        def __init__(self) -> None:
            self.details = {"repeat": 7}

        def to_dict(self) -> dict[str, str]:
            return {}

    def fake(source: str, **kw: object) -> Profile:
        calls.append(kw)
        return Profile()

    monkeypatch.setattr("evtools.profiling.profile_rehydration", fake)
    out = str(tmp_path / "p")
    assert main(["profile", "cpu", store, "--rate", "50", "--repeat", "3", "--out", out,
                 "-q"]) == 0
    assert calls[-1]["rate"] == 50 and calls[-1]["repeat"] == 3
    # by default, profiling chooses (enough runs that a small store is not mostly
    # interpreter start-up), and the CLI says how many ran
    assert main(["profile", "cpu", store, "--out", out]) == 0
    assert calls[-1]["repeat"] is None
    assert "profiled 7 runs of the path" in capsys.readouterr().err
    assert main(["profile", "memory", store, "--out", out]) == 0
    assert "repeat" not in calls[-1] and "rate" not in calls[-1]
    assert main(["profile", "memory", store, "--repeat", "3"]) == 2
    assert main(["profile", "cpu", store, "--rate", "0"]) == 2
    assert len(calls) == 3


def test_profile_says_how_many_events_ran_and_when_fewer_than_asked(
        store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    class Profile:
        def __init__(self, details: dict[str, Any]) -> None:
            self.details = details

        def to_dict(self) -> dict[str, str]:
            return {}

    details: dict[str, Any] = {}
    monkeypatch.setattr("evtools.profiling.profile_rehydration",
                        lambda source, **kw: Profile(details))
    out = str(tmp_path / "p")
    # runs capped at 10,000 over 11 events: 110,000 events, not "about 200,000"
    details.update(repeat=10_000, events_requested=1, events=11)
    assert main(["profile", "cpu", store, "--events", "1", "--out", out]) == 0
    err = capsys.readouterr().err
    assert "profiled 10,000 runs of the path (110,000 events in all" in err
    assert "fewer than" not in err
    details.clear()
    details.update(events_requested=10**9, events=600)
    assert main(["profile", "memory", store, "--events", str(10**9), "--out", out]) == 0
    assert "holds 600 events in its order streams, fewer than the 1,000,000,000 asked: all " \
        "of them were profiled" in capsys.readouterr().err


def test_rehydrate_snapshot_every_into_parquet_says_what_can_take_them(
        store: str, tmp_path: Path) -> None:
    target = tmp_path / "export.parquet"
    assert main(["copy", store, str(target), "-q"]) == 0
    content = target.read_bytes()
    out = run("rehydrate", str(target), "--snapshot-every", "3")
    assert out.returncode == 2
    err = out.stderr.decode()
    assert "snapshots cannot be written into a Parquet export" in err
    assert "SQLite" in err and "mode=" not in err and err.count("\n") == 1
    assert target.read_bytes() == content


def test_rehydrate_help_says_what_snapshot_every_writes(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["rehydrate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "every N events" not in text
    assert "advanced N or more versions past its latest snapshot" in text
    assert "at its head" in text


def test_clock_skew_sets_the_tolerance(tmp_path: Path) -> None:
    from evtools.rehydration import DEFAULT_CLOCK_SKEW

    skewed = tmp_path / "skewed.jsonl"
    assert main(["generate", "--store", str(skewed), "--events", "400", "--seed", "2",
                 "--faults", "clock_skew=0.05", "-q"]) == 0
    report = tmp_path / "r.json"
    assert main(["rehydrate", str(skewed), "--strict", "--format", "json",
                 "--out", str(report)]) == 1
    assert set(json.loads(report.read_text())["violation_counts"]) == {"clock_skew"}
    # injected skews are 10 min to 2 h: a tolerance of a day takes them all
    assert main(["rehydrate", str(skewed), "--strict", "--clock-skew", "86400",
                 "--format", "json", "--out", str(report)]) == 0
    help_text = run("rehydrate", "--help").stdout.decode()
    assert f"(default {DEFAULT_CLOCK_SKEW.total_seconds():g})" in " ".join(help_text.split())


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "abc", "1e30"])
def test_bad_clock_skew_is_a_usage_error(tmp_path: Path, value: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "e.jsonl"
    events.write_bytes(b'{"stream": "order-1", "version": 0, "type": "T", "data": {}}\n')
    assert main(["rehydrate", str(events), f"--clock-skew={value}"]) == 2
    assert "--clock-skew" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [
    ["rehydrate", "{store}", "--format", "json"],
    ["rehydrate", "{store}"],
    ["audit", "{store}", "--dialect", "python"],
    ["audit", "{store}", "--dialect", "python", "--format", "csv"],
])
def test_a_failed_write_names_the_file(store: str, args: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main([a.format(store=store) for a in args] + ["--out", "/dev/full"]) == 2
    err = capsys.readouterr().err
    assert "cannot write /dev/full: No space left on device" in err
    assert err.count("\n") == 1


def test_generate_counts_the_same_way_into_a_store_and_a_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    said = []
    for target in (f"sqlite:///{tmp_path / 'g.db'}", str(tmp_path / "g.jsonl")):
        assert main(["generate", "--store", target, "--events", "500", "--seed", "4",
                     "--faults", "snapshot_conflict=0.2", "-q"]) == 0
        said.append(capsys.readouterr().err.replace(target, "TARGET"))
    assert said[0] == said[1]
    assert re.search(r"wrote 500 events in [\d,]+ streams and [\d,]+ snapshots to TARGET",
                     said[0])


def test_a_reader_that_goes_away_leaves_the_exit_status_as_it_is(tmp_path: Path) -> None:
    faulty = tmp_path / "skewed.jsonl"
    assert main(["generate", "--store", str(faulty), "--events", "3000", "--seed", "1",
                 "--faults", "clock_skew=0.01", "-q"]) == 0
    clean = tmp_path / "clean.jsonl"
    assert main(["generate", "--store", str(clean), "--events", "3000", "--seed", "1",
                 "-q"]) == 0
    for source, status in ((faulty, 1), (clean, 0)):  # --strict: 1 = violations found
        args = [sys.executable, "-m", "evtools", "rehydrate", str(source), "--strict",
                "--format", "json"]  # more than a pipe holds
        with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None and proc.stdout.read(5)
            proc.stdout.close()  # `| head -c 5`
            proc.wait(timeout=120)
            assert proc.returncode == status, proc.stderr.read() if proc.stderr else ""


def test_schema_check_whose_reader_goes_away_still_fails_on_drift(tmp_path: Path) -> None:
    """`schema check --fail-on-drift | head` had exited 0: its writer let the broken pipe
    reach main, which can only say 0 by then."""
    from evtools.datagen import write_workload
    from evtools.stores import open_store

    drifted = f"sqlite:///{tmp_path / 'drifted.db'}"
    with open_store(drifted) as store:
        write_workload(store, 3000, seed=5, faults="corrupt=0.3,unknown_type=0.3")
    for fmt in ("json", "csv", "table"):
        args = [sys.executable, "-m", "evtools", "schema", "check", drifted, "--registry",
                "evtools.orders:order_registry", "--fail-on-drift", "--format", fmt]
        with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            proc.stdout.close()  # `| head -c 0`: gone before the first line
            proc.wait(timeout=120)
            assert proc.returncode == 1, (fmt, proc.stderr.read() if proc.stderr else "")


def test_a_table_whose_reader_goes_away_is_not_an_exit() -> None:
    from evtools.cli import _console_class

    read, write = os.pipe()
    os.close(read)  # the reader has gone, as under `| head`
    with os.fdopen(write, "w") as pipe:
        console = _console_class()(file=pipe, width=100)
        for _ in range(2_000):  # more than a pipe holds
            console.print("x" * 80)  # rich's own console raises SystemExit(1) here
        assert console.quiet


# -- any command line: an answer or a one-line error, never a traceback --------------------

_SOURCES = ["w.jsonl", "w.db", "sqlite:///w.db", "missing.jsonl", "bad.jsonl", "memory:", "."]
_COMMANDS: dict[str, list[str]] = {  # positionals (copy: SOURCE, then DEST from --dest)
    "generate": [], "audit": _SOURCES, "rehydrate": _SOURCES, "copy": _SOURCES,
    "dialect roundtrip": ["doc.jsonl", "missing.jsonl", "bad.jsonl"],
    "codegen": ["schema.json", "missing.json", "w.jsonl"],
    "schema infer": _SOURCES, "schema check": _SOURCES,
}
_OPTIONS: dict[str, list[str]] = {  # each command's options, with good and bad values
    "--store": ["new.jsonl", "new.db", "w.db", "memory:", "x"],
    "--events": ["0", "3", "40", "-1", "x", "1e999"], "--seed": ["0", "7", "-1", "x"],
    "--faults": ["gap=0.1", "duplicate=0.05,clock_skew=0.1", "gap=2", "gap=0.1,gap=0.1"],
    "--dialect": ["python", "go", "js", "pandas,polars", "nope", ""],
    "--format": ["json", "csv", "table", "x"], "--out": ["out.txt", "out/x.json", ".", ""],
    "--examples": ["0", "2", "-1"], "--stream": ["order-1", "$snapshots-order-1", "x"],
    "--snapshot-every": ["2", "0", "-1", "x"], "--clock-skew": ["0", "5", "nan", "-1"],
    "--registry-name": ["registry", "class", "1x"], "--optional": ["none", "unset", "x"],
    "--registry": ["evtools.orders:order_registry", "evtools.orders:Order", "nope:x"],
    "--dest": ["new.jsonl", "new.db", "w.db", "memory:", "bad.jsonl"],
    "--enum-max-distinct": ["1", "10", "0", "x"], "--enum-min-values": ["1", "5", "-2"],
    "--fail-on-loss": [], "--strict": [], "--fail-on-drift": [], "--verify-snapshots": [],
}
_USES = {  # (options every line has, options drawn)
    "generate": ([], ["--store", "--events", "--seed", "--faults"]),
    "audit": ([], ["--dialect", "--format", "--out", "--examples", "--fail-on-loss"]),
    "rehydrate": ([], ["--stream", "--strict", "--snapshot-every", "--clock-skew",
                       "--format", "--out", "--verify-snapshots"]),
    "copy": (["--dest"], []), "dialect roundtrip": (["--dialect"], []),
    "codegen": ([], ["--out", "--registry-name", "--optional"]),
    "schema infer": ([], ["--out", "--enum-max-distinct", "--enum-min-values"]),
    "schema check": (["--registry"], ["--format", "--fail-on-drift"]),
}


@st.composite
def _command_lines(draw: st.DrawFn) -> list[str]:
    name = draw(st.sampled_from(sorted(_COMMANDS)))
    argv = ["-q", *name.split()]
    count = draw(st.sampled_from([1, 1, 1, 1, 0, 2])) if _COMMANDS[name] else 0
    argv += [draw(st.sampled_from(_COMMANDS[name])) for _ in range(count)]
    always, drawn = _USES[name]
    for option in always + draw(st.lists(st.sampled_from(drawn), max_size=3)
                                if drawn else st.just([])):
        values = _OPTIONS[option]
        if option == "--dest":  # copy's second positional
            argv.append(draw(st.sampled_from(values)))
        else:
            argv += [option, *([draw(st.sampled_from(values))] if values else [])]
    return argv


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-fuzz")
    for target in ("w.jsonl", "w.db"):
        assert main(["-q", "generate", "--store", str(folder / target), "--events", "40",
                     "--seed", "2"]) == 0
    (folder / "bad.jsonl").write_bytes(b'{"x": 1}\n\xff\n')
    (folder / "doc.jsonl").write_bytes(b'{"id": 9007199254740993, "n": 1.10}\n[1, 2]\n')
    (folder / "schema.json").write_text(
        '{"title": "Thing", "type": "object", "properties": {"a": {"type": "integer"}}}')
    return folder


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=_command_lines())
def test_property_any_command_line_answers_or_fails_in_one_line(
        fuzz_dir: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(fuzz_dir)
    before = set(os.listdir(fuzz_dir))
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: --help, or a usage error
        code = e.code
    err = capsys.readouterr().err
    try:
        assert code in (0, 1, 2), (argv, code, err)
        assert "Traceback" not in err, (argv, err)
        if code == 2:  # says why, in one line
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("evtools: error: "), (argv, err)
    finally:
        for name in set(os.listdir(fuzz_dir)) - before:  # what the command wrote
            path = fuzz_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def test_snapshots_a_rehydration_wrote_are_not_domain_events(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'snap.db'}"
    assert main(["-q", "generate", "--store", url, "--events", "400", "--seed", "4"]) == 0
    assert main(["-q", "rehydrate", url, "--snapshot-every", "3", "--format", "json",
                 "--out", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["streams"] > 0
    capsys.readouterr()
    assert main(["schema", "check", url, "--registry", "evtools.orders:order_registry",
                 "--fail-on-drift", "--format", "json"]) == 0, capsys.readouterr()
    assert "$snapshot" not in capsys.readouterr().out
    assert main(["-q", "schema", "infer", url, "--out", str(tmp_path / "schemas")]) == 0
    assert not [p.name for p in (tmp_path / "schemas").iterdir() if "snapshot" in p.name]
    assert main(["audit", url, "--dialect", "go", "--format", "json",
                 "--out", str(tmp_path / "a.json")]) == 0
    assert not [r for r in json.loads((tmp_path / "a.json").read_text())
                if r["path"].startswith("/state")]


def test_brackets_in_data_are_printed_as_they_are(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "br.jsonl"
    doc.write_text('{"[bold]weird": 9007199254740993, "tags[red]": [1.10]}\n')
    assert main(["audit", str(doc), "--dialect", "go"]) == 0
    out = capsys.readouterr().out
    assert "/[bold]weird" in out and "/tags[red]" in out  # rich markup would eat them
    assert main(["audit", str(doc), "--dialect", "go", "--out", str(tmp_path / "t.txt")]) == 0
    assert "/[bold]weird" in (tmp_path / "t.txt").read_text()


def test_generate_creates_the_folder_of_a_new_store(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # as the README's `--store data/delivered.jsonl` elsewhere
    for target in ("data/delivered.jsonl", "sqlite:///nested/dir/e.db", "more/e.db"):
        assert main(["-q", "generate", "--store", target, "--events", "20"]) == 0, target
    assert (tmp_path / "data" / "delivered.jsonl").stat().st_size > 0
    assert (tmp_path / "nested" / "dir" / "e.db").is_file()
    assert (tmp_path / "more" / "e.db").is_file()


def test_warnings_read_as_the_commands_own_lines() -> None:
    import logging

    from evtools.cli import _LogFormat

    def line(level: int) -> str:
        return _LogFormat().format(logging.LogRecord(
            "evtools.profiling", level, __file__, 1, "the %s path is left out",
            ("eventsourcing",), None))

    assert line(logging.WARNING) == "evtools: warning: the eventsourcing path is left out"
    assert line(logging.INFO) == "INFO evtools.profiling: the eventsourcing path is left out"


def test_no_progress_bar_when_stderr_is_not_a_terminal(
        store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # no -q: a log file or a pipe gets the command's own lines, not a bar's frames
    assert main(["generate", "--store", str(tmp_path / "g.db"), "--events", "30"]) == 0
    assert main(["copy", store, str(tmp_path / "c.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "generating" not in err and "copying" not in err and "━" not in err, err
    assert err.startswith("wrote 30 events in ") and "copied " in err


@pytest.mark.parametrize("args", [
    ["--store", "sqlite:///{tmp}/new/g.db", "--faults", "gap=0.01"],  # refused faults
    ["--store", "sqlite:///{tmp}/new/deeper/g.db?mode=ro"],  # a URL open_store refuses
    ["--store", "{tmp}/new/g.db", "--faults", "reorder=0.01"],
])
def test_a_refused_generate_creates_no_folder(tmp_path: Path, args: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "generate", "--events", "5",
                 *[a.format(tmp=tmp_path) for a in args]]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", ["new/g.jsonl", "sqlite:///new/g.db", "g.parquet"])
def test_an_interrupted_generate_leaves_no_partial_store(
        tmp_path: Path, target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from evtools import datagen

    real = datagen.Workload.__iter__

    def interrupted(self: datagen.Workload) -> Iterator[object]:
        for i, event in enumerate(real(self)):
            if i == 50:
                raise KeyboardInterrupt  # Ctrl-C halfway
            yield event

    monkeypatch.setattr(datagen.Workload, "__iter__", interrupted)
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "generate", "--store", target, "--events", "300"]) == 130
    assert list(tmp_path.iterdir()) == []  # a rerun is not refused as "already holds events"
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "generate", "--store", target, "--events", "300"]) == 0


def test_generate_takes_delivery_faults_into_a_jsonl_export_in_capitals(
        tmp_path: Path) -> None:
    target = tmp_path / "EVENTS.JSONL"
    assert main(["-q", "generate", "--store", str(target), "--events", "300",
                 "--faults", "gap=0.05"]) == 0
    assert main(["rehydrate", str(target), "--strict", "--format", "json",
                 "--out", str(tmp_path / "r.json")]) == 1
    assert {v["kind"] for v in json.loads((tmp_path / "r.json").read_text())["violations"]
            } == {"gap"}


def test_audit_of_a_jsonl_export_leaves_snapshots_out(store: str, tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    assert main(["-q", "copy", store, str(export)]) == 0
    assert main(["-q", "rehydrate", str(export), "--snapshot-every", "3", "--format", "json",
                 "--out", str(tmp_path / "r.json")]) == 0
    assert b'"$snapshot"' in export.read_bytes()  # snapshots in the export, as copy keeps
    audits = []
    for source in (store, str(export)):
        out = tmp_path / "a.json"
        assert main(["audit", source, "--dialect", "go", "--format", "json",
                     "--out", str(out)]) == 0
        audits.append(json.loads(out.read_text()))
    assert not [r["path"] for r in audits[1] if r["path"].startswith("/state")]
    assert audits[1] == audits[0]  # the same events, from the store or its export


def test_bench_help_says_its_default_output_and_which_benchmark_each_option_is_for(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = " ".join(capsys.readouterr().out.split())
    assert "benchmarks, results as JSON" not in listing  # a table unless --format json
    assert "results as a table or JSON" in listing
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--events EVENTS rehydrate:", "--device DEVICE inference:",
                   "--batch-sizes BATCH_SIZES inference:"):
        assert option in text


# -- found by a review: the help's example, an empty store, verifying snapshots --------------

def test_generate_help_examples_run_as_written(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The --faults example had named gap and reorder, which the default SQLite store
    refuses (exit 2); the export's example is given with the export."""
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    (plain,) = re.findall(r"e\.g\. ([\w=.,]+)", text)
    assert main(["generate", "--store", f"sqlite:///{tmp_path / 'g.db'}", "--events", "300",
                 "--faults", plain, "-q"]) == 0, capsys.readouterr().err
    (export,) = re.findall(r"--store events\.jsonl --faults ([\w=.,]+)", text)
    assert main(["generate", "--store", str(tmp_path / "events.jsonl"), "--events", "300",
                 "--faults", export, "-q"]) == 0, capsys.readouterr().err


def test_rehydrate_says_an_empty_store_is_empty(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """It had suggested that --aggregate names another aggregate."""
    from evtools.stores import open_store

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with open_store(url, create=True):
        pass
    assert main(["rehydrate", url]) == 0
    err = capsys.readouterr().err
    assert "has no Order streams (names starting 'order-')" in err
    assert "it holds no event streams at all" in err and "--aggregate" not in err
    (tmp_path / "carts.py").write_text(CART_MODULE)
    cart = [f"{tmp_path / 'carts.py'}:Cart", "--registry", f"{tmp_path / 'carts.py'}:registry"]
    orders = f"sqlite:///{tmp_path / 'orders.db'}"
    assert main(["generate", "--store", orders, "--events", "50", "-q"]) == 0
    assert main(["rehydrate", orders, "--aggregate", *cart]) == 0  # orders, no carts
    err = capsys.readouterr().err
    assert "has no Cart streams (names starting 'cart-')" in err
    assert "--aggregate names another aggregate" in err and "no event streams" not in err


def test_rehydrate_verify_snapshots_replays_from_zero_and_reports_a_wrong_snapshot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import msgspec

    from evtools.orders import Order, order_registry
    from evtools.rehydration import rehydrate, take_snapshot, write_snapshot
    from evtools.stores import open_store

    url = f"sqlite:///{tmp_path / 'v.db'}"
    assert main(["generate", "--store", url, "--events", "200", "--seed", "5", "-q"]) == 0
    with open_store(url) as st:
        name = next(s for s in st.list_streams()
                    if not s.startswith("snapshot-") and (st.stream_version(s) or 0) >= 3)
        events = list(st.read_stream(name))
        at = len(events) - 1
        before = take_snapshot(rehydrate(events[:at], order_registry(), Order).aggregate)
        # the state of the version before, a valid hash, the right event id: only a
        # replay from zero tells it from the right one
        write_snapshot(st, msgspec.structs.replace(before, version=at,
                                                   last_event_id=events[at].id))
    out = tmp_path / "trusted.json"
    assert main(["rehydrate", url, "--stream", name, "--strict", "--format", "json",
                 "--out", str(out)]) == 0
    trusted = json.loads(out.read_text())
    assert trusted["stream_results"][0]["snapshot_version"] == at
    out = tmp_path / "verified.json"
    assert main(["rehydrate", url, "--stream", name, "--verify-snapshots", "--strict",
                 "--format", "json", "--out", str(out)]) == 1
    verified = json.loads(out.read_text())
    assert [(v["kind"], v["version"]) for v in verified["violations"]] == [
        ("snapshot_conflict", at)]
    assert verified["events_seen"] == at + 1  # read whole, from 0
    with pytest.raises(SystemExit):
        main(["rehydrate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--verify-snapshots" in text and "replay the stream from version 0" in text
