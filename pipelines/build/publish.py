"""Publishing a build: the analysts' DuckDB file and the CURRENT pointer.

The DuckDB file holds views over the build's Parquet files (and over the event log, quarantine
and runs), with ``COMMENT ON`` text from the table sidecars, so ``DESCRIBE``/``duckdb_columns()``
explain every column. It is written under a temporary name and renamed over the old file:
a reader that opened the old file keeps a consistent view (the old inode and the old build's
Parquet, kept for ``build.keep_builds`` builds), and a new reader sees only the new build.
The file is written in DuckDB storage format v1.5.0 so analysts on DuckDB 1.5+ can open it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import duckdb

from pipelines.build import layout
from pipelines.build.models import Model
from pipelines.config import Config
from pipelines.warehouse import (
    Warehouse,
    atomic_write_bytes,
    atomic_write_json,
    fault_point,
    fsync_dir,
    fsync_file,
    sql_list,
    sql_literal,
)

STORAGE_COMPATIBILITY = "v1.5.0"

# views over the log and the run records, beside the derived tables
EXTRA_VIEWS: dict[str, tuple[str, str]] = {
    "quarantine": (
        "Rows that failed the quality gate, with machine-readable reasons and the original row.",
        "quarantine/batch=*.parquet",
    ),
}

# views over the status snapshots (layout.snapshot_files): view -> (doc, snapshotted table)
SNAPSHOT_VIEWS: dict[str, tuple[str, str]] = {
    "refractory_status_history": (
        "refractory_status of every as-of date built so far (one snapshot per date; the latest "
        "build of a date wins). status_changes compares consecutive snapshots.",
        "refractory_status",
    ),
}


def _comment(s: str) -> str:
    return sql_literal(" ".join(s.split()))


def write_duckdb(
    path: Path,
    wh: Warehouse,
    build_dir: Path,
    models: list[Model],
    extra: dict[str, Any] | None = None,
) -> None:
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path), config={"storage_compatibility_version": STORAGE_COMPATIBILITY})
    try:
        manifest = layout.read_manifest(build_dir)
        for m in models:
            rel = layout.table_relation(build_dir, m.name, manifest)
            con.execute(f"CREATE VIEW {m.name} AS SELECT * FROM {rel}")
            con.execute(
                f"COMMENT ON VIEW {m.name} IS {_comment(f'{m.description} Grain: {m.grain}.')}"
            )
            actual = {r[0] for r in con.execute(f"DESCRIBE {m.name}").fetchall()}
            for col, doc in m.columns.items():
                if col in actual and doc:
                    con.execute(f"COMMENT ON COLUMN {m.name}.{col} IS {_comment(doc)}")
        events = sorted(wh.events_dir.glob("batch=*/*.parquet"))
        if events:
            con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet({sql_list(events)})")
            con.execute(
                "COMMENT ON VIEW events IS 'The append-only event log: every accepted "
                "event of every committed batch (corrections included, not applied; see "
                "events_current).'"
            )
            from schemas.contract import load_contract

            for c in load_contract().storage_columns():
                if c.doc:
                    con.execute(f"COMMENT ON COLUMN events.{c.name} IS {_comment(c.doc)}")
        views = [
            (name, doc, sorted(wh.root.glob(pattern)))
            for name, (doc, pattern) in EXTRA_VIEWS.items()
        ]
        views += [
            (name, doc, layout.published_snapshots(wh.root, table, build_dir.name))
            for name, (doc, table) in SNAPSHOT_VIEWS.items()
        ]
        for name, doc, files in views:
            if files:
                con.execute(
                    f"CREATE VIEW {name} AS SELECT * FROM read_parquet({sql_list(files)}, "
                    "union_by_name=true)"
                )
                con.execute(f"COMMENT ON VIEW {name} IS {_comment(doc)}")
        runs = sorted(wh.runs_dir.glob("*.json"))
        if runs:
            # read at query time: runs recorded after this publish appear too
            con.execute(
                f"CREATE VIEW runs AS SELECT * FROM read_json({sql_literal(str(wh.runs_dir / '*.json'))}, "
                "union_by_name=true, maximum_depth=2)"
            )
            con.execute(
                "COMMENT ON VIEW runs IS 'One row per txh run: id, start/finish, as-of, "
                "inputs with hashes, counts per step, parameters, status, exit code.'"
            )
        for hook in PUBLISH_HOOKS:
            hook(con, wh, build_dir, extra or {})
        con.execute("CHECKPOINT")
    finally:
        con.close()


PUBLISH_HOOKS: list[Any] = []  # callables(con, wh, build_dir, extra) adding views (runs, ...)


def publish_build(
    wh: Warehouse,
    cfg: Config,
    build_id: str,
    models: list[Model],
    extra: dict[str, Any] | None = None,
) -> Path:
    build_dir = wh.builds_dir / build_id
    # the data dictionary next to the DuckDB file (HTML, from the same sidecars as the comments)
    from pipelines.docs import render_data_dictionary_html

    atomic_write_bytes(wh.root / "data_dictionary.html", render_data_dictionary_html().encode())
    tmp = wh.root / f".tmp-warehouse-{build_id}.duckdb"
    write_duckdb(tmp, wh, build_dir, models, extra)
    fsync_file(tmp)
    fault_point("publish.before_duckdb_replace")
    os.replace(tmp, wh.duckdb_path)
    fsync_dir(wh.root)
    fault_point("publish.before_pointer")
    atomic_write_json(wh.current_pointer, {"build_id": build_id})
    prune_builds(wh, cfg.build.keep_builds, keep={build_id})
    return wh.duckdb_path


def _built_to_publish(build_dir: Path) -> bool:
    """Whether a build was made to be published (builds before the ``publish`` key: yes)."""
    try:
        return bool(json.loads((build_dir / "build.json").read_text()).get("publish", True))
    except (OSError, ValueError):
        return True


def prune_builds(wh: Warehouse, keep_n: int, keep: set[str]) -> None:
    """Keep the ``keep_n`` latest builds made to be published, and every build after the oldest
    of them (unpublished reproductions and report builds do not push published builds out,
    whose files readers of an older warehouse file may still use); remove the rest."""
    builds = sorted(p for p in wh.builds_dir.iterdir() if p.is_dir() and p.name[:6].isdigit())
    published = [p for p in builds if _built_to_publish(p)]
    if keep_n > 0:
        oldest = published[-keep_n].name if len(published) >= keep_n else ""
        drop = [p for p in builds if p.name < oldest]
    else:
        drop = builds
    for p in drop:
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)
    kept = sorted(p.name for p in wh.builds_dir.iterdir() if p.is_dir() and p.name[:6].isdigit())
    if kept:
        layout.prune_snapshots(wh.root, kept[0])
    for p in wh.builds_dir.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
