"""Warehouse layout, atomic file operations, the writer lock and DuckDB connections.

Layout under the warehouse directory (default ``data/warehouse``)::

    log/events/batch=000001/part-00000.parquet  immutable event files (one directory per batch)
    log/manifests/000001.json                batch manifests; a batch exists iff its manifest does
    quarantine/batch=000001.parquet          rejected rows with reasons
    duplicates/batch=000001.parquet          rows recognised as exact re-sends
    quality/batch=000001/                    great-expectations results and the data-docs page
    builds/<build_id>/                       projection outputs of one build (Parquet)
    CURRENT                                  JSON pointer to the published build
    warehouse.duckdb                         analysts' DuckDB file (views over CURRENT)
    runs/                                    run summaries (JSON)
    tmp/                                     staging and DuckDB spill space (safe to delete)
    .txh.lock                                writer lock

Crash safety rests on two rules: files are written to a temporary name and renamed into place
(``os.replace`` is atomic on POSIX), and every multi-file unit has a single commit marker written
last (a batch's manifest, a build's CURRENT pointer). Anything without its marker is ignored by
readers and swept by the next writer.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import filelock

from pipelines.config import Config, ConfigError
from pipelines.logs import get_logger

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # sysexits EX_SOFTWARE: a bug or an unexpected environment problem
EXIT_LOCKED = 75  # sysexits EX_TEMPFAIL: another writer holds the lock; retry later


class LockBusy(RuntimeError):
    pass


def fault_point(name: str) -> None:
    """Crash here (as a SIGKILL would) when TXH_FAULT_AT names this point: used by the
    fault-injection tests to prove that a crash between any two writes leaves the last good
    outputs intact."""
    if os.environ.get("TXH_FAULT_AT") == name:
        os._exit(99)


def sql_literal(s: object) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + str(s).replace("'", "''") + "'"


def sql_list(items: Iterable[object]) -> str:
    """A SQL list of string literals, e.g. the files of ``read_parquet([...])``."""
    return "[" + ", ".join(sql_literal(i) for i in items) + "]"


@dataclass(frozen=True)
class Warehouse:
    root: Path

    @classmethod
    def from_config(cls, cfg: Config) -> Warehouse:
        return cls(cfg.warehouse_path)

    # -- locations --------------------------------------------------------------------------
    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def events_dir(self) -> Path:
        return self.log_dir / "events"

    @property
    def manifests_dir(self) -> Path:
        return self.log_dir / "manifests"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def duplicates_dir(self) -> Path:
        return self.root / "duplicates"

    @property
    def quality_dir(self) -> Path:
        return self.root / "quality"

    @property
    def builds_dir(self) -> Path:
        return self.root / "builds"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def current_pointer(self) -> Path:
        return self.root / "CURRENT"

    @property
    def duckdb_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def lock_path(self) -> Path:
        return self.root / ".txh.lock"

    def batch_events_dir(self, batch_id: int) -> Path:
        return self.events_dir / f"batch={batch_id:06d}"

    def manifest_path(self, batch_id: int) -> Path:
        return self.manifests_dir / f"{batch_id:06d}.json"

    def ensure(self) -> None:
        for d in (
            self.events_dir,
            self.manifests_dir,
            self.quarantine_dir,
            self.duplicates_dir,
            self.quality_dir,
            self.builds_dir,
            self.runs_dir,
            self.tmp_dir,
        ):
            d.mkdir(parents=True, exist_ok=True)

    # -- batches ----------------------------------------------------------------------------
    def committed_manifests(self) -> list[dict[str, Any]]:
        """Manifests of committed batches, in batch order."""
        if not self.manifests_dir.exists():
            return []
        out = []
        for p in sorted(self.manifests_dir.glob("*.json")):
            out.append(json.loads(p.read_text()))
        return out

    def committed_event_files(self, up_to_batch: int | None = None) -> list[Path]:
        files: list[Path] = []
        for m in self.committed_manifests():
            if up_to_batch is not None and m["batch_id"] > up_to_batch:
                continue
            files += [self.root / f for f in m.get("event_files", [])]
        return files

    def sweep_uncommitted(self) -> list[Path]:
        """Remove batch directories and staging files that have no manifest (crash leftovers)."""
        removed: list[Path] = []
        committed = {m["batch_id"] for m in self.committed_manifests()}
        if self.events_dir.exists():
            for d in self.events_dir.iterdir():
                if (
                    d.name.startswith("batch=")
                    and int(d.name.split("=")[1]) not in committed
                    or d.name.startswith(".tmp")
                ):
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(d)
        for sub in (self.quarantine_dir, self.duplicates_dir, self.quality_dir):
            if sub.exists():
                for f in sub.iterdir():
                    bid = _batch_of(f.name)
                    if bid is not None and bid not in committed or f.name.startswith(".tmp"):
                        _remove(f)
                        removed.append(f)
        if self.tmp_dir.exists():
            for f in self.tmp_dir.iterdir():
                _remove(f)
        return removed

    # -- locking ----------------------------------------------------------------------------
    @contextmanager
    def lock(self, timeout: float = 0.0) -> Iterator[None]:
        """Exclusive writer lock, re-entrant within a process (``txh run`` holds it while it
        ingests, builds and publishes). Raises LockBusy if another process holds it past
        ``timeout`` seconds."""
        self.root.mkdir(parents=True, exist_ok=True)
        key = str(self.lock_path.resolve())
        held = _HELD_LOCKS.get(key)
        if held is not None:
            _HELD_LOCKS[key] = (held[0], held[1] + 1)
            try:
                yield
            finally:
                lk, n = _HELD_LOCKS[key]
                _HELD_LOCKS[key] = (lk, n - 1)
            return
        lk = filelock.FileLock(key, timeout=timeout)
        try:
            lk.acquire()
        except filelock.Timeout as e:
            raise LockBusy(
                f"another txh process is writing to {self.root} (lock {self.lock_path}); "
                "try again later or pass --wait SECONDS"
            ) from e
        _HELD_LOCKS[key] = (lk, 1)
        try:
            yield
        finally:
            _HELD_LOCKS.pop(key, None)
            lk.release()


_HELD_LOCKS: dict[str, tuple[filelock.FileLock, int]] = {}


def _batch_of(name: str) -> int | None:
    if name.startswith("batch="):
        digits = name.split("=")[1].split(".")[0]
        if digits.isdigit():
            return int(digits)
    return None


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(
        path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()
    )


def atomic_replace_dir(src: Path, dst: Path) -> None:
    """Move a fully written directory into place (dst must not exist)."""
    fsync_tree(src)
    os.rename(src, dst)
    fsync_dir(dst.parent)


def fsync_file(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fsync_file(os.path.join(dirpath, name))
        fsync_dir(Path(dirpath))


def resolve_memory_limit(value: str) -> str:
    """``auto``: half the physical memory (at least 2 GiB), in MiB; anything else as given."""
    if value.strip().lower() != "auto":
        return value
    import psutil

    return f"{max(2048, psutil.virtual_memory().total // 2 // 2**20)}MiB"


def connect(
    cfg: Config,
    database: str | Path = ":memory:",
    read_only: bool = False,
    wh: Warehouse | None = None,
    memory_limit: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the engine settings applied (memory limit, spill, UTC, quiet)."""
    con = duckdb.connect(str(database), read_only=read_only)
    con.execute("SET enable_progress_bar = false")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"SET memory_limit = {sql_literal(resolve_memory_limit(memory_limit or cfg.engine.memory_limit))}"
    )
    _set_block_allocator(con, cfg.engine.block_allocator_memory)
    if cfg.engine.threads:
        con.execute(f"SET threads = {int(cfg.engine.threads)}")
    temp = cfg.engine.temp_directory or str((wh or Warehouse.from_config(cfg)).tmp_dir / "duckdb")
    Path(temp).mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = {sql_literal(temp)}")
    con.execute("SET preserve_insertion_order = true")
    return con


def _set_block_allocator(con: duckdb.DuckDBPyConnection, value: str) -> None:
    """engine.block_allocator_memory: ``auto`` = the memory limit as DuckDB resolved it (a
    percentage limit is a share of RAM, while a percentage here would be a share of the
    limit); skipped with a warning where DuckDB refuses it (it caps the allocator at about 80 %
    of the memory it sees, which a large limit or a small machine exceeds). An explicit value
    DuckDB refuses is a configuration error."""
    block = value.strip().lower()
    if block in ("off", "0", "", "false"):
        return
    if block == "auto":
        block = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    try:
        con.execute(f"SET block_allocator_memory = {sql_literal(block)}")
    except duckdb.Error as e:
        if value.strip().lower() != "auto":
            raise ConfigError(f"engine.block_allocator_memory = {value!r}: {e}") from e
        get_logger("txh.engine").warning("engine.block_allocator_skipped", reason=str(e))


T = TypeVar("T")
R = TypeVar("R")


def one_thread_each(
    con: duckdb.DuckDBPyConnection, work: Callable[[T], R], items: list[T]
) -> list[R]:
    """``work`` on each item, as many at once as DuckDB has threads, each on one thread: the
    threads setting is per database, so it is 1 for the duration. For statements that keep
    their rows in order, which costs DuckDB more on several threads than on one (reading a
    CSV, writing Parquet row groups at fixed rows). ``work`` runs its statements on a cursor of
    ``con``. Results in item order."""
    threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])
    con.execute("SET threads = 1")
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(items)))) as pool:
            return list(pool.map(work, items))
    finally:
        con.execute(f"SET threads = {threads}")
