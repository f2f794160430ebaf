"""The ``evtools`` command: the user-facing contract of DESIGN.md (exit codes, formats)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from evtools.cli import main


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
    (["generate", "--store", "{tmp}/no/dir/g.jsonl", "--events", "5"], "No such file"),
    (["rehydrate", "{tmp}/g.jsonl", "--snapshot-every", "-1"], "--snapshot-every must be"),
    (["rehydrate", "{existing}", "--format", "json", "--out", "{tmp}/dir.jsonl"],
     "Is a directory"),
    (["report", "--only", "zzz", "--out", "{tmp}/r"], "no notebook in notebooks matches zzz"),
    (["rehydrate", "{tmp}/dir.jsonl"], "a directory, not a file"),
    (["rehydrate", "sqlite:///{tmp}/dir.jsonl"], "a directory, not a database file"),

    (["audit"], "the following arguments are required"),
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
    assert main(["rehydrate", str(empty), "--strict"]) == 0
    assert "has no Order streams (names starting 'order-')" in capsys.readouterr().err
