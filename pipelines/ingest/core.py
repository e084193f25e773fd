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
    sha256_file,
)
from pipelines.logs import get_logger
from pipelines.warehouse import (
    Warehouse,
    atomic_replace_dir,
    atomic_write_json,
    connect,
    fault_point,
)
from quality import runner
from quality.suites import build_suites
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


def ingest(paths: Sequence[Path | str], cfg: Config, *, converted: Sequence[ConvertedInput] = (),
           ingest_time: datetime | None = None, progress: Progress | None = None) -> IngestResult:
    """Ingest files (and adapter outputs) as one batch. Takes the warehouse lock."""
    wh = Warehouse.from_config(cfg)
    wh.ensure()
    with wh.lock(cfg.run.lock_timeout_seconds):
        return _ingest_locked(wh, [Path(p) for p in paths], cfg, list(converted),
                              ingest_time or _utcnow(), progress or (lambda s, f: None))


def _ingest_locked(wh: Warehouse, paths: list[Path], cfg: Config,
                   converted: list[ConvertedInput], ingest_time: datetime,
                   progress: Progress) -> IngestResult:
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    contract = load_contract()
    wh.sweep_uncommitted()
    manifests = wh.committed_manifests()
    # a file counts as ingested once any of its rows reached the log
    seen_hashes = {f["sha256"]: m["batch_id"] for m in manifests for f in m["files"]
                   if f["status"] == "accepted" or (f["status"] == "gate_failed" and f["accepted"])}

    progress("discover", 0.0)
    files = discover(paths, cfg.ingest.file_globs, cfg.ingest.recursive) if paths else []
    inputs: list[tuple[InputFile, ConvertedInput | None]] = []
    reports: list[FileReport] = []
    for p in files:
        try:
            inputs.append((describe_file(p), None))
        except FileRejected as e:
            reports.append(FileReport(path=str(p), sha256="", format="?", size_bytes=p.stat().st_size,
                                      status="rejected", message=e.message,
                                      reasons={e.reason_code: 1}))
    for c in converted:
        inputs.append((c.describe(), c))
    timings["hash"] = time.perf_counter() - t0

    todo: list[tuple[InputFile, ConvertedInput | None]] = []
    batch_hashes: set[str] = set()
    for f, c in inputs:
        if f.sha256 in seen_hashes or f.sha256 in batch_hashes:
            reports.append(FileReport(path=f.display_path, sha256=f.sha256, format=f.fmt,
                                      size_bytes=f.size_bytes, status="already_ingested",
                                      message=f"identical file already ingested in batch "
                                              f"{seen_hashes.get(f.sha256, 'this batch')}"))
        else:
            batch_hashes.add(f.sha256)
            todo.append((f, c))
    if not todo and not any(r.status == "rejected" for r in reports):
        log.info("ingest.noop", files=len(reports))
        return IngestResult(batch_id=None, files=reports, timings=timings)

    batch_id = (manifests[-1]["batch_id"] + 1) if manifests else 1
    first_seq = (manifests[-1]["last_seq"] + 1) if manifests else 1
    log.info("ingest.batch_start", batch_id=batch_id, files=len(todo))

    con = connect(cfg, wh=wh)
    try:
        result = _run_batch(con, wh, cfg, contract, batch_id, first_seq, todo, reports,
                            ingest_time, progress, timings)
    finally:
        con.close()
    result.timings["total"] = time.perf_counter() - t0
    result.peak_rss_mb = _peak_rss_mb()
    log.info("ingest.batch_done", batch_id=batch_id, rows_read=result.rows_read,
             accepted=result.accepted, quarantined=result.quarantined,
             duplicates=result.duplicates, reconciled=result.reconciled,
             gate_passed=result.gate_passed, seconds=round(result.timings["total"], 2))
    return result


def _peak_rss_mb() -> float:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except Exception:  # pragma: no cover - non-POSIX
        return psutil.Process().memory_info().rss / 1e6


def _q(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _run_batch(con: duckdb.DuckDBPyConnection, wh: Warehouse, cfg: Config, contract: Contract,
               batch_id: int, first_seq: int, todo: list[tuple[InputFile, ConvertedInput | None]],
               reports: list[FileReport], ingest_time: datetime, progress: Progress,
               timings: dict[str, float]) -> IngestResult:
    tick = time.perf_counter()
    storage = contract.storage_columns()
    # ---- 2. load ---------------------------------------------------------------------------
    staged_parts: list[str] = []
    file_reports: dict[int, FileReport] = {}
    raw_tables: dict[int, Any] = {}
    for idx, (f, conv) in enumerate(todo):
        progress(f"read {Path(f.display_path).name}", idx / max(len(todo), 1))
        rep = FileReport(path=f.display_path, sha256=f.sha256, format=f.fmt,
                         size_bytes=f.size_bytes, status="accepted",
                         adapter=(conv.report if conv else None))
        file_reports[idx] = rep
        try:
            raw = load_raw(con, f, f"raw_{idx}", contract, cfg.ingest.csv_delimiter)
        except FileRejected as e:
            rep.status, rep.message = "rejected", e.message
            rep.reasons = {e.reason_code: 1}
            log.warning("ingest.file_rejected", file=f.display_path, reason=e.reason_code)
            continue
        raw_tables[idx] = raw
        rep.rows_read = raw.rows + raw.malformed
        rep.malformed = raw.malformed
        staged_parts.append(stage_select(raw, idx, f.display_path, contract, f.fmt == "jsonl"))
    timings["read"] = time.perf_counter() - tick
    tick = time.perf_counter()

    # ---- 3. normalise ----------------------------------------------------------------------
    progress("normalise", 0.0)
    empty_stage = not staged_parts
    if empty_stage:
        staged_parts = [_empty_stage(contract)]
    con.execute("CREATE TABLE stage0 AS " + "\nUNION ALL BY NAME\n".join(staged_parts))
    default_source = cfg.ingest.default_source or None
    con.execute(f"""
        CREATE TABLE stage1 AS
        SELECT * EXCLUDE (source),
               coalesce(source, {_q(default_source) if default_source else 'NULL'}) AS source,
               {family_case(contract)} AS family,
               CAST({_q(ingest_time.isoformat(sep=' '))} AS TIMESTAMP) AS ingested_at
        FROM stage0
    """)
    con.execute("DROP TABLE stage0")
    con.execute(f"""
        CREATE TABLE staged AS
        SELECT * EXCLUDE (event_id),
               coalesce(event_id, 'h' || content_hash) AS event_id,
               event_id IS NULL AS event_id_derived
        FROM (SELECT *, {content_hash_expr(contract)} AS content_hash FROM stage1)
    """)
    con.execute("DROP TABLE stage1")
    log_files = wh.committed_event_files()
    _add_helper_columns(con, log_files)
    timings["normalise"] = time.perf_counter() - tick
    tick = time.perf_counter()

    # ---- 4. quality ------------------------------------------------------------------------
    progress("quality", 0.0)
    suites = build_suites(cfg, contract)
    runner.apply_checks(con, "staged_h", "checked", suites)
    con.execute("DROP TABLE staged_h")
    counts = runner.check_counts(con, "checked", suites)
    gate = runner.gate(counts)
    for idx, failing in gate.failed_files.items():
        rep = file_reports[idx]
        rep.status = "gate_failed"
        rep.failed_checks = [f"{c.suite}.{c.reason_code} ({c.failed}/{c.in_scope} failed, "
                             f"mostly={c.mostly})" for c in failing]
        rep.message = "quality gate failed: " + "; ".join(rep.failed_checks)
        log.warning("ingest.gate_failed", file=rep.path, checks=len(failing))
    timings["quality"] = time.perf_counter() - tick
    tick = time.perf_counter()

    gx_results: dict[str, Any] | None = None
    staged_parquet = wh.tmp_dir / f"staged-{batch_id:06d}.parquet"
    if cfg.quality.gx_validation and not empty_stage:
        progress("great-expectations", 0.0)
        con.execute(f"COPY (SELECT * EXCLUDE (reasons) FROM checked) TO {_q(str(staged_parquet))} "
                    "(FORMAT parquet)")
        in_scope = {c.suite for c in counts if c.in_scope}
        gx_results = runner.gx_validate(staged_parquet, [s for s in suites if s.name in in_scope],
                                        threads=cfg.engine.threads,
                                        memory_limit=cfg.engine.memory_limit)
        staged_parquet.unlink(missing_ok=True)
        runner.crosscheck(gx_results, counts)
    timings["great_expectations"] = time.perf_counter() - tick
    tick = time.perf_counter()

    # ---- 5. de-duplicate -------------------------------------------------------------------
    progress("deduplicate", 0.0)
    reject_files = [i for i in gate.failed_files if cfg.quality.on_gate_failure == "reject"]
    reject_list = ", ".join(str(i) for i in reject_files) or "-1"
    _classify(con, log_files, reject_list)
    timings["deduplicate"] = time.perf_counter() - tick
    tick = time.perf_counter()

    # ---- 6. write --------------------------------------------------------------------------
    progress("write", 0.0)
    n_acc = con.execute("SELECT count(*) FROM classified WHERE outcome = 'accepted'").fetchone()[0]
    last_seq = first_seq + n_acc - 1
    cols = ", ".join(
        c.name for c in storage if c.name not in ("schema_version", "batch_id", "ingest_seq",
                                                  "recorded_at_imputed", "recorded_at")
    )
    event_files: list[str] = []
    tmp_events = wh.events_dir / f".tmp-batch={batch_id:06d}"
    final_events = wh.batch_events_dir(batch_id)
    if n_acc:
        tmp_events.mkdir(parents=True, exist_ok=True)
        part = tmp_events / "part-0.parquet"
        con.execute(f"""
            COPY (
              SELECT {', '.join(_storage_select(c.name, contract, batch_id, first_seq) for c in storage)}
              FROM (SELECT {cols}, recorded_at, _file_idx, _row,
                           row_number() OVER (ORDER BY _file_idx, _row) AS _n
                    FROM classified WHERE outcome = 'accepted')
              ORDER BY _n
            ) TO {_q(str(part))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 500000)
        """)
        event_files.append(str((final_events / "part-0.parquet").relative_to(wh.root)))

    q_path, d_path = _write_quarantine_and_duplicates(con, wh, batch_id, todo, raw_tables,
                                                       ingest_time, converted_quarantine=[
                                                           (i, c) for i, (f, c) in enumerate(todo)
                                                           if c is not None and c.quarantine_path])
    _fill_file_counts(con, file_reports, todo)
    docs_dir_tmp = wh.quality_dir / f".tmp-batch={batch_id:06d}"
    docs_dir = wh.quality_dir / f"batch={batch_id:06d}"
    docs_dir_tmp.mkdir(parents=True, exist_ok=True)
    all_reports = reports + [file_reports[i] for i in sorted(file_reports)]
    runner.render_data_docs(docs_dir_tmp / "data_docs.html", batch_id=batch_id,
                            files=[file_reports[i].to_dict() for i in sorted(file_reports)],
                            counts=counts, suites=suites, gx_results=gx_results)
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
        import shutil

        shutil.rmtree(docs_dir)
    atomic_replace_dir(docs_dir_tmp, docs_dir)
    manifest = {
        "batch_id": batch_id,
        "schema_version": contract.schema_version,
        "ingested_at": ingest_time.isoformat(),
        "first_seq": first_seq if n_acc else first_seq - 1,
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
        "quality_checks": {f"{c.suite}.{c.reason_code}": c.failed
                           for c in _sum_counts(counts)},
        "parameters": cfg.to_dict(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    atomic_write_json(wh.manifest_path(batch_id), manifest)
    fault_point("ingest.after_manifest")
    return IngestResult(batch_id=batch_id, files=all_reports,
                        manifest_path=wh.manifest_path(batch_id),
                        data_docs_path=docs_dir / "data_docs.html", timings=timings)


def _sum_counts(counts: list[runner.CheckCount]) -> list[runner.CheckCount]:
    acc: dict[tuple[str, str], runner.CheckCount] = {}
    for c in counts:
        k = (c.suite, c.reason_code)
        if k in acc:
            p = acc[k]
            acc[k] = runner.CheckCount(-1, c.suite, c.reason_code, p.in_scope + c.in_scope,
                                       p.failed + c.failed, c.mostly)
        else:
            acc[k] = runner.CheckCount(-1, c.suite, c.reason_code, c.in_scope, c.failed, c.mostly)
    return [acc[k] for k in sorted(acc)]


def _storage_select(name: str, contract: Contract, batch_id: int, first_seq: int) -> str:
    """Expression for one storage column, cast to its contract type (Arrow schema = contract)."""
    typ = contract.column(name).duckdb_type
    expr = {
        "schema_version": str(contract.schema_version),
        "batch_id": str(batch_id),
        "ingest_seq": f"{first_seq} + _n - 1",
        "recorded_at": "coalesce(recorded_at, ingested_at)",
        "recorded_at_imputed": "recorded_at IS NULL",
    }.get(name, name)
    return f"CAST({expr} AS {typ}) AS {name}"


def _empty_stage(contract: Contract) -> str:
    cols = ", ".join(f"CAST(NULL AS {c.duckdb_type}) AS {c.name}" for c in contract.contract_columns)
    return (f"SELECT CAST(NULL AS INTEGER) AS _file_idx, CAST(NULL AS BIGINT) AS _row, {cols}, "
            "CAST([] AS VARCHAR[]) AS _parse_errors, CAST(NULL AS VARCHAR) AS source_file, "
            "CAST(NULL AS BIGINT) AS source_row, CAST(NULL AS VARCHAR) AS extra WHERE false")


def _log_relation(log_files: list[Path], columns: str) -> str:
    files = "[" + ", ".join(_q(str(p)) for p in log_files) + "]"
    return f"(SELECT {columns} FROM read_parquet({files}))"


def _add_helper_columns(con: duckdb.DuckDBPyConnection, log_files: list[Path]) -> None:
    """Columns the clinical rules need that look beyond the row (see quality/rules.yaml)."""
    stops = "SELECT DISTINCT patient_id, drug FROM staged WHERE event_type = 'stopped' AND drug IS NOT NULL"
    first_sources = [
        "SELECT patient_id, drug, occurred_at FROM staged WHERE family = 'therapy' "
        "AND event_type <> 'stopped' AND drug IS NOT NULL AND occurred_at IS NOT NULL"
    ]
    targets_sources = ["SELECT source, event_id, patient_id FROM staged"]
    if log_files:
        lg = _log_relation(log_files, "patient_id, drug, occurred_at, family, event_type, source, event_id")
        first_sources.append(
            f"SELECT l.patient_id, l.drug, l.occurred_at FROM {lg} l SEMI JOIN ({stops}) s "
            "ON l.patient_id = s.patient_id AND l.drug = s.drug "
            "WHERE l.family = 'therapy' AND l.event_type <> 'stopped'")
        targets_sources.append(
            f"SELECT l.source, l.event_id, l.patient_id FROM {lg} l SEMI JOIN "
            "(SELECT source, target_event_id FROM staged WHERE target_event_id IS NOT NULL) t "
            "ON l.event_id = t.target_event_id AND l.source IS NOT DISTINCT FROM t.source")
    con.execute(f"""
        CREATE TABLE staged_h AS
        WITH first_events AS (
            SELECT f.patient_id, f.drug, min(f.occurred_at) AS first_at
            FROM ({' UNION ALL '.join(first_sources)}) f SEMI JOIN ({stops}) s
              ON f.patient_id = s.patient_id AND f.drug = s.drug
            GROUP BY ALL
        ),
        targets AS (
            SELECT source, event_id, any_value(patient_id) AS target_patient_id
            FROM ({' UNION ALL '.join(targets_sources)})
            WHERE event_id IN (SELECT target_event_id FROM staged WHERE target_event_id IS NOT NULL)
            GROUP BY ALL
        )
        SELECT s.*, fe.first_at AS _first_drug_event_at, t.target_patient_id AS _target_patient_id
        FROM staged s
        LEFT JOIN first_events fe
          ON s.event_type = 'stopped' AND s.patient_id = fe.patient_id AND s.drug = fe.drug
        LEFT JOIN targets t
          ON s.target_event_id = t.event_id AND s.source IS NOT DISTINCT FROM t.source
        ORDER BY s._file_idx, s._row
    """)
    con.execute("DROP TABLE staged")


def _classify(con: duckdb.DuckDBPyConnection, log_files: list[Path], reject_list: str) -> None:
    """outcome per row: accepted | quarantined | duplicate (and conflict detail)."""
    if log_files:
        lg = _log_relation(log_files, "source, event_id, content_hash, batch_id, ingest_seq")
        con.execute(f"""
            CREATE TABLE log_keys AS
            SELECT l.* FROM {lg} l
            SEMI JOIN (SELECT DISTINCT source, event_id FROM checked) c
              ON l.event_id = c.event_id AND l.source IS NOT DISTINCT FROM c.source
        """)
    else:
        con.execute("CREATE TABLE log_keys (source VARCHAR, event_id VARCHAR, content_hash VARCHAR, "
                    "batch_id BIGINT, ingest_seq BIGINT)")
    con.execute(f"""
        CREATE TABLE classified AS
        WITH candidates AS (
            SELECT *,
                   len(reasons) = 0 AND _file_idx NOT IN ({reject_list}) AS is_valid
            FROM checked
        ),
        ranked AS (
            SELECT c.*,
                   CASE WHEN is_valid THEN row_number() OVER (
                       PARTITION BY is_valid, source, event_id ORDER BY _file_idx, _row) END AS rn,
                   CASE WHEN is_valid THEN first_value(content_hash) OVER (
                       PARTITION BY is_valid, source, event_id ORDER BY _file_idx, _row) END AS first_hash,
                   CASE WHEN is_valid THEN first_value(source_file || ' line ' || source_row) OVER (
                       PARTITION BY is_valid, source, event_id ORDER BY _file_idx, _row) END AS first_ref
            FROM candidates c
        ),
        final AS (
            SELECT r.*,
                CASE
                  WHEN NOT is_valid THEN 'quarantined'
                  WHEN k.event_id IS NOT NULL AND k.content_hash = r.content_hash THEN 'duplicate'
                  WHEN k.event_id IS NOT NULL THEN 'quarantined'
                  WHEN rn > 1 AND first_hash = r.content_hash THEN 'duplicate'
                  WHEN rn > 1 THEN 'quarantined'
                  ELSE 'accepted'
                END AS outcome,
                CASE
                  WHEN NOT is_valid THEN NULL
                  WHEN k.event_id IS NOT NULL THEN 'batch ' || k.batch_id || ' ingest_seq ' || k.ingest_seq
                  WHEN rn > 1 THEN 'this batch: ' || first_ref
                END AS other_version,
                is_valid AND ((k.event_id IS NOT NULL AND k.content_hash <> r.content_hash)
                    OR (k.event_id IS NULL AND rn > 1 AND first_hash <> r.content_hash)) AS is_conflict
            FROM ranked r
            LEFT JOIN log_keys k ON r.event_id = k.event_id AND r.source IS NOT DISTINCT FROM k.source
        )
        SELECT * EXCLUDE (reasons),
               CASE WHEN is_conflict THEN list_append(reasons, 'event_id_conflict')
                    WHEN outcome = 'quarantined' AND len(reasons) = 0 THEN ['file_failed_gate']
                    ELSE reasons END AS reasons
        FROM final
        ORDER BY _file_idx, _row
    """)


def _write_quarantine_and_duplicates(
        con: duckdb.DuckDBPyConnection, wh: Warehouse, batch_id: int,
        todo: list[tuple[InputFile, ConvertedInput | None]], raw_tables: dict[int, Any],
        ingest_time: datetime, converted_quarantine: list[tuple[int, ConvertedInput]],
) -> tuple[Path | None, Path | None]:
    # original rows: JSON of the raw text row (JSON Lines: the line itself)
    parts = []
    for idx, raw in raw_tables.items():
        fmt = todo[idx][0].fmt
        if fmt == "jsonl":
            orig = "r._json"
        else:
            struct = ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}': r.\"{c.replace(chr(34), chr(34) * 2)}\""
                               for c in raw.columns)
            orig = f"CAST(to_json({{{struct}}}) AS VARCHAR)"
        parts.append(f"""
            SELECT q._file_idx, q._row, q.source_file, q.source_row, q.event_id, q.patient_id,
                   q.event_type, q.reasons, q.other_version AS conflict_with, {orig} AS original
            FROM classified q JOIN {raw.table} r ON q._row = r._row
            WHERE q._file_idx = {idx} AND q.outcome = 'quarantined'
        """)
        parts.append(f"""
            SELECT {idx} AS _file_idx, m._row, {_q(todo[idx][0].display_path)} AS source_file,
                   m._row AS source_row, NULL AS event_id, NULL AS patient_id, NULL AS event_type,
                   ['malformed_row'] AS reasons, m.detail AS conflict_with, m.original
            FROM {raw.table}_malformed m
        """)
    for idx, conv in converted_quarantine:
        parts.append(f"""
            SELECT {idx} AS _file_idx, CAST(NULL AS BIGINT) AS _row, source_file, source_row,
                   NULL AS event_id, NULL AS patient_id, NULL AS event_type,
                   CAST(reasons AS VARCHAR[]) AS reasons, NULL AS conflict_with, original
            FROM read_parquet({_q(str(conv.quarantine_path))})
        """)
    q_path = d_path = None
    if parts:
        con.execute("CREATE TABLE quarantine AS " + " UNION ALL BY NAME ".join(parts))
    else:
        con.execute("CREATE TABLE quarantine (_file_idx INTEGER, _row BIGINT, source_file VARCHAR, "
                    "source_row BIGINT, event_id VARCHAR, patient_id VARCHAR, event_type VARCHAR, "
                    "reasons VARCHAR[], conflict_with VARCHAR, original VARCHAR)")
    n_q = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    if n_q:
        q_path = wh.quarantine_dir / f"batch={batch_id:06d}.parquet"
        tmp = wh.quarantine_dir / f".tmp-batch={batch_id:06d}.parquet"
        con.execute(f"""
            COPY (SELECT CAST({batch_id} AS BIGINT) AS batch_id, source_file, source_row, event_id, patient_id,
                         event_type, reasons, conflict_with, original,
                         CAST({_q(ingest_time.isoformat(sep=' '))} AS TIMESTAMP) AS quarantined_at
                  FROM quarantine ORDER BY _file_idx, source_row NULLS LAST, _row)
            TO {_q(str(tmp))} (FORMAT parquet, COMPRESSION zstd)
        """)
        tmp.rename(q_path)
    n_d = con.execute("SELECT count(*) FROM classified WHERE outcome = 'duplicate'").fetchone()[0]
    if n_d:
        d_path = wh.duplicates_dir / f"batch={batch_id:06d}.parquet"
        tmp = wh.duplicates_dir / f".tmp-batch={batch_id:06d}.parquet"
        con.execute(f"""
            COPY (SELECT CAST({batch_id} AS BIGINT) AS batch_id, source_file, source_row, source, event_id,
                         other_version AS duplicate_of
                  FROM classified WHERE outcome = 'duplicate' ORDER BY _file_idx, _row)
            TO {_q(str(tmp))} (FORMAT parquet, COMPRESSION zstd)
        """)
        tmp.rename(d_path)
    return q_path, d_path


def _fill_file_counts(con: duckdb.DuckDBPyConnection, reps: dict[int, FileReport],
                      todo: list[tuple[InputFile, ConvertedInput | None]]) -> None:
    for idx, outcome, n in con.execute(
        "SELECT _file_idx, outcome, count(*) FROM classified GROUP BY ALL"
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
                "AND reasons <> ['malformed_row']", [idx]).fetchone()[0]
            rep = reps[idx]
            rep.adapter = dict(rep.adapter or {})
            rep.adapter["source_records_quarantined"] = n_src_q
            rep.adapter["note"] = ("rows_read counts canonical events produced by the adapter; "
                                   "unmappable source records are in the quarantine too and "
                                   "reconcile in the adapter report")


def manifest_summary(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest["totals"], sort_keys=True)
