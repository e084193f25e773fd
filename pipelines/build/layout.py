"""How a build's tables are laid out on disk, and the one way to read them.

A full build writes every table as one Parquet file, ``<table>.parquet``, sorted by its total
order; a full build that computes its per-patient tables for groups of patients in turn
(build.patient_buckets) keeps each such table as one file per group,
``<table>.part-00000.parquet`` ..., each sorted, the groups contiguous ranges of patient ids in
order (the files read in their order are the table in its order when it is ordered by patient
first). An incremental build recomputes only the affected patients. It either rewrites each
per-patient table whole (compaction: the previous rows of the other patients merged with the new
rows, byte-identical to a full rebuild with the same settings) or, cheaper, writes only the
recomputed patients' rows as a delta part beside the unchanged previous parts:

    <table>.parquet                    base part (build "generation" 0)
    <table>.delta-000012.parquet       rows of the patients build 000012 recomputed
    recomputed_patients.parquet        patient_id, build_id: the last build that recomputed them

(a build that recomputes its patients in groups writes its delta as one file per group,
``<table>.delta-000012.part-00000.parquet`` ...). A patient's rows are those of the part written
by the last build that recomputed it (the base if none did), so a table is the base minus every
recomputed patient, plus each delta's rows of the patients whose last recomputation it holds.
Parts are hard links of the previous build's files: a build directory is complete on its own,
and pruning old builds never breaks a newer one.

``build.json`` lists the parts: ``tables`` (name -> base file, or the list of a grouped build's
base files), ``deltas`` (name -> delta files, oldest first) and ``recomputed``. Everything that
reads a build's tables (the warehouse views, the reports, the status snapshots, the next
incremental build) goes through :func:`table_relation`, never through a file name.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from pipelines.warehouse import sql_list, sql_literal

RECOMPUTED = "recomputed_patients.parquet"
# part of the build's fingerprint: 1 one file per table; 2 delta parts; 3 a grouped build's
# tables as one file per group
LAYOUT_VERSION = 3


def delta_file(table: str, build_id: str, group: int | None = None) -> str:
    """A delta part's file name; ``group``: one of a grouped build's files."""
    part = "" if group is None else f".part-{group:05d}"
    return f"{table}.delta-{build_id}{part}.parquet"


def base_part_file(table: str, group: int) -> str:
    """One group's file of a grouped full build's table."""
    return f"{table}.part-{group:05d}.parquet"


def delta_build_id(file: str) -> int:
    """The build id of a delta part's file name (``<table>.delta-000012.parquet`` and
    ``<table>.delta-000012.part-00003.parquet`` -> 12)."""
    return int(file.rsplit(".delta-", 1)[1].split(".", 1)[0])


def read_manifest(build_dir: Path) -> dict[str, Any]:
    p = build_dir / "build.json"
    return json.loads(p.read_text()) if p.exists() else {}


def table_names(build_dir: Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """The build's tables: those its manifest lists, else every ``<name>.parquet`` present."""
    m = read_manifest(build_dir) if manifest is None else manifest
    if "tables" in m:
        return [n for n in m["tables"] if all(f.exists() for f in base_files(build_dir, n, m))]
    return sorted(p.stem for p in build_dir.glob("*.parquet") if "." not in p.stem)


def has_deltas(manifest: dict[str, Any], table: str) -> bool:
    return bool(manifest.get("deltas", {}).get(table))


def delta_builds(manifest: dict[str, Any], table: str) -> list[int]:
    """The builds whose delta parts the table has, oldest first (a grouped build's delta is
    several files: one part)."""
    return sorted({delta_build_id(f) for f in manifest.get("deltas", {}).get(table, [])})


def is_one_file(manifest: dict[str, Any], table: str) -> bool:
    """The table is one file (no delta parts, not a grouped build's parts)."""
    return not has_deltas(manifest, table) and isinstance(
        manifest.get("tables", {}).get(table, ""), str
    )


def base_files(build_dir: Path, table: str, manifest: dict[str, Any] | None = None) -> list[Path]:
    """The table's base part: one file, or a grouped build's files in group order."""
    m = read_manifest(build_dir) if manifest is None else manifest
    base = m.get("tables", {}).get(table, f"{table}.parquet")
    return [build_dir / f for f in ([base] if isinstance(base, str) else base)]


def table_files(build_dir: Path, table: str, manifest: dict[str, Any] | None = None) -> list[Path]:
    """Every file the table reads: its base part's, then its delta parts' (oldest first)."""
    m = read_manifest(build_dir) if manifest is None else manifest
    deltas = [build_dir / f for f in m.get("deltas", {}).get(table, [])]
    return [*base_files(build_dir, table, m), *deltas]


def _read(files: list[Path]) -> str:
    return f"read_parquet({sql_literal(str(files[0])) if len(files) == 1 else sql_list(files)})"


def table_relation(build_dir: Path, table: str, manifest: dict[str, Any] | None = None) -> str:
    """A parenthesised SQL relation holding the table's current rows (for ``SELECT * FROM``)."""
    m = read_manifest(build_dir) if manifest is None else manifest
    base = base_files(build_dir, table, m)
    deltas: dict[int, list[Path]] = {}  # by the build that wrote them, oldest first
    for f in m.get("deltas", {}).get(table, []):
        deltas.setdefault(delta_build_id(f), []).append(build_dir / f)
    if not deltas:
        return f"(SELECT * FROM {_read(base)})"
    rec = sql_literal(str(build_dir / m["recomputed"]))
    arms = [
        f"SELECT * FROM {_read(base)} "
        f"WHERE patient_id NOT IN (SELECT patient_id FROM read_parquet({rec}))"
    ]
    for build_id, files in deltas.items():
        arms.append(
            f"SELECT * FROM {_read(files)} WHERE patient_id IN "
            f"(SELECT patient_id FROM read_parquet({rec}) WHERE build_id = {build_id})"
        )
    return "(" + " UNION ALL BY NAME ".join(arms) + ")"


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (parts are immutable), or a copy where the file system has none. Never onto
    an existing file: that may be a link shared with a kept build."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:
        shutil.copyfile(src, dst)


# Status snapshots (<warehouse>/status_history/<table>/): one file per as-of date and build,
# "as_of_date=<date>.build=<build id>.parquet", never replaced, so a published view's file list
# reads the same rows until the next publish (a build killed after saving its snapshot changes
# nothing a reader sees). Of a date's files, the latest build's wins: a build reads the latest
# earlier date's, and a publish lists each date's latest up to the build it publishes. A file
# without a build id ("as_of_date=<date>.parquet", written before builds were named) is a date's
# oldest.
SNAPSHOTS_DIR = "status_history"


def snapshot_file(root: Path, table: str, as_of_date: str, build_id: str) -> Path:
    return root / SNAPSHOTS_DIR / table / f"as_of_date={as_of_date}.build={build_id}.parquet"


def snapshot_files(root: Path, table: str) -> dict[str, list[tuple[str, Path]]]:
    """``table``'s snapshots by as-of date (in date order), each date's as (build id, file),
    oldest build first ("" for a file without a build id)."""
    out: dict[str, list[tuple[str, Path]]] = {}
    for p in (root / SNAPSHOTS_DIR / table).glob("as_of_date=*.parquet"):
        date, _, build_id = p.name[len("as_of_date=") : -len(".parquet")].partition(".build=")
        out.setdefault(date, []).append((build_id, p))
    return {d: sorted(v) for d, v in sorted(out.items())}


def published_snapshots(root: Path, table: str, build_id: str) -> list[Path]:
    """Each date's snapshot as of the publish of ``build_id``: the latest build's up to it."""
    out = []
    for files in snapshot_files(root, table).values():
        upto = [p for b, p in files if b <= build_id]
        if upto:
            out.append(upto[-1])
    return out


def prune_snapshots(root: Path, oldest_kept_build: str) -> None:
    """Delete the snapshots no kept build's published view can list: those a later build's
    snapshot of the same date, itself no later than the oldest kept build, supersedes; and the
    temporary files of killed saves (the caller holds the warehouse lock)."""
    for tmp in (root / SNAPSHOTS_DIR).glob("*/.tmp-*"):
        tmp.unlink(missing_ok=True)
    for table_dir in sorted((root / SNAPSHOTS_DIR).glob("*")):
        for files in snapshot_files(root, table_dir.name).values():
            for (_, p), (later, _) in zip(files, files[1:], strict=False):
                if later <= oldest_kept_build:
                    p.unlink(missing_ok=True)
