"""Ingest: validate input files and append them to the event log as one atomic batch.

Order of work for a batch (all in one DuckDB connection, spilling to <warehouse>/tmp):
  1. discover files, hash them; files already ingested (same sha256) are skipped (no-op)
  2. load each file as text (``sources.load_raw``); file-level failures reject the file
  3. normalise to the contract (``normalise.stage_select``), derive family, content hash and
     missing event ids; add helper columns the clinical rules need (from the batch and the log)
  4. quality: reasons per row (``quality.runner.apply_checks``), per-file gate, great-expectations
     validation of the same suites and a cross-check of the counts
  5. de-duplicate on (source, event_id): same content = duplicate, different content = conflict
     (quarantined, both versions referenced); against earlier batches and within this one
  6. write event Parquet, quarantine, duplicates and data docs under temporary names, rename them
     into place, then write the manifest: the batch's single commit marker

Reconciliation, per file and per batch: rows_read = accepted + quarantined + duplicates.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psutil

from pipelines.config import Config
from pipelines.ingest.normalise import content_hash_expr, family_case, stage_select
from pipelines.ingest.sources import (
    FileRejected,
    InputFile,
    describe_file,
    discover,
    load_raw,
    parse_csvs,
    sha256_file,
)
from pipelines.logs import get_logger
from pipelines.warehouse import (
    Warehouse,
    atomic_replace_dir,
    atomic_write_json,
    connect,
    fault_point,
    one_thread_each,
    sql_list,
    sql_literal,
)
from quality import runner
from quality.suites import Suite, build_suites
from schemas.contract import Contract, load_contract

log = get_logger("txh.ingest")
Progress = Callable[[str, float], None]


@dataclass
class FileReport:
    path: str
    sha256: str
    format: str
    size_bytes: int
    status: str  # accepted | gate_failed | rejected | already_ingested
    rows_read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    conflicts: int = 0
    malformed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    message: str = ""
    adapter: dict[str, Any] | None = None

    @property
    def reconciled(self) -> bool:
        return self.rows_read == self.accepted + self.quarantined + self.duplicates

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reconciled"] = self.reconciled
        return d


@dataclass
class IngestResult:
    batch_id: int | None
    files: list[FileReport]
    manifest_path: Path | None = None
    data_docs_path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0

    def total(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.files)

    @property
    def rows_read(self) -> int:
        return self.total("rows_read")

    @property
    def accepted(self) -> int:
        return self.total("accepted")

    @property
    def quarantined(self) -> int:
        return self.total("quarantined")

    @property
    def duplicates(self) -> int:
        return self.total("duplicates")

    @property
    def reconciled(self) -> bool:
        return all(f.reconciled for f in self.files)

    @property
    def gate_passed(self) -> bool:
        return all(f.status in ("accepted", "already_ingested") for f in self.files)

    @property
    def noop(self) -> bool:
        return self.batch_id is None


@dataclass(frozen=True)
class ConvertedInput:
    """Canonical events produced by an adapter from non-canonical source files."""

    source_format: str
    source_files: tuple[Path, ...]
    events_path: Path
    quarantine_path: Path | None
    report: dict[str, Any]

    def describe(self) -> InputFile:
        h = hashlib.sha256()
        for f in sorted(self.source_files):  # any source format: no canonical-format check
            h.update(sha256_file(f).encode())
        names = ", ".join(str(f) for f in self.source_files[:3])
        more = f" (+{len(self.source_files) - 3} more)" if len(self.source_files) > 3 else ""
        return InputFile(
            path=self.events_path,
            display_path=f"{self.source_format}: {names}{more}",
            sha256=h.hexdigest(),
            size_bytes=sum(f.stat().st_size for f in self.source_files),
            fmt="parquet",
        )


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def ingest(
    paths: Sequence[Path | str],
    cfg: Config,
    *,
    converted: Sequence[ConvertedInput] = (),
    ingest_time: datetime | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Ingest files (and adapter outputs) as one batch. Takes the warehouse lock."""
    wh = Warehouse.from_config(cfg)
    wh.ensure()
    with wh.lock(cfg.run.lock_timeout_seconds):
        return _ingest_locked(
            wh,
            [Path(p) for p in paths],
            cfg,
            list(converted),
            ingest_time or _utcnow(),
            progress or (lambda s, f: None),
        )


def _ingest_locked(
    wh: Warehouse,
    paths: list[Path],
    cfg: Config,
    converted: list[ConvertedInput],
    ingest_time: datetime,
    progress: Progress,
) -> IngestResult:
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    contract = load_contract()
    wh.sweep_uncommitted()
    manifests = wh.committed_manifests()
    # a file counts as ingested once any of its rows reached the log
    seen_hashes = {
        f["sha256"]: m["batch_id"]
        for m in manifests
        for f in m["files"]
        if f["status"] == "accepted" or (f["status"] == "gate_failed" and f["accepted"])
    }

    progress("discover", 0.0)
    files = discover(paths, cfg.ingest.file_globs, cfg.ingest.recursive) if paths else []
    inputs: list[tuple[InputFile, ConvertedInput | None]] = []
    reports: list[FileReport] = []
    for p in files:
        try:
            inputs.append((describe_file(p), None))
        except FileRejected as e:
            reports.append(
                FileReport(
                    path=str(p),
                    sha256="",
                    format="?",
                    size_bytes=p.stat().st_size,
                    status="rejected",
                    message=e.message,
                    reasons={e.reason_code: 1},
                )
            )
    for c in converted:
        inputs.append((c.describe(), c))
    timings["hash"] = time.perf_counter() - t0

    todo: list[tuple[InputFile, ConvertedInput | None]] = []
    batch_hashes: set[str] = set()
    for f, c in inputs:
        if f.sha256 in seen_hashes or f.sha256 in batch_hashes:
            reports.append(
                FileReport(
                    path=f.display_path,
                    sha256=f.sha256,
                    format=f.fmt,
                    size_bytes=f.size_bytes,
                    status="already_ingested",
                    message=f"identical file already ingested in batch "
                    f"{seen_hashes.get(f.sha256, 'this batch')}",
                )
            )
        else:
            batch_hashes.add(f.sha256)
            todo.append((f, c))
    if not todo and not any(r.status == "rejected" for r in reports):
        log.info("ingest.noop", files=len(reports))
        return IngestResult(batch_id=None, files=reports, timings=timings)

    batch_id = (manifests[-1]["batch_id"] + 1) if manifests else 1
    first_seq = (manifests[-1]["last_seq"] + 1) if manifests else 1
    log.info("ingest.batch_start", batch_id=batch_id, files=len(todo))

    work_db = wh.tmp_dir / f"ingest-{batch_id:06d}.duckdb"
    con = _open_work_db(cfg, wh, work_db)
    try:
        # The log must come out byte-identical from the same inputs, and it is written in
        # insertion order. DuckDB plans an IN list of five or more constants (the quality
        # checks' domains) as a join, and a join makes it fall back from its order-preserving
        # insert: rows of a multi-million-row batch then landed in a different order on each
        # run. Without that rewrite IN lists are evaluated in place (no slower on these lists).
        con.execute("SET disabled_optimizers = 'in_clause'")
        result = _run_batch(
            con,
            wh,
            cfg,
            contract,
            batch_id,
            first_seq,
            todo,
            reports,
            ingest_time,
            progress,
            timings,
        )
    finally:
        _discard_work_db(con, work_db)
    result.timings["total"] = time.perf_counter() - t0
    result.peak_rss_mb = _peak_rss_mb()
    log.info(
        "ingest.batch_done",
        batch_id=batch_id,
        rows_read=result.rows_read,
        accepted=result.accepted,
        quarantined=result.quarantined,
        duplicates=result.duplicates,
        reconciled=result.reconciled,
        gate_passed=result.gate_passed,
        seconds=round(result.timings["total"], 2),
    )
    return result


def _open_work_db(cfg: Config, wh: Warehouse, path: Path) -> duckdb.DuckDBPyConnection:
    """The batch's working database: a scratch DuckDB file, not an in-memory database.

    DuckDB keeps in-memory tables uncompressed. A 10M-event batch (``checked_rows``, every
    column of every row) outgrew the ingest memory limit, was spilled uncompressed to the temp
    directory and read back by each later pass: 2 GB read by one helper-rule query. In a
    database file the large inserts are written compressed as they happen (330 MB at 10M
    events) and the passes read that. The file is scratch: deleted after the batch, and a run
    killed mid-batch leaves it for the next ingest's sweep of the tmp directory. Nothing is
    ever checkpointed, neither when the WAL grows nor on close: a checkpoint would compress and
    write the whole batch again (7-8 s on close at 10M events)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_work_db(path)
    con = connect(cfg, database=path, wh=wh, memory_limit=cfg.ingest.memory_limit)
    try:
        con.execute("SET checkpoint_threshold = '1TB'")
        con.execute("PRAGMA disable_checkpoint_on_shutdown")
    except BaseException:
        _discard_work_db(con, path)
        raise
    return con


def _discard_work_db(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Close the working database and delete it. Best effort: this runs after the batch
    committed, or while its error propagates, and neither may be replaced by a failure here (a
    file left behind goes with the next sweep of the tmp directory)."""
    try:
        con.close()
    except duckdb.Error as e:
        log.warning("ingest.work_db_close_failed", error=type(e).__name__)
    try:
        _remove_work_db(path)
    except OSError as e:
        log.warning("ingest.work_db_remove_failed", error=type(e).__name__)


def _remove_work_db(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)


def _peak_rss_mb() -> float:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except Exception:  # pragma: no cover - non-POSIX
        return psutil.Process().memory_info().rss / 1e6


def _run_batch(
    con: duckdb.DuckDBPyConnection,
    wh: Warehouse,
    cfg: Config,
    contract: Contract,
    batch_id: int,
    first_seq: int,
    todo: list[tuple[InputFile, ConvertedInput | None]],
    reports: list[FileReport],
    ingest_time: datetime,
    progress: Progress,
    timings: dict[str, float],
) -> IngestResult:
    """One batch. A single wide table, ``checked_rows``, holds every parsed row (typed, hashed,
    with its reasons and outcome) and is never updated; the rare rows whose outcome changes later
    (helper rules, gate rejection, duplicates, conflicts) get a row in the small ``row_fixes``
    table, and the ``checked`` view applies them (see ``_create_checked_view``). So 10M-row
    batches are never re-sorted, copied or updated in place. Physical order is the input order
    (preserve_insertion_order)."""
    tick = time.perf_counter()
    if cfg.quality.gx_validation and todo:
        from quality.gx_duckdb import import_in_background

        import_in_background()
    storage = contract.storage_columns()
    suites = build_suites(cfg, contract)
    reasons_sql = runner.reasons_expr(suites)
    log_files = wh.committed_event_files()

    # ---- 2-3. load each file and normalise it into `checked` ----------------------------------
    file_reports: dict[int, FileReport] = {}
    raw_tables: dict[int, Any] = {}
    # original rows live in Parquet files here until the batch commits (sources.load_raw)
    batch_tmp = wh.tmp_dir / f"ingest-{batch_id:06d}"
    created = False
    raw_name = {idx: f"raw_{idx}" for idx in range(len(todo))}
    csvs = [(f, raw_name[idx]) for idx, (f, _c) in enumerate(todo) if f.fmt == "csv"]
    if len(csvs) > 1:
        progress("read CSV files", 0.0)
    parsed = parse_csvs(
        con, csvs, cfg.ingest.csv_delimiter, batch_tmp, max_line_bytes=cfg.ingest.max_line_bytes
    )
    for idx, (f, conv) in enumerate(todo):
        progress(f"read {Path(f.display_path).name}", idx / max(len(todo), 1))
        rep = FileReport(
            path=f.display_path,
            sha256=f.sha256,
            format=f.fmt,
            size_bytes=f.size_bytes,
            status="accepted",
            adapter=(conv.report if conv else None),
        )
        file_reports[idx] = rep
        try:
            raw = load_raw(
                con,
                f,
                raw_name[idx],
                contract,
                cfg.ingest.csv_delimiter,
                spill_dir=batch_tmp,
                max_line_bytes=cfg.ingest.max_line_bytes,
                parsed=parsed.get(raw_name[idx]),
            )
        except FileRejected as e:
            rep.status, rep.message = "rejected", e.message
            rep.reasons = {e.reason_code: 1}
            log.warning("ingest.file_rejected", file=f.display_path, reason=e.reason_code)
            continue
        raw_tables[idx] = raw
        rep.rows_read = raw.rows + raw.malformed
        rep.malformed = raw.malformed
        select = _checked_select(
            stage_select(raw, idx, f.display_path, contract, f.fmt == "jsonl"),
            contract,
            cfg,
            ingest_time,
            reasons_sql,
        )
        con.execute(
            ("INSERT INTO checked_rows " if created else "CREATE TABLE checked_rows AS ") + select
        )
        created = True
    if not created:
        con.execute(
            "CREATE TABLE checked_rows AS "
            + _checked_select(_empty_stage(contract), contract, cfg, ingest_time, reasons_sql)
        )
    _create_checked_view(con)
    # constants per batch/file are not stored per row; this view adds them back
    names = {i: f.display_path for i, (f, _c) in enumerate(todo)}
    file_case = (
        (
            "CASE _file_idx "
            + " ".join(f"WHEN {i} THEN {sql_literal(n)}" for i, n in names.items())
            + " END"
        )
        if names
        else "NULL"
    )
    per_row_constants = (
        f"SELECT * REPLACE (coalesce(source_file, {file_case}) AS source_file), "
        f"CAST({sql_literal(ingest_time.isoformat(sep=' '))} AS TIMESTAMP) AS ingested_at"
    )
    con.execute(f"CREATE VIEW staged AS {per_row_constants} FROM checked")
    timings["read_normalise"] = time.perf_counter() - tick
    tick = time.perf_counter()

    # ---- 3b. rules that look beyond the row (few rows: stops, corrections) ------------------------
    _apply_helper_rules(con, log_files, suites)
    timings["helper_rules"] = time.perf_counter() - tick
    tick = time.perf_counter()

    # ---- 4. quality gate per file, then great-expectations on the same table -----------------------
    progress("quality", 0.0)
    counts = runner.check_counts(con, "checked", suites)
    gate = runner.gate(counts)
    for idx, failing in gate.failed_files.items():
        rep = file_reports[idx]
        rep.status = "gate_failed"
        rep.failed_checks = [
            f"{c.suite}.{c.reason_code} ({c.failed}/{c.in_scope} failed, mostly={c.mostly})"
            for c in failing
        ]
        rep.message = "quality gate failed: " + "; ".join(rep.failed_checks)
        log.warning("ingest.gate_failed", file=rep.path, checks=len(failing))
    timings["quality"] = time.perf_counter() - tick
    tick = time.perf_counter()
    gx_results: dict[str, Any] | None = None
    if cfg.quality.gx_validation and raw_tables:
        progress("great-expectations", 0.0)
        in_scope = {c.suite for c in counts if c.in_scope}
        gx_results = runner.gx_validate(con, "staged", [s for s in suites if s.name in in_scope])
        runner.crosscheck(gx_results, counts)
    timings["great_expectations"] = time.perf_counter() - tick
    tick = time.perf_counter()

    # ---- 5. gate rejections, duplicates and conflicts -----------------------------------------------
    progress("deduplicate", 0.0)
    if cfg.quality.on_gate_failure == "reject" and gate.failed_files:
        rejected = ", ".join(str(i) for i in sorted(gate.failed_files))
        _fix_rows(
            con,
            f"FROM checked c WHERE c._file_idx IN ({rejected}) AND c.outcome = 'accepted'",
            reasons="['file_failed_gate']",
            outcome="'quarantined'",
        )
    _resolve_duplicates(con, log_files, contract)
    timings["deduplicate"] = time.perf_counter() - tick
    tick = time.perf_counter()

    # ---- 6. write ---------------------------------------------------------------------------------
    progress("write", 0.0)
    n_acc = con.execute("SELECT count(*) FROM checked WHERE outcome = 'accepted'").fetchone()[0]
    # ingest_seq = file base + line: unique and in arrival order without sorting the batch
    spans = {
        i: (lo, hi)
        for i, lo, hi in con.execute(
            "SELECT _file_idx, min(_row), max(_row) FROM checked GROUP BY ALL"
        ).fetchall()
    }
    offsets: dict[int, int] = {}
    nxt = first_seq
    for idx in sorted(spans):
        lo, hi = spans[idx]
        offsets[idx] = nxt - int(lo)
        nxt += int(hi) - int(lo) + 1
    last_seq = nxt - 1
    seq_expr = (
        (
            "CASE _file_idx "
            + " ".join(f"WHEN {i} THEN _row + ({o})" for i, o in offsets.items())
            + " END"
        )
        if offsets
        else "NULL"
    )
    q_path, d_path = _write_quarantine_and_duplicates(
        con,
        wh,
        batch_id,
        todo,
        raw_tables,
        ingest_time,
        converted_quarantine=[
            (i, c) for i, (f, c) in enumerate(todo) if c is not None and c.quarantine_path
        ],
    )
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    for raw in raw_tables.values():  # originals are in the quarantine now; free the memory
        con.execute(f"DROP {'VIEW' if raw.table in views else 'TABLE'} {raw.table}")
        if f"{raw.table}_parsed" in views:
            con.execute(f"DROP VIEW {raw.table}_parsed")
        else:
            con.execute(f"DROP TABLE IF EXISTS {raw.table}_parsed")
    event_files: list[str] = []
    tmp_events = wh.events_dir / f".tmp-batch={batch_id:06d}"
    final_events = wh.batch_events_dir(batch_id)
    if n_acc:
        tmp_events.mkdir(parents=True, exist_ok=True)
        cols = ", ".join(_storage_select(c.name, contract, batch_id, seq_expr) for c in storage)
        accepted, setup = _accepted_predicate(con, seq_expr, first_seq, last_seq)
        parts = _log_parts(spans, cfg.ingest.log_part_rows)
        written = _write_log_parts(
            con,
            [
                (
                    f"SELECT {cols} FROM ({per_row_constants} FROM checked_rows) "
                    f"WHERE _file_idx = {idx} AND _row BETWEEN {lo} AND {hi} AND {accepted}",
                    tmp_events / name,
                )
                for name, (idx, lo, hi) in parts
            ],
            setup,
        )
        event_files += [str((final_events / p.name).relative_to(wh.root)) for p in written]

    _fill_file_counts(con, file_reports, todo)
    docs_dir_tmp = wh.quality_dir / f".tmp-batch={batch_id:06d}"
    docs_dir = wh.quality_dir / f"batch={batch_id:06d}"
    docs_dir_tmp.mkdir(parents=True, exist_ok=True)
    all_reports = reports + [file_reports[i] for i in sorted(file_reports)]
    runner.render_data_docs(
        docs_dir_tmp / "data_docs.html",
        batch_id=batch_id,
        files=[file_reports[i].to_dict() for i in sorted(file_reports)],
        counts=counts,
        suites=suites,
        gx_results=gx_results,
    )
    if gx_results is not None:
        runner.dump_json(docs_dir_tmp / "gx_validation.json", gx_results)
    runner.dump_json(docs_dir_tmp / "check_counts.json", [asdict(c) for c in counts])
    timings["write"] = time.perf_counter() - tick

    # commit: rename the batch's files into place, then write the manifest (the marker)
    fault_point("ingest.before_events_rename")
    if n_acc:
        atomic_replace_dir(tmp_events, final_events)
    fault_point("ingest.before_manifest")
    if docs_dir.exists():
        shutil.rmtree(docs_dir)
    atomic_replace_dir(docs_dir_tmp, docs_dir)
    manifest = {
        "batch_id": batch_id,
        "schema_version": contract.schema_version,
        "ingested_at": ingest_time.isoformat(),
        "first_seq": first_seq,
        "last_seq": last_seq,
        "event_files": event_files,
        "quarantine_file": str(q_path.relative_to(wh.root)) if q_path else None,
        "duplicates_file": str(d_path.relative_to(wh.root)) if d_path else None,
        "data_docs": str((docs_dir / "data_docs.html").relative_to(wh.root)),
        "files": [r.to_dict() for r in all_reports],
        "totals": {
            "rows_read": sum(r.rows_read for r in all_reports),
            "accepted": sum(r.accepted for r in all_reports),
            "quarantined": sum(r.quarantined for r in all_reports),
            "duplicates": sum(r.duplicates for r in all_reports),
            "conflicts": sum(r.conflicts for r in all_reports),
            "files_rejected": sum(r.status == "rejected" for r in all_reports),
            "files_gate_failed": sum(r.status == "gate_failed" for r in all_reports),
        },
        "reconciled": all(r.reconciled for r in all_reports),
        "gate_passed": all(r.status in ("accepted", "already_ingested") for r in all_reports),
        "quality_checks": {f"{c.suite}.{c.reason_code}": c.failed for c in _sum_counts(counts)},
        "parameters": cfg.to_dict(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    atomic_write_json(wh.manifest_path(batch_id), manifest)
    fault_point("ingest.after_manifest")
    shutil.rmtree(batch_tmp, ignore_errors=True)
    return IngestResult(
        batch_id=batch_id,
        files=all_reports,
        manifest_path=wh.manifest_path(batch_id),
        data_docs_path=docs_dir / "data_docs.html",
        timings=timings,
    )


# columns the clinical rules read that are filled in after the rows are checked (quality/rules.yaml)
_HELPER_COLUMNS = ("_first_drug_event_at", "_target_patient_id")
# the columns of checked_rows that later steps change, for the few rows concerned
_FIX_COLUMNS = (*_HELPER_COLUMNS, "reasons", "outcome", "other_version")


def _create_checked_view(con: duckdb.DuckDBPyConnection) -> None:
    """``checked`` = ``checked_rows`` with ``row_fixes`` applied. An UPDATE of a few thousand
    rows scattered over a 10M-row table took 8 s in DuckDB (it rewrites every vector touched);
    a LEFT JOIN of the table with the small fixes table costs a hash probe per scan and keeps
    the input order."""
    cols = ", ".join(_FIX_COLUMNS)
    con.execute(
        f"CREATE TABLE row_fixes AS SELECT _file_idx, _row, {cols} FROM checked_rows LIMIT 0"
    )
    replaced = ", ".join(
        f"CASE WHEN f._row IS NULL THEN c.{col} ELSE f.{col} END AS {col}" for col in _FIX_COLUMNS
    )
    con.execute(f"""
        CREATE VIEW checked AS
        SELECT c.* REPLACE ({replaced})
        FROM checked_rows c
        LEFT JOIN row_fixes f ON f._file_idx = c._file_idx AND f._row = c._row
    """)


def _fix_rows(con: duckdb.DuckDBPyConnection, rows_sql: str, **values: str) -> None:
    """New values for some rows: ``rows_sql`` is the FROM clause naming them as ``c`` (with
    ``c`` giving _file_idx, _row and the fix columns, usually ``checked``), ``values`` the SQL
    of the columns that change; the other fix columns keep their value. A row fixed again
    keeps only its latest values."""
    unknown = set(values) - set(_FIX_COLUMNS)
    if unknown:
        raise ValueError(f"not fix columns: {sorted(unknown)}")
    exprs = ", ".join(f"{values.get(col, f'c.{col}')} AS {col}" for col in _FIX_COLUMNS)
    cols = ", ".join(("_file_idx", "_row", *_FIX_COLUMNS))
    con.execute(f"CREATE TABLE new_fixes AS SELECT c._file_idx, c._row, {exprs} {rows_sql}")
    con.execute(f"""
        CREATE OR REPLACE TABLE row_fixes AS
        SELECT {cols} FROM row_fixes ANTI JOIN new_fixes USING (_file_idx, _row)
        UNION ALL
        SELECT {cols} FROM new_fixes
    """)
    con.execute("DROP TABLE new_fixes")


BITMAP_MAX_ROWS = 2**31 - 1  # rows of a batch the outcome bitmap can address (INTEGER bits)


def _accepted_predicate(
    con: duckdb.DuckDBPyConnection, seq_expr: str, first_seq: int, last_seq: int
) -> tuple[str, list[str]]:
    """A filter on ``checked_rows`` selecting the rows ``checked`` says are accepted, without
    joining ``row_fixes``, and the statements a connection runs before using it. The rows whose
    outcome a fix changed (a few thousand in 10M: duplicates, conflicts, helper rules, gate
    rejections) are bits in a bitmap over the batch's ingest sequence (table ``outcome_flips``,
    one row), loaded into a variable, so the filter is a per-row bit lookup."""
    flips = """
        FROM row_fixes f JOIN checked_rows c USING (_file_idx, _row)
        WHERE (f.outcome = 'accepted') <> (c.outcome = 'accepted')
    """
    if not con.execute(f"SELECT count(*) {flips}").fetchone()[0]:
        return "outcome = 'accepted'", []
    if last_seq - first_seq >= BITMAP_MAX_ROWS:
        # get_bit takes an INTEGER position: a batch this large looks the rows up in a table
        con.execute(
            f"CREATE OR REPLACE TABLE outcome_flips AS SELECT DISTINCT {seq_expr} AS seq {flips}"
        )
        return f"(outcome = 'accepted') <> ({seq_expr} IN (SELECT seq FROM outcome_flips))", []
    position = f"CAST({seq_expr} - {first_seq} AS INTEGER)"
    con.execute(f"""
        CREATE OR REPLACE TABLE outcome_flips AS
        SELECT bitstring_agg({position}, 0, {last_seq - first_seq}) AS bits {flips}
    """)
    return (
        f"(outcome = 'accepted') <> (get_bit(getvariable('ingest_outcome_flips'), {position}) = 1)",
        ["SET VARIABLE ingest_outcome_flips = (SELECT bits FROM outcome_flips)"],
    )


def _log_parts(
    spans: dict[int, tuple[int, int]], part_rows: int
) -> list[tuple[str, tuple[int, int, int]]]:
    """The batch's log files: (file name, (file index, first row, last row)), in arrival order;
    each input file is cut every ``part_rows`` rows (of its rows read, so the cut does not move
    with the quality outcome)."""
    parts: list[tuple[int, int, int]] = []
    for idx in sorted(spans):
        lo, hi = spans[idx]
        start = int(lo)
        while start <= int(hi):
            end = min(start + part_rows - 1, int(hi))
            parts.append((idx, start, end))
            start = end + 1
    return [(f"part-{n:05d}.parquet", p) for n, p in enumerate(parts)]


def _write_log_parts(
    con: duckdb.DuckDBPyConnection, jobs: list[tuple[str, Path]], setup: list[str]
) -> list[Path]:
    """Write each (query, path) as zstd Parquet, concurrently, each on a single thread (its own
    connection, which runs ``setup`` first: variables are per connection).

    One thread per file because DuckDB's parallel Parquet writer keeps the rows in order but cuts
    row groups where the threads' batches happen to meet (same rows, different bytes from run to
    run); several files at once so the write still uses every core (10M events: 24 s on one
    thread, 16 s as two concurrent files). Returns the files written, in job order; an empty one
    (every row of its range quarantined) is removed."""

    def write(job: tuple[str, Path]) -> Path | None:
        query, path = job
        cur = con.cursor()
        try:
            for statement in setup:
                cur.execute(statement)
            copy = f"COPY ({query}) TO {sql_literal(str(path))} (FORMAT parquet, COMPRESSION zstd)"
            rows = cur.execute(copy).fetchone()[0]
        finally:
            cur.close()
        if rows:
            return path
        path.unlink()
        return None

    return [p for p in one_thread_each(con, write, jobs) if p is not None]


def _checked_select(
    stage_sql: str, contract: Contract, cfg: Config, ingest_time: datetime, reasons_sql: str
) -> str:
    """Normalised rows + family, source default, content hash, derived ids, helper columns
    (NULL until _apply_helper_rules), reasons and the initial outcome: one projection."""
    default_source = sql_literal(cfg.ingest.default_source) if cfg.ingest.default_source else "NULL"
    return f"""
        SELECT * EXCLUDE (ingested_at),
               CASE WHEN len(reasons) > 0 THEN 'quarantined' ELSE 'accepted' END AS outcome,
               CAST(NULL AS VARCHAR) AS other_version
        FROM (SELECT *, {reasons_sql} AS reasons FROM (
            SELECT * EXCLUDE (_hash) REPLACE (coalesce(event_id, 'h' || _hash) AS event_id),
                   event_id IS NULL AS event_id_derived
            FROM (
                -- content hash only where an id must be derived (duplicates hash on demand)
                SELECT *, CASE WHEN event_id IS NULL THEN {content_hash_expr(contract)} END AS _hash
                FROM (
                    SELECT * REPLACE (coalesce(source, {default_source}) AS source),
                           {family_case(contract)} AS family,
                           CAST({sql_literal(ingest_time.isoformat(sep=" "))} AS TIMESTAMP) AS ingested_at,
                           CAST(NULL AS TIMESTAMP) AS _first_drug_event_at,
                           CAST(NULL AS VARCHAR) AS _target_patient_id
                    FROM ({stage_sql})
                )
            )
        ))
    """


def _sum_counts(counts: list[runner.CheckCount]) -> list[runner.CheckCount]:
    acc: dict[tuple[str, str], runner.CheckCount] = {}
    for c in counts:
        k = (c.suite, c.reason_code)
        if k in acc:
            p = acc[k]
            acc[k] = runner.CheckCount(
                -1, c.suite, c.reason_code, p.in_scope + c.in_scope, p.failed + c.failed, c.mostly
            )
        else:
            acc[k] = runner.CheckCount(-1, c.suite, c.reason_code, c.in_scope, c.failed, c.mostly)
    return [acc[k] for k in sorted(acc)]


def _storage_select(name: str, contract: Contract, batch_id: int, seq_expr: str) -> str:
    """Expression for one storage column, cast to its contract type (Arrow schema = contract)."""
    typ = contract.column(name).duckdb_type
    expr = {
        "schema_version": str(contract.schema_version),
        "batch_id": str(batch_id),
        "ingest_seq": seq_expr,
        "recorded_at": "coalesce(recorded_at, ingested_at)",
        "recorded_at_imputed": "recorded_at IS NULL",
    }.get(name, name)
    return f"CAST({expr} AS {typ}) AS {name}"


def _empty_stage(contract: Contract) -> str:
    cols = ", ".join(
        f"CAST(NULL AS {c.duckdb_type}) AS {c.name}" for c in contract.contract_columns
    )
    return (
        f"SELECT CAST(NULL AS INTEGER) AS _file_idx, CAST(NULL AS BIGINT) AS _row, {cols}, "
        "CAST([] AS VARCHAR[]) AS _parse_errors, CAST(NULL AS VARCHAR) AS source_file, "
        "CAST(NULL AS BIGINT) AS source_row, CAST(NULL AS VARCHAR) AS extra WHERE false"
    )


def _log_relation(log_files: list[Path], columns: str) -> str:
    files = sql_list(log_files)
    return f"(SELECT {columns} FROM read_parquet({files}))"


def _apply_helper_rules(
    con: duckdb.DuckDBPyConnection, log_files: list[Path], suites: list[Suite]
) -> None:
    """Fill the helper columns the clinical rules need (quality/rules.yaml) for the few rows
    concerned (stops, corrections), from this batch and the log, and re-check those rows.

    Only the checks that read a helper column are redone (``runner.recheck_expr``: a few
    columns of the rows concerned, where the whole row meant scanning every column of the
    batch), and only rows whose reasons change get a fix. A row left out has the same verdict
    on every check with its helper values as without them (its reasons, which name each
    failing check, are the same), so ``staged`` with NULL helpers validates the same in
    great-expectations, and every later scan joins a smaller ``row_fixes``."""
    stops = (
        "SELECT DISTINCT patient_id, drug FROM checked "
        "WHERE event_type = 'stopped' AND drug IS NOT NULL"
    )
    first_sources = [
        "SELECT patient_id, drug, occurred_at FROM checked WHERE family = 'therapy' "
        "AND event_type <> 'stopped' AND drug IS NOT NULL AND occurred_at IS NOT NULL"
    ]
    target_sources = ["SELECT source, event_id, patient_id FROM checked"]
    if log_files:
        lg = _log_relation(
            log_files, "patient_id, drug, occurred_at, family, event_type, source, event_id"
        )
        first_sources.append(
            f"SELECT patient_id, drug, occurred_at FROM {lg} "
            "WHERE family = 'therapy' AND event_type <> 'stopped'"
        )
        target_sources.append(f"SELECT source, event_id, patient_id FROM {lg}")
    con.execute(f"""
        CREATE TABLE helper_values AS
        WITH stop_pairs AS ({stops}),
        first_events AS (
            SELECT f.patient_id, f.drug, min(f.occurred_at) AS first_at
            FROM ({" UNION ALL ".join(first_sources)}) f
            SEMI JOIN stop_pairs s ON f.patient_id = s.patient_id AND f.drug = s.drug
            GROUP BY ALL
        ),
        wanted_targets AS (
            SELECT DISTINCT source, target_event_id FROM checked WHERE target_event_id IS NOT NULL
        ),
        targets AS (
            SELECT t.source, t.event_id, any_value(t.patient_id) AS target_patient_id
            FROM ({" UNION ALL ".join(target_sources)}) t
            SEMI JOIN wanted_targets w
              ON t.event_id = w.target_event_id AND t.source IS NOT DISTINCT FROM w.source
            GROUP BY ALL
        )
        SELECT c._file_idx, c._row, fe.first_at, tg.target_patient_id
        FROM checked c
        LEFT JOIN first_events fe
          ON c.event_type = 'stopped' AND c.patient_id = fe.patient_id AND c.drug = fe.drug
        LEFT JOIN targets tg
          ON c.target_event_id = tg.event_id AND c.source IS NOT DISTINCT FROM tg.source
        WHERE (c.event_type = 'stopped' OR c.target_event_id IS NOT NULL)
          AND (fe.first_at IS NOT NULL OR tg.target_patient_id IS NOT NULL)
    """)
    if con.execute("SELECT count(*) FROM helper_values").fetchone()[0]:
        # the rows concerned with their helper values, re-checked; only changes are kept
        recheck = runner.recheck_expr(suites, _HELPER_COLUMNS) or runner.reasons_expr(suites)
        _fix_rows(
            con,
            f"""FROM (SELECT *, {recheck} AS new_reasons
                      FROM (SELECT s.* REPLACE (h.first_at AS _first_drug_event_at,
                                                h.target_patient_id AS _target_patient_id)
                            FROM staged s JOIN helper_values h USING (_file_idx, _row))) c
                WHERE c.new_reasons <> c.reasons""",
            reasons="c.new_reasons",
            outcome="CASE WHEN len(c.new_reasons) > 0 THEN 'quarantined' ELSE 'accepted' END",
        )
    con.execute("DROP TABLE helper_values")


def _resolve_duplicates(
    con: duckdb.DuckDBPyConnection, log_files: list[Path], contract: Contract
) -> None:
    """(source, event_id) seen before: same content = duplicate, different content = conflict
    (quarantined with a reference to the other version). Against the log and within the batch;
    only the rows whose key is not unique are ever ranked."""
    if log_files:
        cols = ", ".join(contract.content_columns)
        lg = _log_relation(log_files, f"event_id, batch_id, ingest_seq, {cols}")
        con.execute(f"""
            CREATE TABLE log_keys AS
            SELECT l.source, l.event_id, l.batch_id, l.ingest_seq,
                   {content_hash_expr(contract)} AS content_hash
            FROM {lg} l
            SEMI JOIN (SELECT source, event_id FROM checked WHERE outcome = 'accepted') c
              ON l.event_id = c.event_id AND l.source IS NOT DISTINCT FROM c.source
        """)
    else:
        con.execute(
            "CREATE TABLE log_keys (source VARCHAR, event_id VARCHAR, content_hash VARCHAR, "
            "batch_id BIGINT, ingest_seq BIGINT)"
        )
    # the keys to rank, in a statement of their own: in one query with the ranking DuckDB
    # shared the two scans of the batch as one subplan holding every content column of every
    # row (at 10M rows this statement took 11.3 s; split, 2.8 + 4.2 s)
    con.execute("""
        CREATE TABLE wanted_keys AS
        SELECT source, event_id FROM checked WHERE outcome = 'accepted'
        GROUP BY ALL HAVING count(*) > 1
        UNION
        SELECT source, event_id FROM log_keys
    """)
    con.execute(f"""
        CREATE TABLE resolution AS
        -- one semi join (two OR-ed EXISTS made DuckDB mark every row: 18 s at 10M rows)
        WITH candidates AS (
            SELECT c._file_idx, c._row, c.source, c.event_id,
                   {content_hash_expr(contract)} AS content_hash, c.source_file, c.source_row
            FROM staged c
            SEMI JOIN wanted_keys w
              ON c.event_id = w.event_id AND c.source IS NOT DISTINCT FROM w.source
            WHERE c.outcome = 'accepted'
        ),
        ranked AS (
            SELECT *,
                   row_number() OVER w AS rn,
                   first_value(content_hash) OVER w AS first_hash,
                   first_value(source_file || ' line ' || source_row) OVER w AS first_ref
            FROM candidates
            WINDOW w AS (PARTITION BY source, event_id ORDER BY _file_idx, _row)
        )
        SELECT r._file_idx, r._row,
               CASE WHEN k.event_id IS NOT NULL AND k.content_hash = r.content_hash THEN 'duplicate'
                    WHEN k.event_id IS NOT NULL THEN 'quarantined'
                    WHEN r.rn > 1 AND r.first_hash = r.content_hash THEN 'duplicate'
                    ELSE 'quarantined' END AS outcome,
               CASE WHEN k.event_id IS NOT NULL THEN 'batch ' || k.batch_id || ' ingest_seq ' || k.ingest_seq
                    ELSE 'this batch: ' || r.first_ref END AS other_version
        FROM ranked r
        LEFT JOIN log_keys k ON r.event_id = k.event_id AND r.source IS NOT DISTINCT FROM k.source
        WHERE k.event_id IS NOT NULL OR r.rn > 1
    """)
    con.execute("DROP TABLE wanted_keys")
    _fix_rows(
        con,
        "FROM checked c JOIN resolution r USING (_file_idx, _row)",
        reasons="CASE WHEN r.outcome = 'quarantined' THEN ['event_id_conflict'] ELSE c.reasons END",
        outcome="r.outcome",
        other_version="r.other_version",
    )


def _write_quarantine_and_duplicates(
    con: duckdb.DuckDBPyConnection,
    wh: Warehouse,
    batch_id: int,
    todo: list[tuple[InputFile, ConvertedInput | None]],
    raw_tables: dict[int, Any],
    ingest_time: datetime,
    converted_quarantine: list[tuple[int, ConvertedInput]],
) -> tuple[Path | None, Path | None]:
    # original rows: JSON of the raw text row (JSON Lines: the line itself)
    parts = []
    for idx, raw in raw_tables.items():
        fmt = todo[idx][0].fmt
        if fmt == "jsonl":
            orig = "r._json"
        else:
            struct = ", ".join(
                f"'{c.replace(chr(39), chr(39) * 2)}': r.\"{c.replace(chr(34), chr(34) * 2)}\""
                for c in raw.columns
            )
            orig = f"CAST(to_json({{{struct}}}) AS VARCHAR)"
        parts.append(f"""
            SELECT q._file_idx, q._row, q.source_file, q.source_row, q.event_id, q.patient_id,
                   q.event_type, q.reasons, q.other_version AS conflict_with, {orig} AS original
            FROM staged q JOIN {raw.table} r ON q._row = r._row
            WHERE q._file_idx = {idx} AND q.outcome = 'quarantined'
        """)
        parts.append(f"""
            SELECT {idx} AS _file_idx, m._row, {sql_literal(todo[idx][0].display_path)} AS source_file,
                   m._row AS source_row, NULL AS event_id, NULL AS patient_id, NULL AS event_type,
                   ['malformed_row'] AS reasons, m.detail AS conflict_with, m.original
            FROM {raw.table}_malformed m
        """)
    for idx, conv in converted_quarantine:
        parts.append(f"""
            SELECT {idx} AS _file_idx, CAST(NULL AS BIGINT) AS _row, source_file, source_row,
                   NULL AS event_id, NULL AS patient_id, NULL AS event_type,
                   CAST(reasons AS VARCHAR[]) AS reasons, NULL AS conflict_with, original
            FROM read_parquet({sql_literal(str(conv.quarantine_path))})
        """)
    q_path = d_path = None
    if parts:
        con.execute("CREATE TABLE quarantine AS " + " UNION ALL BY NAME ".join(parts))
    else:
        con.execute(
            "CREATE TABLE quarantine (_file_idx INTEGER, _row BIGINT, source_file VARCHAR, "
            "source_row BIGINT, event_id VARCHAR, patient_id VARCHAR, event_type VARCHAR, "
            "reasons VARCHAR[], conflict_with VARCHAR, original VARCHAR)"
        )
    n_q = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    if n_q:
        q_path = wh.quarantine_dir / f"batch={batch_id:06d}.parquet"
        tmp = wh.quarantine_dir / f".tmp-batch={batch_id:06d}.parquet"
        con.execute(f"""
            COPY (SELECT CAST({batch_id} AS BIGINT) AS batch_id, source_file, source_row, event_id, patient_id,
                         event_type, reasons, conflict_with, original,
                         CAST({sql_literal(ingest_time.isoformat(sep=" "))} AS TIMESTAMP) AS quarantined_at
                  FROM quarantine ORDER BY _file_idx, source_row NULLS LAST, _row)
            TO {sql_literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)
        """)
        tmp.rename(q_path)
    n_d = con.execute("SELECT count(*) FROM checked WHERE outcome = 'duplicate'").fetchone()[0]
    if n_d:
        d_path = wh.duplicates_dir / f"batch={batch_id:06d}.parquet"
        tmp = wh.duplicates_dir / f".tmp-batch={batch_id:06d}.parquet"
        con.execute(f"""
            COPY (SELECT CAST({batch_id} AS BIGINT) AS batch_id, source_file, source_row, source, event_id,
                         other_version AS duplicate_of
                  FROM staged WHERE outcome = 'duplicate' ORDER BY _file_idx, _row)
            TO {sql_literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)
        """)
        tmp.rename(d_path)
    return q_path, d_path


def _fill_file_counts(
    con: duckdb.DuckDBPyConnection,
    reps: dict[int, FileReport],
    todo: list[tuple[InputFile, ConvertedInput | None]],
) -> None:
    for idx, outcome, n in con.execute(
        "SELECT _file_idx, outcome, count(*) FROM checked GROUP BY ALL"
    ).fetchall():
        rep = reps[idx]
        if outcome == "accepted":
            rep.accepted = n
        elif outcome == "duplicate":
            rep.duplicates = n
    for idx, n_q, n_conf in con.execute(
        "SELECT _file_idx, count(*), count(*) FILTER (WHERE list_contains(reasons, "
        "'event_id_conflict')) FROM quarantine WHERE _row IS NOT NULL GROUP BY ALL"
    ).fetchall():
        reps[idx].quarantined = n_q
        reps[idx].conflicts = n_conf
    for idx, reason, n in con.execute(
        "SELECT _file_idx, r, count(*) FROM (SELECT _file_idx, unnest(reasons) AS r FROM quarantine) "
        "GROUP BY ALL ORDER BY 1, 2"
    ).fetchall():
        reps[idx].reasons[reason] = n
    # adapter-level quarantine counts source records, not events: reported separately
    for idx, (_f, conv) in enumerate(todo):
        if conv is not None and idx in reps:
            n_src_q = con.execute(
                "SELECT count(*) FROM quarantine WHERE _file_idx = ? AND _row IS NULL "
                "AND reasons <> ['malformed_row']",
                [idx],
            ).fetchone()[0]
            rep = reps[idx]
            rep.adapter = dict(rep.adapter or {})
            rep.adapter["source_records_quarantined"] = n_src_q
            rep.adapter["note"] = (
                "rows_read counts canonical events produced by the adapter; "
                "unmappable source records are in the quarantine too and "
                "reconcile in the adapter report"
            )


def manifest_summary(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest["totals"], sort_keys=True)
