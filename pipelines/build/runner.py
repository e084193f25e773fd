"""The build: replay the event log as of a moment into the derived tables.

Python only orders the steps, binds parameters and records attrition; every table is a DuckDB SQL
file in transforms/ (see models.py).

As of T: ``log_events`` holds the committed events with ``recorded_at <= T`` and
``occurred_at <= T`` (what was known at T about what had happened by T). Parameters are bound as
DuckDB variables (``getvariable('persistence_window_days')``), plus ``as_of`` (TIMESTAMP) and
``as_of_date`` (DATE).

Full build: every model over every visible event. Incremental build (the default when the
previous published build is compatible: same evaluation date, parameters, transforms and
reference data): only the patients whose visible events changed are recomputed, through the
same SQL with ``log_events`` restricted to them. Their rows are written as a delta part of each
per-patient table, beside the previous build's parts (hard links); past ``build.max_delta_parts``
the build compacts instead: their rows replace theirs in the previous tables, rewritten whole.
Cohort-level models are recomputed from the resulting tables. Every file is sorted by its
table's total order, so a compacted incremental build is byte-identical to a full rebuild, and
one with delta parts reads the same rows (layout.py; tests/test_build_event_sourcing.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from pipelines.build import layout, reference
from pipelines.build.models import TRANSFORMS_DIR, Model, code_hash, load_models
from pipelines.config import Config, ConfigError
from pipelines.logs import get_logger
from pipelines.warehouse import (
    Warehouse,
    atomic_replace_dir,
    atomic_write_json,
    connect,
    fault_point,
    fsync_dir,
    fsync_file,
    resolve_memory_limit,
    sql_list,
    sql_literal,
)
from schemas.contract import load_contract
from schemas.upcasters import upcast_sql

log = get_logger("txh.build")
Progress = Callable[[str, float], None]


@dataclass
class StepStats:
    name: str
    layer: str
    rows: int
    patients: int | None
    seconds: float
    write_seconds: float = 0.0  # writing the table's Parquet (sorted, zstd)
    inputs: dict[str, dict[str, int | None]] = field(default_factory=dict)
    attrition: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class BuildResult:
    build_id: str
    as_of: datetime
    mode: str  # full | incremental | unchanged
    reason: str
    output_dir: Path
    steps: list[StepStats]
    affected_patients: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    published: bool = False  # the warehouse points at this build (also when it was unchanged)
    max_batch_id: int | None = None  # the last log batch the build read (--until-batch or all)

    def summary(self) -> dict[str, Any]:
        """Machine-readable summary (``txh build --json`` and the run record's ``build``)."""
        return {
            "build_id": self.build_id,
            "as_of": self.as_of.isoformat(sep=" "),
            "mode": self.mode,
            "reason": self.reason,
            "affected_patients": self.affected_patients,
            "published": self.published,
            "max_batch_id": self.max_batch_id,
            "output_dir": str(self.output_dir),
            "steps": [
                {
                    "name": s.name,
                    "layer": s.layer,
                    "rows": s.rows,
                    "patients": s.patients,
                    "seconds": s.seconds,
                    "write_seconds": s.write_seconds,
                }
                for s in self.steps
            ],
            "phases": {k: round(v, 3) for k, v in self.timings.items()},
            "seconds": round(self.timings.get("total", 0.0), 3),
        }


def _sql_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return sql_literal(str(v))


def params_dict(cfg: Config) -> dict[str, Any]:
    return {f.name: getattr(cfg.params, f.name) for f in fields(cfg.params)}


def macro_files(root: Path = TRANSFORMS_DIR) -> list[Path]:
    """The shared SQL macros (transforms/macros/*.sql), in name order."""
    return sorted((root / "macros").glob("*.sql"))


def binding_statements(cfg: Config, as_of: datetime) -> list[str]:
    """The SQL every model runs after: the shared macros, the parameters as DuckDB variables,
    and the as-of moment (executed by ``bind_params``, written out by the dry run)."""
    out = [f"-- {p.relative_to(TRANSFORMS_DIR)}\n{p.read_text()}" for p in macro_files()]
    out += [f"SET VARIABLE {k} = {_sql_value(v)};" for k, v in params_dict(cfg).items()]
    out += [
        f"SET VARIABLE as_of = CAST({sql_literal(as_of.isoformat(sep=' '))} AS TIMESTAMP);",
        f"SET VARIABLE as_of_date = CAST({sql_literal(as_of.date().isoformat())} AS DATE);",
    ]
    return out


def bind_params(con: duckdb.DuckDBPyConnection, cfg: Config, as_of: datetime) -> None:
    """Parameters as DuckDB variables, the as-of moment, and the shared macros the SQL uses."""
    for statement in binding_statements(cfg, as_of):
        con.execute(statement)


def log_relation(files_by_version: dict[int, list[Path]]) -> str:
    """SQL over the committed event files, each version upcast to the current contract."""
    parts = []
    for version, files in sorted(files_by_version.items()):
        if files:
            rel = (
                "SELECT * FROM read_parquet(["
                + ", ".join(sql_literal(str(f)) for f in files)
                + "])"
            )
            parts.append(upcast_sql(rel, version))
    if not parts:
        cols = ", ".join(
            f"CAST(NULL AS {c.duckdb_type}) AS {c.name}" for c in load_contract().storage_columns()
        )
        return f"SELECT {cols} WHERE false"
    return " UNION ALL ".join(parts)


def create_log_view(
    con: duckdb.DuckDBPyConnection,
    files_by_version: dict[int, list[Path]],
    patient_filter: str | None = None,
) -> None:
    """``log_events``: committed events visible as of getvariable('as_of')."""
    restrict = (
        f" AND patient_id IN (SELECT patient_id FROM {patient_filter})" if patient_filter else ""
    )
    con.execute(f"""
        CREATE OR REPLACE VIEW log_events AS
        SELECT * FROM ({log_relation(files_by_version)})
        WHERE recorded_at <= getvariable('as_of') AND occurred_at <= getvariable('as_of'){restrict}
    """)


def files_by_version(wh: Warehouse, up_to_batch: int | None = None) -> dict[int, list[Path]]:
    out: dict[int, list[Path]] = {}
    for m in wh.committed_manifests():
        if up_to_batch is not None and m["batch_id"] > up_to_batch:
            continue
        out.setdefault(int(m.get("schema_version", 1)), []).extend(
            wh.root / f for f in m.get("event_files", [])
        )
    return out


class ModelError(RuntimeError):
    """A transform failed: names the model and its SQL file (the DuckDB message follows)."""


def run_model(con: duckdb.DuckDBPyConnection, model: Model) -> float:
    t = time.perf_counter()
    try:
        con.execute(f"CREATE OR REPLACE TABLE {model.name} AS\n{model.sql}")
    except duckdb.Error as e:
        hint = (
            "\nBuilds compute the per-patient tables for groups of patients in turn: lower "
            "build.patient_bucket_events (the visible events per group; full builds with "
            "build.patient_buckets: auto, and incremental builds), set build.patient_buckets to "
            "more groups (full builds), or raise engine.memory_limit."
            if isinstance(e, duckdb.OutOfMemoryException) and model.per_patient
            else ""
        )
        raise ModelError(
            f"model {model.name} ({model.sql_path.name}) failed: {type(e).__name__}: {e}{hint}"
        ) from e
    return time.perf_counter() - t


def table_stats(
    con: duckdb.DuckDBPyConnection, name: str, per_patient: bool
) -> tuple[int, int | None]:
    if per_patient:
        rows, pats = con.execute(
            f"SELECT count(*), count(DISTINCT patient_id) FROM {name}"
        ).fetchone()
        return rows, pats
    return con.execute(f"SELECT count(*) FROM {name}").fetchone()[0], None


def provide_previous(
    con: duckdb.DuckDBPyConnection,
    model: Model,
    snapshot: Path | None,
    patient_filter: str | None = None,
) -> None:
    """``<x>_previous`` for a model reading the previous snapshot of ``x`` (empty if none)."""
    target = model.previous_snapshot_of
    if not target:
        return
    if snapshot is None:
        con.execute(
            f"CREATE OR REPLACE VIEW {target}_previous AS SELECT * FROM {target} WHERE false"
        )
        return
    restrict = (
        f" WHERE patient_id IN (SELECT patient_id FROM {patient_filter})" if patient_filter else ""
    )
    con.execute(
        f"CREATE OR REPLACE VIEW {target}_previous AS "
        f"SELECT * FROM read_parquet({sql_literal(str(snapshot))}){restrict}"
    )


def previous_snapshot(wh: Warehouse, name: str, as_of: datetime) -> Path | None:
    """Latest snapshot of ``name`` with an as-of date before ``as_of``'s date (of that date,
    the latest build's)."""
    cur = as_of.date().isoformat()
    older = [files for d, files in layout.snapshot_files(wh.root, name).items() if d < cur]
    return older[-1][-1][1] if older else None


def save_snapshots(wh: Warehouse, models: list[Model], build_dir: Path, as_of: datetime) -> None:
    """Keep the snapshotted tables of this build by as-of date and build (later builds compare
    to them; layout.snapshot_files): a copy of the table's file, or its parts (delta parts, a
    grouped build's files) written as one file in the table's order. A new file each time,
    never one a published view lists."""
    manifest = layout.read_manifest(build_dir)
    by_name = {m.name: m for m in models}
    for name in sorted({m.previous_snapshot_of for m in models if m.previous_snapshot_of}):
        dst = layout.snapshot_file(wh.root, name, as_of.date().isoformat(), build_dir.name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".tmp-{dst.name}")
        if not layout.is_one_file(manifest, name):
            with duckdb.connect() as con:
                write_parquet(
                    con, by_name[name], tmp, source=layout.table_relation(build_dir, name, manifest)
                )
        else:
            shutil.copyfile(build_dir / f"{name}.parquet", tmp)
        # durable before it is named (like every published file): a later build compares to it
        fsync_file(tmp)
        os.replace(tmp, dst)
        fsync_dir(dst.parent)


def run_models(
    con: duckdb.DuckDBPyConnection,
    models: list[Model],
    progress: Progress,
    *,
    with_attrition: bool = True,
    previous: Callable[[Model], None] | None = None,
    after: Callable[[Model, StepStats], None] | None = None,
    known: dict[str, tuple[int, int | None]] | None = None,
) -> list[StepStats]:
    """Run ``models`` in order; each step records its rows and patients and those of its
    inputs (``known``: counts of tables built before, e.g. by an earlier pass)."""
    stats: list[StepStats] = []
    known = dict(known or {})
    for i, m in enumerate(models):
        progress(f"build {m.name}", i / max(len(models), 1))
        if m.previous_snapshot_of:
            if previous is None:
                provide_previous(con, m, None)
            else:
                previous(m)
        secs = run_model(con, m)
        rows, pats = table_stats(con, m.name, m.per_patient)
        known[m.name] = (rows, pats)
        step = StepStats(
            name=m.name, layer=m.layer, rows=rows, patients=pats, seconds=round(secs, 3)
        )
        for d in m.depends_on:
            if d == "log_events" and "log_events" not in known:
                known["log_events"] = table_stats(con, "log_events", True)
            r, p = known.get(d, (None, None))
            step.inputs[d] = {"rows": r, "patients": p}
        if with_attrition:
            for a in m.attrition:
                n = con.execute(a["sql"]).fetchone()[0]
                step.attrition.append({"reason": " ".join(a["reason"].split()), "rows": int(n)})
        stats.append(step)
        log.info("build.step", step=m.name, rows=rows, patients=pats, seconds=round(secs, 3))
        if after is not None:
            after(m, step)
    return stats


def write_parquet(
    con: duckdb.DuckDBPyConnection,
    model: Model,
    path: Path,
    source: str | None = None,
) -> None:
    """The model's table (or ``source``) as Parquet in the table's order."""
    src = source or model.name
    con.execute(
        f"COPY (SELECT * FROM {src} ORDER BY {', '.join(model.order_by)}) TO {sql_literal(str(path))} "
        "(FORMAT parquet, COMPRESSION zstd)"
    )


def write_and_swap(
    con: duckdb.DuckDBPyConnection,
    model: Model,
    path: Path,
    step: StepStats,
    source: str | None = None,
) -> None:
    """Write the model's table (or ``source``) to ``path`` as soon as it is computed, record the
    write time, drop the in-memory table and leave a view of the model's name over the Parquet
    (in an incremental build, the delta part: the recomputed patients' rows): later models read
    it from disk, so DuckDB's memory holds only the table being built (at 10M events, keeping
    every table in memory until the end made later steps spill: 392 s -> 213 s with this and
    the memory limit at half the RAM)."""
    tw = time.perf_counter()
    write_parquet(con, model, path, source=source)
    step.write_seconds = round(time.perf_counter() - tw, 3)
    con.execute(f"DROP TABLE {source or model.name}")
    con.execute(f"CREATE VIEW {model.name} AS SELECT * FROM read_parquet({sql_literal(str(path))})")


def select_models(models: list[Model], skip: list[str] | tuple[str, ...]) -> list[Model]:
    """Drop the models in ``skip`` and, transitively, every model depending on them."""
    if not skip:
        return models
    names = {m.name for m in models}
    unknown = sorted(set(skip) - names)
    if unknown:
        raise ConfigError(f"build.skip_models: unknown table(s) {unknown}; known: {sorted(names)}")
    dropped = set(skip)
    for m in models:  # models are in dependency order
        if any(d in dropped for d in m.depends_on):
            dropped.add(m.name)
    log.info("build.skip_models", skipped=sorted(dropped))
    return [m for m in models if m.name not in dropped]


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def read_current(wh: Warehouse) -> dict[str, Any] | None:
    if not wh.current_pointer.exists():
        return None
    ptr = json.loads(wh.current_pointer.read_text())
    manifest = wh.builds_dir / ptr["build_id"] / "build.json"
    return json.loads(manifest.read_text()) if manifest.exists() else None


def _next_build_id(wh: Warehouse) -> str:
    existing = [p.name for p in wh.builds_dir.glob("*") if p.name[:6].isdigit()]
    n = max((int(x[:6]) for x in existing), default=0) + 1
    return f"{n:06d}"


def build(
    cfg: Config,
    *,
    as_of: datetime | None = None,
    full: bool = False,
    progress: Progress | None = None,
    publish: bool | None = None,
    until_batch: int | None = None,
) -> BuildResult:
    """Build as of ``as_of`` (default now) and publish it. ``until_batch`` restricts the log to
    the batches a past build saw (reproducing it exactly even after backfills); such a build is
    always full and is not published unless ``publish`` says so: a reproduction must not
    replace the current warehouse nor add its statuses to the status history."""
    wh = Warehouse.from_config(cfg)
    wh.ensure()
    with wh.lock(cfg.run.lock_timeout_seconds):
        return _build_locked(
            wh,
            cfg,
            as_of or _utcnow(),
            full or until_batch is not None,
            progress or (lambda s, f: None),
            until_batch is None if publish is None else publish,
            until_batch,
        )


def _build_locked(
    wh: Warehouse,
    cfg: Config,
    as_of: datetime,
    full: bool,
    progress: Progress,
    publish: bool,
    until_batch: int | None = None,
) -> BuildResult:
    t0 = time.perf_counter()
    wh.sweep_uncommitted()
    models = select_models(load_models(), cfg.build.skip_models)
    manifests = [
        m for m in wh.committed_manifests() if until_batch is None or m["batch_id"] <= until_batch
    ]
    max_batch = manifests[-1]["batch_id"] if manifests else 0
    fbv = files_by_version(wh, until_batch)
    con = connect(cfg, wh=wh)
    try:
        bind_params(con, cfg, as_of)
        ref_files = reference.load_all(con, cfg)
        fingerprint = {
            "params": _hash_json(params_dict(cfg)),
            "code": code_hash(),
            "reference": reference.reference_hash(ref_files),
            "schema_version": load_contract().schema_version,
            # how tables lie on disk (layout.py); a build of another layout is not extended
            # incrementally (the version before delta parts would merge only the base part)
            "layout": layout.LAYOUT_VERSION,
            "models": [m.name for m in models],
        }
        prev = read_current(wh)
        mode, reason = _choose_mode(cfg, prev, fingerprint, as_of, full, max_batch)
        affected_n: int | None = None
        if mode == "incremental":
            assert prev is not None
            affected_n, visible_n = _affected_patients(con, fbv, prev, as_of)
            limit = cfg.build.incremental_max_affected_fraction
            if affected_n and affected_n > limit * visible_n:
                mode, reason = (
                    "full",
                    (
                        f"{affected_n} of {visible_n} patients affected "
                        f"(> build.incremental_max_affected_fraction = {limit}): a full rebuild is cheaper"
                    ),
                )
                affected_n = None
            elif affected_n == 0:
                con.close()
                log.info("build.unchanged", build_id=prev["build_id"])
                return BuildResult(
                    build_id=prev["build_id"],
                    as_of=as_of,
                    mode="unchanged",
                    reason="no visible event changed since the previous build",
                    output_dir=wh.builds_dir / prev["build_id"],
                    steps=[],
                    affected_patients=0,
                    timings={"total": time.perf_counter() - t0},
                    published=True,
                    max_batch_id=prev.get("max_batch_id"),
                )
        build_id = _next_build_id(wh)
        tmp_dir = wh.builds_dir / f".tmp-{build_id}"
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_dir.mkdir(parents=True)
        log.info(
            "build.start",
            build_id=build_id,
            mode=mode,
            as_of=as_of.isoformat(),
            affected_patients=affected_n,
        )
        layout_info: dict[str, Any] = {}
        n_groups = patient_groups(con, cfg, fbv) if mode == "full" else 1
        if n_groups > 1:
            steps, tables = _full_in_buckets(
                con, wh, models, fbv, tmp_dir, progress, as_of, n_groups
            )
            layout_info.update(patient_buckets=len(next(iter(tables.values()))), tables=tables)
        elif mode == "full":
            create_log_view(con, fbv)
            steps = run_models(
                con,
                models,
                progress,
                previous=lambda m: provide_previous(
                    con, m, previous_snapshot(wh, m.previous_snapshot_of or "", as_of)
                ),
                after=lambda m, step: write_and_swap(con, m, tmp_dir / f"{m.name}.parquet", step),
            )
        else:
            assert prev is not None
            steps, layout_info = _incremental(
                con, cfg, wh, models, fbv, prev, tmp_dir, build_id, progress, as_of
            )
        timings = {"models_and_write": time.perf_counter() - t0}
        manifest = {
            "build_id": build_id,
            "as_of": as_of.isoformat(sep=" "),
            "as_of_date": as_of.date().isoformat(),
            "mode": mode,
            "mode_reason": reason,
            "max_batch_id": max_batch,
            "until_batch": until_batch,
            # built to be published (pruning keeps build.keep_builds of those; a reproduction or
            # a report's build of another date does not take their place)
            "publish": publish,
            "affected_patients": affected_n,
            "fingerprint": fingerprint,
            "parameters": params_dict(cfg),
            "memory_limit": resolve_memory_limit(cfg.engine.memory_limit),
            # a grouped build's per-patient tables are files per group; an incremental build
            # with delta parts keeps the previous build's base parts (layout.py)
            "tables": {m.name: f"{m.name}.parquet" for m in models} | layout_info.pop("tables", {}),
            **layout_info,
            "steps": [asdict(s) for s in steps],
            "built_at": _utcnow().isoformat(sep=" "),
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        }
        atomic_write_json(tmp_dir / "build.json", manifest)
        final_dir = wh.builds_dir / build_id
        fault_point("build.before_rename")
        atomic_replace_dir(tmp_dir, final_dir)
        if publish:
            save_snapshots(wh, models, final_dir, as_of)
            fault_point("build.after_snapshots")
    finally:
        with contextlib.suppress(Exception):
            con.close()
    if publish:
        from pipelines.build.publish import publish_build

        progress("publish", 0.95)
        tp = time.perf_counter()
        publish_build(wh, cfg, build_id, models)
        timings["publish"] = time.perf_counter() - tp
    timings["total"] = time.perf_counter() - t0
    res = BuildResult(
        build_id=build_id,
        as_of=as_of,
        mode=mode,
        reason=reason,
        output_dir=final_dir,
        steps=steps,
        affected_patients=affected_n,
        timings=timings,
        published=publish,
        max_batch_id=max_batch,
    )
    log.info("build.done", build_id=build_id, mode=mode, seconds=round(res.timings["total"], 2))
    return res


def _choose_mode(
    cfg: Config,
    prev: dict[str, Any] | None,
    fingerprint: dict[str, Any],
    as_of: datetime,
    full: bool,
    max_batch: int,
) -> tuple[str, str]:
    if full:
        return "full", "requested (--full)"
    if not cfg.build.incremental:
        return "full", "incremental builds disabled (build.incremental = false)"
    if prev is None:
        return "full", "no previous build"
    if prev.get("fingerprint") != fingerprint:
        changed = [k for k in fingerprint if prev.get("fingerprint", {}).get(k) != fingerprint[k]]
        return "full", f"changed since the previous build: {', '.join(changed)}"
    if prev.get("as_of_date") != as_of.date().isoformat():
        return "full", (
            f"evaluation date changed ({prev.get('as_of_date')} -> {as_of.date()}): "
            "time-dependent outcomes (follow-up windows, ongoing trials) move for everyone"
        )
    if prev.get("max_batch_id", 0) > max_batch:
        return "full", "the log has fewer batches than the previous build saw"
    return "incremental", "same evaluation date, parameters and transforms as the previous build"


def _affected_patients(
    con: duckdb.DuckDBPyConnection,
    fbv: dict[int, list[Path]],
    prev: dict[str, Any],
    as_of: datetime,
) -> tuple[int, int]:
    """Patients whose set of visible events differs between the previous build and now (table
    ``affected``), and the patients with a visible event now."""
    prev_as_of = sql_literal(prev["as_of"])
    now = sql_literal(as_of.isoformat(sep=" "))
    # one row per patient (not per event): did any of its events change visibility, is any
    # visible now
    con.execute(f"""
        CREATE OR REPLACE TABLE patient_visibility AS
        SELECT
            patient_id,
            bool_or(seen_before <> seen_now) AS changed,
            bool_or(seen_now) AS visible
        FROM (
            SELECT
                patient_id,
                (batch_id <= {int(prev["max_batch_id"])}
                 AND recorded_at <= CAST({prev_as_of} AS TIMESTAMP)
                 AND occurred_at <= CAST({prev_as_of} AS TIMESTAMP)) AS seen_before,
                (recorded_at <= CAST({now} AS TIMESTAMP)
                 AND occurred_at <= CAST({now} AS TIMESTAMP)) AS seen_now
            FROM ({log_relation(fbv)})
        )
        GROUP BY patient_id
    """)
    con.execute(
        "CREATE OR REPLACE TABLE affected AS "
        "SELECT patient_id FROM patient_visibility WHERE changed"
    )
    affected, total = con.execute(
        "SELECT count(*) FILTER (WHERE changed), count(*) FILTER (WHERE visible) "
        "FROM patient_visibility"
    ).fetchone()
    con.execute("DROP TABLE patient_visibility")
    return affected, total


def _incremental(
    con: duckdb.DuckDBPyConnection,
    cfg: Config,
    wh: Warehouse,
    models: list[Model],
    fbv: dict[int, list[Path]],
    prev: dict[str, Any],
    out_dir: Path,
    build_id: str,
    progress: Progress,
    as_of: datetime,
) -> tuple[list[StepStats], dict[str, Any]]:
    """Recompute the affected patients, then either add their rows as a delta part of each
    per-patient table or, past ``build.max_delta_parts``, compact: rewrite every table whole
    (see layout.py). Returns the steps and the manifest's layout keys (``deltas``,
    ``recomputed``; none after compaction)."""
    prev_dir = wh.builds_dir / prev["build_id"]
    prev_manifest = layout.read_manifest(prev_dir)
    create_log_view(con, fbv, patient_filter="affected")
    per_patient = [m for m in models if m.per_patient]
    cohort = [m for m in models if not m.per_patient]
    n_deltas = max(
        (len(layout.delta_builds(prev_manifest, t)) for t in prev_manifest.get("deltas", {})),
        default=0,
    )
    compact = n_deltas + 1 > cfg.build.max_delta_parts
    info: dict[str, Any] = {"compacted": compact}
    if not compact:
        # the last build that recomputed each patient: the previous record, this build's
        # affected patients now pointing here
        gen = int(build_id)
        prev_rec = (
            f"SELECT patient_id, build_id FROM read_parquet("
            f"{sql_literal(str(prev_dir / prev_manifest['recomputed']))}) "
            "WHERE patient_id NOT IN (SELECT patient_id FROM affected) UNION ALL "
            if prev_manifest.get("recomputed")
            else ""
        )
        con.execute(
            f"COPY (SELECT * FROM ({prev_rec}SELECT patient_id, CAST({gen} AS INTEGER) AS build_id "
            f"FROM affected) ORDER BY patient_id) TO {sql_literal(str(out_dir / layout.RECOMPUTED))} "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
        info["recomputed"] = layout.RECOMPUTED
        info["deltas"] = {}
        info["tables"] = {}

    def _link_previous_parts(m: Model, new_deltas: list[str]) -> None:
        for f in layout.table_files(prev_dir, m.name, prev_manifest):
            layout.link_or_copy(f, out_dir / f.name)
        info["tables"][m.name] = prev_manifest.get("tables", {}).get(m.name, f"{m.name}.parquet")
        info["deltas"][m.name] = [*prev_manifest.get("deltas", {}).get(m.name, []), *new_deltas]

    def write_delta(m: Model, step: StepStats) -> None:
        # as in a full build, each table is written as soon as it is computed and the next
        # models read it from its Parquet (here the delta part: the recomputed patients' rows),
        # so DuckDB's memory holds only the table being built
        _link_previous_parts(m, [layout.delta_file(m.name, build_id)])
        write_and_swap(con, m, out_dir / layout.delta_file(m.name, build_id), step)

    recomputed_files: dict[str, list[Path]] = {}  # compaction: the groups' recomputed rows
    n_groups = patient_groups(con, cfg, fbv, scope="affected")
    if n_groups > 1:  # the recomputed patients in groups, as a full build's (see there)
        merged, files = _per_patient_in_groups(
            con,
            per_patient,
            fbv,
            lambda m, k: (
                out_dir
                / (
                    f"{m.name}.recomputed.part-{k:05d}.parquet"
                    if compact
                    else layout.delta_file(m.name, build_id, k)
                )
            ),
            progress,
            {
                m.name: previous_snapshot(wh, m.previous_snapshot_of, as_of)
                for m in per_patient
                if m.previous_snapshot_of
            },
            n_groups,
            scope="affected",
        )
        steps = [merged[m.name] for m in per_patient]
        info["patient_buckets"] = len(next(iter(files.values())))
        if compact:
            recomputed_files = files
        else:
            for m in per_patient:
                _link_previous_parts(m, [f.name for f in files[m.name]])
    else:
        create_log_view(con, fbv, patient_filter="affected")
        steps = run_models(
            con,
            per_patient,
            progress,
            previous=lambda m: provide_previous(
                con, m, previous_snapshot(wh, m.previous_snapshot_of or "", as_of), "affected"
            ),
            after=None if compact else write_delta,
        )
    for s in steps:
        for a in s.attrition:
            a["scope"] = "recomputed patients only"
    by_name = {s.name: s for s in steps}
    if compact:
        # every table whole, laid out as a full build with these settings lays it out: one file,
        # or one file per group of the whole log's patients (the recomputed patients' groups
        # above are another split)
        create_log_view(con, fbv)
        n_full = patient_groups(con, cfg, fbv)
        grouped = n_full > 1  # as _full_in_buckets: files per group, however many there are
        n_full = _assign_groups(con, n_full) if grouped else 1
        tables = {}
        for m in per_patient:
            old = layout.table_relation(prev_dir, m.name, prev_manifest)
            step = by_name[m.name]
            paths = []
            for k in range(n_full):
                group = (
                    f"AND patient_id IN (SELECT patient_id FROM patient_bucket WHERE bucket = {k})"
                    if grouped
                    else ""
                )
                con.execute(f"""
                    CREATE OR REPLACE TABLE merged_{m.name} AS
                    SELECT * FROM {old}
                    WHERE patient_id NOT IN (SELECT patient_id FROM affected) {group}
                    UNION ALL BY NAME SELECT * FROM {m.name} WHERE true {group}
                """)
                path = out_dir / (
                    layout.base_part_file(m.name, k) if grouped else f"{m.name}.parquet"
                )
                # written from a table, as in a full build: DuckDB's Parquet dictionaries of
                # list columns follow the chunking of the input, and a streamed union chunks
                # differently (the bytes would differ from a full rebuild's, the rows equal)
                tw = time.perf_counter()
                write_parquet(con, m, path, source=f"merged_{m.name}")
                step.write_seconds = round(step.write_seconds + time.perf_counter() - tw, 3)
                con.execute(f"DROP TABLE merged_{m.name}")
                paths.append(path)
            recomputed = recomputed_files.get(m.name, [])
            con.execute(f"DROP {'VIEW' if recomputed else 'TABLE'} {m.name}")  # groups: a view
            for f in recomputed:
                f.unlink()
            con.execute(f"CREATE VIEW {m.name} AS SELECT * FROM read_parquet({sql_list(paths)})")
            if grouped:
                tables[m.name] = [p.name for p in paths]
            step.rows, step.patients = table_stats(con, m.name, True)
        if grouped:
            con.execute("DROP TABLE patient_bucket")
            info["tables"] = tables
    else:
        # the cohort models read every patient's rows: each table's parts, latest per patient
        parts = {"tables": prev_manifest.get("tables", {}), **info}
        for m in per_patient:
            rel = layout.table_relation(out_dir, m.name, parts)
            con.execute(f"CREATE OR REPLACE VIEW {m.name} AS SELECT * FROM {rel}")
            step = by_name[m.name]
            step.rows, step.patients = table_stats(con, m.name, True)
    cohort_steps = _run_cohort_models(
        con, cohort, fbv, out_dir, progress, {s.name: (s.rows, s.patients) for s in steps}
    )
    return steps + cohort_steps, info


def _run_cohort_models(
    con: duckdb.DuckDBPyConnection,
    cohort: list[Model],
    fbv: dict[int, list[Path]],
    out_dir: Path,
    progress: Progress,
    known: dict[str, tuple[int, int | None]],
) -> list[StepStats]:
    """After the per-patient tables of a pass over part of the patients (incremental, grouped):
    the cohort tables, over the whole log and the whole per-patient tables (``known``: their
    counts), each written as soon as it is computed."""
    create_log_view(con, fbv)
    return run_models(
        con,
        cohort,
        progress,
        after=lambda m, step: write_and_swap(con, m, out_dir / f"{m.name}.parquet", step),
        known=known,
    )


def patient_groups(
    con: duckdb.DuckDBPyConnection,
    cfg: Config,
    fbv: dict[int, list[Path]],
    scope: str | None = None,
) -> int:
    """How many groups of patients a build computes the per-patient tables for: a full build
    build.patient_buckets ('auto': one per build.patient_bucket_events visible events); an
    incremental build (``scope``: the affected patients) one per build.patient_bucket_events
    visible events of the patients it recomputes."""
    setting = cfg.build.patient_buckets
    if setting != "auto" and scope is None:
        return int(setting)
    create_log_view(con, fbv, patient_filter=scope)
    (n_events,) = con.execute("SELECT count(*) FROM log_events").fetchone()
    return max(1, -(-n_events // cfg.build.patient_bucket_events))


def _full_in_buckets(
    con: duckdb.DuckDBPyConnection,
    wh: Warehouse,
    models: list[Model],
    fbv: dict[int, list[Path]],
    out_dir: Path,
    progress: Progress,
    as_of: datetime,
    n_buckets: int,
) -> tuple[list[StepStats], dict[str, list[str]]]:
    """A full build that computes the per-patient tables one group of patients at a time
    (build.patient_buckets, :func:`_per_patient_in_groups`), each table kept as one file per
    group (layout.py), then the cohort tables over the whole tables. The steps' counts, times
    and attrition are the sums over the groups. Returns the steps and the per-patient tables'
    files (the manifest's ``tables``)."""
    per_patient = [m for m in models if m.per_patient]
    cohort = [m for m in models if not m.per_patient]
    snapshots = {  # the same for every group
        m.name: previous_snapshot(wh, m.previous_snapshot_of, as_of)
        for m in per_patient
        if m.previous_snapshot_of
    }
    merged, files = _per_patient_in_groups(
        con,
        per_patient,
        fbv,
        lambda m, k: out_dir / layout.base_part_file(m.name, k),
        progress,
        snapshots,
        n_buckets,
    )
    create_log_view(con, fbv)  # the whole log again (for its counts below)
    # a step's input counts: whole tables, as in a one-group build
    known = {m.name: (merged[m.name].rows, merged[m.name].patients) for m in per_patient}
    if any("log_events" in st.inputs for st in merged.values()):
        known["log_events"] = table_stats(con, "log_events", True)
    for st in merged.values():
        for d in st.inputs:
            if d in known:
                st.inputs[d] = {"rows": known[d][0], "patients": known[d][1]}
    steps = list(merged.values()) + _run_cohort_models(con, cohort, fbv, out_dir, progress, known)
    return steps, {name: [f.name for f in fs] for name, fs in files.items()}


def _per_patient_in_groups(
    con: duckdb.DuckDBPyConnection,
    per_patient: list[Model],
    fbv: dict[int, list[Path]],
    target: Callable[[Model, int], Path],
    progress: Progress,
    snapshots: dict[str, Path | None],
    n_groups: int,
    scope: str | None = None,
) -> tuple[dict[str, StepStats], dict[str, list[Path]]]:
    """The per-patient tables for the patients of the log (``scope``: a table of the patients
    to recompute, as in an incremental build) computed for ``n_groups`` groups of them in turn,
    so DuckDB holds one group's rows at a time. The groups are contiguous ranges of patient ids;
    each group's rows of each table are written, sorted, to ``target(model, group)``: the files
    read in group order are the table in its order when it is ordered by patient first. Each
    model's name is left as a view over its files. Per-patient tables depend only on the
    patient's events (incremental builds rely on it too). Returns the steps, summed over the
    groups, and each table's files in group order. (Joining the groups' files into one file
    per table cost a second write: at 10M events in two groups 95.8 and 113.1 s of writing
    against 72.8 and 62.6 s in one pass.)"""
    create_log_view(con, fbv, patient_filter=scope)
    n_groups = _assign_groups(con, n_groups)
    merged: dict[str, StepStats] = {}
    for k in range(n_groups):
        con.execute(
            f"CREATE OR REPLACE TABLE bucket_patients AS "
            f"SELECT patient_id FROM patient_bucket WHERE bucket = {k}"
        )
        for m in per_patient:  # the previous group's tables are views over its files
            con.execute(f"DROP VIEW IF EXISTS {m.name}")
        create_log_view(con, fbv, patient_filter="bucket_patients")  # a part of the scope
        steps = run_models(
            con,
            per_patient,
            lambda what, f, k=k: progress(f"{what} (patients {k + 1}/{n_groups})", f),
            previous=lambda m: provide_previous(con, m, snapshots[m.name], "bucket_patients"),
            after=lambda m, step, k=k: write_and_swap(con, m, target(m, k), step),
        )
        for st in steps:
            _add_step(merged, st)
    files = {m.name: [target(m, k) for k in range(n_groups)] for m in per_patient}
    for m in per_patient:
        con.execute(f"DROP VIEW IF EXISTS {m.name}")
        con.execute(
            f"CREATE VIEW {m.name} AS SELECT * FROM read_parquet({sql_list(files[m.name])})"
        )
    con.execute("DROP TABLE bucket_patients")
    con.execute("DROP TABLE patient_bucket")
    return merged, files


def _assign_groups(con: duckdb.DuckDBPyConnection, n_groups: int) -> int:
    """Table ``patient_bucket`` (patient_id, bucket): the patients of ``log_events`` in
    ``n_groups`` contiguous ranges of patient ids of about equal size. Returns the number of
    groups (fewer when there are fewer patients)."""
    con.execute(f"""
        CREATE OR REPLACE TABLE patient_bucket AS
        SELECT patient_id, ntile({int(n_groups)}) OVER (ORDER BY patient_id) - 1 AS bucket
        FROM (SELECT DISTINCT patient_id FROM log_events)
    """)
    n_patients = con.execute("SELECT count(*) FROM patient_bucket").fetchone()[0]
    return max(1, min(n_groups, n_patients))


def _add_step(merged: dict[str, StepStats], st: StepStats) -> None:
    """Add one group's step to the build's: rows, patients (the groups are disjoint), times
    and attrition rows summed."""
    have = merged.get(st.name)
    if have is None:
        merged[st.name] = st
        return
    have.rows += st.rows
    if have.patients is not None and st.patients is not None:
        have.patients += st.patients
    have.seconds = round(have.seconds + st.seconds, 3)
    have.write_seconds = round(have.write_seconds + st.write_seconds, 3)
    for a, b in zip(have.attrition, st.attrition, strict=True):
        a["rows"] += b["rows"]
    for d, counts in have.inputs.items():  # the groups' inputs are disjoint too
        for key in ("rows", "patients"):
            x, y = counts.get(key), st.inputs.get(d, {}).get(key)
            counts[key] = x + y if x is not None and y is not None else None


def render_dry_run(cfg: Config, as_of: datetime, out_dir: Path) -> list[Path]:
    """Write every model's SQL, in run order, with the parameter bindings, for review."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "00_parameters.sql"]
    written[0].write_text("\n".join(binding_statements(cfg, as_of)) + "\n")
    for i, m in enumerate(load_models(), start=1):
        p = out_dir / f"{i:02d}_{m.name}.sql"
        p.write_text(
            f"-- {m.layer}/{m.name}: {m.grain}\nCREATE OR REPLACE TABLE {m.name} AS\n{m.sql}"
        )
        written.append(p)
    return written
