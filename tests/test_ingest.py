"""Ingest: contract round-trip, formats, file-level rejections, duplicates and conflicts,
reconciliation, idempotent re-ingest."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.ingest import ingest
from pipelines.warehouse import Warehouse
from schemas.contract import load_contract
from tests.conftest import FIXED_TIME, dispensing, make_cfg, write_csv, write_jsonl


def log_rows(wh: Path, cols: str = "*") -> list[tuple]:
    files = sorted(wh.glob("log/events/batch=*/*.parquet"))
    if not files:
        return []
    lst = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    return duckdb.sql(f"SELECT {cols} FROM read_parquet({lst}) ORDER BY ingest_seq").fetchall()


def quarantine_rows(wh: Path) -> list[tuple]:
    files = sorted(wh.glob("quarantine/batch=*.parquet"))
    if not files:
        return []
    lst = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    return duckdb.sql(
        f"SELECT source_file, source_row, reasons, conflict_with, original "
        f"FROM read_parquet({lst}) ORDER BY batch_id, source_row"
    ).fetchall()


FULL_ROW = {
    "event_id": "x1",
    "patient_id": " P-001 ",
    "event_type": "Dispensed",
    "occurred_at": "2024-01-05T23:30:00-02:00",
    "recorded_at": "2024-01-06",
    "source": "pharm",
    "drug": " LeveTIRAcetam ",
    "drug_code": "n03ax14",
    "drug_system": "ATC",
    "drug_class": "ASM",
    "condition": "Epilepsy",
    "dose": "1000.5",
    "dose_unit": "MG",
    "days_supply": "30.0",
    "quantity": "60",
    "route": "Oral",
    "regimen": "Mono",
    "cycle": "",
    "reason": "",
    "site": "north",
    "Batch Note": "late",
}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_contract_round_trip(fmt: str, tmp_path: Path) -> None:
    """What goes in comes out normalised, typed, in UTC, with unknown columns in `extra`."""
    cfg = make_cfg(tmp_path / "wh")
    if fmt == "csv":
        path = write_csv(tmp_path / "in.csv", [FULL_ROW])
    elif fmt == "jsonl":
        path = write_jsonl(tmp_path / "in.jsonl", [{k: v for k, v in FULL_ROW.items() if v != ""}])
    else:
        path = tmp_path / "in.parquet"
        pq.write_table(pa.table({k: [v or None] for k, v in FULL_ROW.items()}), path)
    res = ingest([path], cfg, ingest_time=FIXED_TIME)
    assert (res.accepted, res.quarantined) == (1, 0), res.files[0].to_dict()
    files = sorted((tmp_path / "wh").glob("log/events/*/*.parquet"))
    table = pq.read_table(files[0])

    def names_types(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
        return [(f.name, f.type) for f in schema]

    assert names_types(table.schema) == names_types(load_contract().storage_schema())
    row = table.to_pylist()[0]
    assert row["patient_id"] == "P-001"
    assert row["event_type"] == "dispensed" and row["family"] == "therapy"
    assert str(row["occurred_at"]) == "2024-01-06 01:30:00"  # -02:00 converted to UTC
    assert row["drug"] == "levetiracetam" and row["drug_code"] == "N03AX14"
    assert row["drug_system"] == "atc" and row["dose_unit"] == "mg"
    assert row["dose"] == 1000.5 and row["days_supply"] == 30 and row["cycle"] is None
    assert json.loads(row["extra"]) == {"site": "north", "Batch Note": "late"}
    assert row["source_row"] == (2 if fmt == "csv" else 1)
    assert row["recorded_at_imputed"] is False and row["batch_id"] == 1 and row["ingest_seq"] == 1


def test_missing_recorded_at_and_event_id_are_derived(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "wh")
    rows = [{"patient_id": "P1", "event_type": "died", "occurred_at": "2024-02-01"}]
    p1 = write_csv(tmp_path / "a.csv", rows)
    p2 = write_csv(
        tmp_path / "b.csv",
        rows + [{"patient_id": "P1", "event_type": "died", "occurred_at": "2024-02-02"}],
    )
    ingest([p1], cfg, ingest_time=FIXED_TIME)
    ingest([p2], cfg, ingest_time=FIXED_TIME)
    got = log_rows(tmp_path / "wh", "event_id, event_id_derived, recorded_at, recorded_at_imputed")
    assert len(got) == 2  # the identical row in b.csv is the same event (duplicate)
    assert all(r[0].startswith("h") and r[1] and r[3] for r in got)
    assert str(got[0][2]) == "2025-01-15 12:00:00"
    man = Warehouse(tmp_path / "wh").committed_manifests()
    assert man[1]["totals"]["duplicates"] == 1


def test_malformed_csv_lines_are_quarantined_with_line_numbers(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "wh", quality={"mostly": 0.5})
    lines = ["event_id,patient_id,event_type,occurred_at,drug,days_supply"]
    for i in range(1, 11):
        lines.append(f"d{i},P1,dispensed,2024-01-{i:02d},levetiracetam,30")
    lines[4] = "d4,P1,dispensed,2024-01-04,levetiracetam,30,EXTRA,FIELDS"  # line 5
    lines[8] = "d8,P1,dispensed,2024-13-45,levetiracetam,30"  # line 9: bad date
    p = tmp_path / "in.csv"
    p.write_text("\n".join(lines) + "\n")
    res = ingest([p], cfg, ingest_time=FIXED_TIME)
    f = res.files[0]
    assert (f.rows_read, f.accepted, f.quarantined, f.malformed) == (10, 8, 2, 1)
    q = quarantine_rows(tmp_path / "wh")
    assert [(r[1], r[2]) for r in q] == [
        (5, ["malformed_row"]),
        (9, ["missing_occurred_at", "unparseable_occurred_at"]),
    ]
    assert "EXTRA" in q[0][4]
    # rows after the malformed line keep their true line numbers
    got = {e: r for e, r in log_rows(tmp_path / "wh", "event_id, source_row")}
    assert got["d9"] == 10 and got["d3"] == 4


def test_jsonl_invalid_lines_quarantined_blank_lines_kept_for_numbering(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "wh", quality={"mostly": 0.5})
    p = tmp_path / "in.jsonl"
    p.write_text(json.dumps(dispensing(1)) + "\n\nnot json\n" + json.dumps(dispensing(2)) + "\n")
    res = ingest([p], cfg, ingest_time=FIXED_TIME)
    assert (res.rows_read, res.accepted, res.quarantined) == (3, 2, 1)
    assert quarantine_rows(tmp_path / "wh")[0][1] == 3
    assert [r[0] for r in log_rows(tmp_path / "wh", "source_row")] == [1, 4]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_line_longer_than_the_limit_is_quarantined_and_the_rest_read(
    fmt: str, tmp_path: Path
) -> None:
    cfg = make_cfg(tmp_path / "wh", ingest={"max_line_bytes": 2048}, quality={"mostly": 0.5})
    rows = [dispensing(i) for i in range(1, 6)]
    rows[1]["note"] = "x" * 5000  # record 2: over the 2,048-byte limit
    for r in rows:
        r.setdefault("note", "short")
    p = tmp_path / f"in.{fmt}"
    (write_csv if fmt == "csv" else write_jsonl)(p, rows)
    res = ingest([p], cfg, ingest_time=FIXED_TIME)
    f = res.files[0]
    assert (f.rows_read, f.accepted, f.quarantined, f.malformed) == (5, 4, 1, 1)
    header = 1 if fmt == "csv" else 0
    q = quarantine_rows(tmp_path / "wh")
    assert [(r[1], r[2]) for r in q] == [(2 + header, ["malformed_row"])]
    assert "LINE SIZE OVER MAXIMUM" in q[0][3]
    # the records after it keep their true line numbers
    got = [r[0] for r in log_rows(tmp_path / "wh", "source_row")]
    assert got == [1 + header, 3 + header, 4 + header, 5 + header]
    # row numbers keep one type whether or not DuckDB rejected lines (its own are UBIGINT)
    files = sorted((tmp_path / "wh").glob("quarantine/batch=*.parquet"))
    assert str(pq.read_schema(files[0]).field("source_row").type) == "int64"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_line_not_in_utf8_is_quarantined_and_the_rest_read(fmt: str, tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "wh", quality={"mostly": 0.5})
    p = tmp_path / f"in.{fmt}"
    (write_csv if fmt == "csv" else write_jsonl)(p, [dispensing(i) for i in range(1, 5)])
    lines = p.read_bytes().splitlines(keepends=True)
    header = 1 if fmt == "csv" else 0
    lines[header + 1] = lines[header + 1].replace(b"P1", b"caf\xe9")  # record 2: Latin-1
    p.write_bytes(b"".join(lines))
    res = ingest([p], cfg, ingest_time=FIXED_TIME)
    f = res.files[0]
    assert (f.rows_read, f.accepted, f.quarantined, f.malformed) == (4, 3, 1, 1)
    q = quarantine_rows(tmp_path / "wh")
    assert [(r[1], r[2]) for r in q] == [(2 + header, ["malformed_row"])]
    assert "INVALID ENCODING" in q[0][3]
    assert [r[0] for r in log_rows(tmp_path / "wh", "source_row")] == [
        1 + header,
        3 + header,
        4 + header,
    ]


@pytest.mark.parametrize(
    "content,code",
    [
        ("", "empty_file"),
        ("event_id,patient_id,event_type,occurred_at\n", "empty_file"),
        ("event_id,patient_id,occurred_at\ne1,P1,2024-01-01\n", "missing_required_column"),
        ("a,a,b\n1,2,3\n", "bad_header"),
    ],
)
def test_file_level_failures_reject_the_file_with_a_message(
    tmp_path: Path, content: str, code: str
) -> None:
    cfg = make_cfg(tmp_path / "wh")
    p = tmp_path / "bad.csv"
    p.write_text(content)
    good = write_csv(tmp_path / "good.csv", [dispensing(1)])
    res = ingest([p, good], cfg, ingest_time=FIXED_TIME)
    bad = next(f for f in res.files if f.path.endswith("bad.csv"))
    assert bad.status == "rejected" and code in bad.reasons and bad.message
    assert not res.gate_passed and res.accepted == 1  # the good file still lands


def test_csv_files_read_together_number_and_reject_as_each_read_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's CSV files are parsed at once, one thread each (sources.parse_csvs): rejected
    files, malformed lines, quarantined originals and line numbers come out as when each file
    is the only one of its batch (parsed by load_raw on both threads)."""
    import pipelines.ingest.core as core

    seen: list[dict] = []
    real = core.parse_csvs

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = real(*args, **kwargs)
        seen.append(out)
        return out

    monkeypatch.setattr(core, "parse_csvs", spy)
    inputs = tmp_path / "in"
    a = write_csv(inputs / "a.csv", [dispensing(i, patient=f"P{i % 50}") for i in range(3000)])
    lines = a.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].rstrip(b"\r\n") + b",EXTRA,FIELDS\r\n"  # line 5: too many fields
    lines[2000] = lines[2000].replace(b"levetiracetam", b"caf\xe9")  # line 2001: not UTF-8
    a.write_bytes(b"".join(lines))
    b = write_csv(
        inputs / "b.csv", [dispensing(i, patient=f"Q{i % 50}") for i in range(3000, 5000)]
    )
    c = inputs / "c.csv"
    c.write_text("a,a,b\n1,2,3\n")  # duplicate column names: rejected before parsing
    e = inputs / "e.csv"
    e.write_text("event_id,patient_id,event_type,occurred_at\n")  # header only: rejected after
    files = [a, b, c, e]
    cfg = make_cfg(tmp_path / "together", engine={"threads": 2}, quality={"mostly": 0.5})
    together = ingest(files, cfg, ingest_time=FIXED_TIME)
    assert len(seen) == 1 and sorted(seen[0]) == ["raw_0", "raw_1", "raw_2", "raw_3"]
    assert seen[0]["raw_2"].rejected is not None, "rejected before the parallel parse"
    assert seen[0]["raw_0"].rejected is None and seen[0]["raw_1"].rejected is None
    alone_wh = tmp_path / "alone"
    alone = [
        ingest(
            [f],
            make_cfg(alone_wh, engine={"threads": 2}, quality={"mostly": 0.5}),
            ingest_time=FIXED_TIME,
        )
        for f in files
    ]
    # a lone file is parsed by load_raw (only a rejection is passed on)
    assert all(v.rejected is not None for x in seen[1:] for v in x.values())

    def status(files_):  # type: ignore[no-untyped-def]
        return sorted(
            (f.path, f.status, sorted(f.reasons or {}), f.rows_read, f.malformed) for f in files_
        )

    assert status(together.files) == status([f for r in alone for f in r.files])
    assert status(together.files)[2][1:3] == ("rejected", ["bad_header"])
    assert status(together.files)[3][1:3] == ("rejected", ["empty_file"])
    q_together, q_alone = quarantine_rows(tmp_path / "together"), quarantine_rows(alone_wh)
    assert sorted(q_together) == sorted(q_alone)
    assert sorted((r[0], r[1], r[2]) for r in q_together) == [
        (str(a), 5, ["malformed_row"]),
        (str(a), 2001, ["malformed_row"]),
    ]
    cols = "event_id, source_file, source_row"
    logged = log_rows(tmp_path / "together", cols)
    assert sorted(logged) == sorted(log_rows(alone_wh, cols))
    assert len(logged) == 4998
    # each event's source_row is its line in its file (header = line 1)
    line_of = {
        (str(f), ln.split(b",")[0].decode("utf-8", "replace")): n
        for f in (a, b)
        for n, ln in enumerate(f.read_bytes().splitlines(), start=1)
    }
    assert all(line_of[(src, eid)] == row for eid, src, row in logged)


def test_undecodable_file_is_rejected_not_crashed(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "wh")
    p = tmp_path / "latin1.csv"
    p.write_bytes(b"event_id,patient_id,event_type,occurred_at\n\xff\xfe\x00\x01,\xe9,\xff,\xff\n")
    res = ingest([p], cfg, ingest_time=FIXED_TIME)
    f = res.files[0]
    assert f.reconciled
    assert f.status in ("rejected", "gate_failed")


def test_conflicting_event_id_is_quarantined_with_both_versions(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "wh")
    a = write_csv(tmp_path / "a.csv", [dispensing(1), dispensing(2)])
    b = write_csv(
        tmp_path / "b.csv",
        [
            dispensing(1),
            dispensing(2, days_supply=90),
            dispensing(3),
            dispensing(3, days_supply=60),
        ],
    )
    ingest([a], cfg, ingest_time=FIXED_TIME)
    res = ingest(
        [b],
        cfg,
        ingest_time=FIXED_TIME,
    )
    f = res.files[0]
    assert (f.rows_read, f.accepted, f.duplicates, f.quarantined, f.conflicts) == (4, 1, 1, 2, 2)
    q = quarantine_rows(tmp_path / "wh")
    refs = sorted(r[3] for r in q)
    assert refs[0] == "batch 1 ingest_seq 2"  # d2 conflicts with the stored version
    assert refs[1].startswith("this batch:") and refs[1].endswith("line 4")  # d3 in-batch
    assert all("event_id_conflict" in r[2] for r in q)


def test_gate_rejects_a_file_with_too_many_bad_rows_but_keeps_every_row(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "wh")  # mostly 0.95, on_gate_failure reject
    rows = [dispensing(i) for i in range(1, 11)]
    rows[0]["days_supply"] = -1
    p = write_csv(tmp_path / "a.csv", rows)
    res = ingest([p], cfg, ingest_time=FIXED_TIME)
    f = res.files[0]
    assert f.status == "gate_failed" and not res.gate_passed
    assert (f.accepted, f.quarantined) == (0, 10) and f.reconciled
    assert "therapy.negative_days_supply" in f.message
    assert f.reasons == {"file_failed_gate": 9, "negative_days_supply": 1}
    # the file was not ingested, so after fixing the threshold it can be re-ingested
    cfg2 = make_cfg(tmp_path / "wh", quality={"mostly": 0.8})
    res2 = ingest([p], cfg2, ingest_time=FIXED_TIME)
    assert (res2.accepted, res2.quarantined) == (9, 1) and res2.gate_passed


def test_reingesting_same_file_is_a_noop(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "wh")
    p = write_csv(tmp_path / "a.csv", [dispensing(i) for i in range(1, 6)])
    first = ingest([p], cfg, ingest_time=FIXED_TIME)
    again = ingest([p], cfg, ingest_time=FIXED_TIME)
    assert first.batch_id == 1 and again.noop and again.files[0].status == "already_ingested"
    assert len(Warehouse(tmp_path / "wh").committed_manifests()) == 1


def test_manifest_reconciles_and_records_parameters(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "wh")
    rows = [dispensing(i) for i in range(1, 30)] + [dispensing(1)]
    p = write_csv(tmp_path / "a.csv", rows)
    res = ingest([p], cfg, ingest_time=FIXED_TIME)
    m = json.loads(res.manifest_path.read_text())
    t = m["totals"]
    assert m["reconciled"] and t["rows_read"] == t["accepted"] + t["quarantined"] + t["duplicates"]
    assert m["parameters"]["quality"]["mostly"] == 0.95
    assert m["parameters"]["params"]["persistence_window_days"] == 30
    assert m["files"][0]["sha256"] and m["event_files"]
    assert res.data_docs_path.exists() and "negative_days_supply" in res.data_docs_path.read_text()


event_rows = st.lists(
    st.tuples(
        st.integers(1, 15),
        st.sampled_from(["P1", "P2", "P3"]),
        st.integers(1, 28),
        st.sampled_from([30, 60, 90]),
        st.booleans(),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=event_rows, seed=st.integers(0, 10_000), n_files=st.integers(1, 4))
def test_reingest_is_idempotent_and_order_independent(
    tmp_path_factory: pytest.TempPathFactory, rows: list, seed: int, n_files: int
) -> None:
    """Property: however rows are split into files and files re-sent, the log holds each
    distinct event once, every batch reconciles, and re-sending everything changes nothing."""
    tmp = tmp_path_factory.mktemp("prop")
    events = [
        dispensing(
            i,
            patient=p,
            occurred_at=f"2024-02-{d:02d}",
            days_supply=s,
            event_id=(f"d{i}" if with_id else None),
        )
        for i, p, d, s, with_id in rows
    ]
    rng = random.Random(seed)
    files = []
    for k in range(n_files):
        chunk = [e for e in events if rng.random() < 0.6] or events[:1]
        files.append(write_csv(tmp / f"f{k}.csv", chunk, columns=list(events[0])))
    cfg = make_cfg(tmp / "wh", quality={"mostly": 0.0, "on_gate_failure": "quarantine"})
    order = files[:]
    rng.shuffle(order)
    for f in order:
        r = ingest([f], cfg, ingest_time=FIXED_TIME)
        assert r.reconciled
    before = log_rows(tmp / "wh", "source, event_id, drug, days_supply, occurred_at, patient_id")
    for f in files:  # re-send everything: a no-op
        assert ingest([f], cfg, ingest_time=FIXED_TIME).noop
    assert (
        log_rows(tmp / "wh", "source, event_id, drug, days_supply, occurred_at, patient_id")
        == before
    )
    keys = [(r[0], r[1]) for r in before]
    assert len(keys) == len(set(keys))  # no event stored twice
    # every distinct (id, content) that reached a file is either stored or quarantined as conflict
    total = sum(m["totals"]["rows_read"] for m in Warehouse(tmp / "wh").committed_manifests())
    parts = sum(
        m["totals"]["accepted"] + m["totals"]["quarantined"] + m["totals"]["duplicates"]
        for m in Warehouse(tmp / "wh").committed_manifests()
    )
    assert total == parts


def test_stopped_before_first_event_uses_the_log(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "wh", quality={"mostly": 0.0})
    first = write_csv(tmp_path / "a.csv", [dispensing(1, occurred_at="2024-03-01")])
    ingest([first], cfg, ingest_time=FIXED_TIME)
    stop = {
        "event_id": "s1",
        "patient_id": "P1",
        "event_type": "stopped",
        "occurred_at": "2024-02-01",
        "recorded_at": "2024-03-05",
        "source": "pharmacy",
        "drug": "levetiracetam",
        "reason": "adverse_event",
    }
    b = write_csv(tmp_path / "b.csv", [stop])
    res = ingest([b], cfg, ingest_time=FIXED_TIME)
    assert res.files[0].reasons == {"stopped_before_first_event": 1}


def test_large_batch_log_is_in_arrival_order_and_byte_identical(tmp_path: Path) -> None:
    """Several row groups, several log files written at once and both threads: the log is in
    ingest_seq (arrival) order across its files and the same inputs at the same ingest time give
    the same bytes. Regressions seen: DuckDB dropping its order-preserving insert for IN lists
    planned as joins and the row-fix join interleaving row groups (blocks of ~123k rows shuffled
    from run to run). A third, DuckDB's parallel Parquet writer cutting row groups at different
    rows, showed only at millions of rows (10M events, checked by hand); log files are written
    one thread each for it."""
    from pipelines.generate import generate

    generate(tmp_path / "cohort", n_events=400_000, seed=21, n_deliveries=2)
    files = sorted((tmp_path / "cohort" / "deliveries").glob("*.csv"))
    digests, orders, rows = [], [], []
    for run in ("a", "b"):
        c = make_cfg(tmp_path / run, engine={"threads": 2}, ingest={"log_part_rows": 150_000})
        res = ingest(files, c, ingest_time=FIXED_TIME)
        assert res.reconciled
        assert res.duplicates > 0 and res.quarantined > 0, "the test needs rows the fixes change"
        manifest = json.loads(res.manifest_path.read_text())
        parts = [tmp_path / run / f for f in manifest["event_files"]]
        assert parts == sorted((tmp_path / run / "log" / "events").rglob("*.parquet"))
        assert len(parts) > 2, "the test needs a batch of several log files"
        assert any(pq.ParquetFile(p).metadata.num_row_groups > 1 for p in parts)
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in parts])
        seq = [
            x for p in parts for x in pq.read_table(p, columns=["ingest_seq"]).column(0).to_pylist()
        ]
        orders.append(sum(1 for x, y in zip(seq[:-1], seq[1:], strict=True) if y <= x))
        rows.append(len(seq))
        assert rows[-1] == res.accepted
    assert orders == [0, 0]
    assert digests[0] == digests[1]


def test_batch_too_large_for_the_outcome_bitmap_stores_the_same_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows whose outcome a later step changed are found through a bitmap addressed by an
    INTEGER position; a batch of 2^31 rows or more looks them up in a table instead. Forced here
    with a tiny limit, that path stores the same log, byte for byte."""
    import pipelines.ingest.core as core
    from pipelines.generate import generate

    generate(tmp_path / "cohort", n_events=20_000, seed=5, n_deliveries=2)
    files = sorted((tmp_path / "cohort" / "deliveries").glob("*.csv"))
    digests = []
    for run, limit in (("bitmap", core.BITMAP_MAX_ROWS), ("table", 1)):
        monkeypatch.setattr(core, "BITMAP_MAX_ROWS", limit)
        res = ingest(files, make_cfg(tmp_path / run), ingest_time=FIXED_TIME)
        assert res.reconciled
        assert res.duplicates > 0 and res.quarantined > 0, "the test needs rows the fixes change"
        manifest = json.loads(res.manifest_path.read_text())
        digests.append(
            [
                hashlib.sha256((tmp_path / run / f).read_bytes()).hexdigest()
                for f in manifest["event_files"]
            ]
        )
        assert (
            sum(
                pq.ParquetFile(tmp_path / run / f).metadata.num_rows
                for f in manifest["event_files"]
            )
            == res.accepted
        )
    assert digests[0] == digests[1]
