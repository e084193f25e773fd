"""Writing report files: deterministic bytes, atomic replacement, a declared schema.

Every report is an Arrow table whose columns and types are declared up front (``Column``), so a
CSV and a Parquet export of the same rows read back to the same rows and types
(``read_report``). Files are written to a temporary name in the target directory, flushed,
fsync'ed and renamed over the target (``os.replace`` is atomic on POSIX): a reader sees the old
file or the new one, never half of one.

Determinism: rows are sorted before they get here; CSV is written by Arrow's writer (ISO dates,
``true``/``false``, empty = NULL, quotes only where needed); Parquet by pyarrow with fixed
options and no write timestamp, so the same rows give the same bytes with the same pyarrow.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipelines.config import ConfigError
from pipelines.warehouse import fsync_dir, fsync_file

FORMATS = ("csv", "parquet")

_ARROW_TYPES: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
}


@dataclass(frozen=True)
class Column:
    """One report column: name, DuckDB type (VARCHAR, BIGINT, DOUBLE, BOOLEAN, DATE), meaning."""

    name: str
    type: str
    doc: str

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.type]


def arrow_schema(columns: list[Column], metadata: dict[str, str] | None = None) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, c.arrow_type) for c in columns],
        metadata={k: str(v) for k, v in sorted((metadata or {}).items())} or None,
    )


def resolve_format(fmt: str | None, out: Path) -> str:
    """--format if given, else from the file suffix; a mismatch is a usage error."""
    suffix = out.suffix.lower().lstrip(".")
    if fmt is None:
        if suffix in FORMATS:
            return suffix
        raise ConfigError(f"--format not given and {out.name!r} does not end in .csv or .parquet")
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if suffix in FORMATS and suffix != fmt:
        raise ConfigError(f"--format {fmt} but the output file ends in .{suffix}")
    return fmt


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed over it when the block succeeds, removed when it
    fails."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror or e}") from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        fsync_file(tmp_path)
        os.chmod(tmp_path, 0o644 & ~_umask())
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_table(table: pa.Table, path: Path, fmt: str) -> None:
    """Write ``table`` to ``path`` atomically as CSV or Parquet (deterministic bytes)."""
    with atomic_path(path) as tmp:
        if fmt == "csv":
            pacsv.write_csv(
                table,
                tmp,
                write_options=pacsv.WriteOptions(
                    include_header=True, delimiter=",", quoting_style="needed"
                ),
            )
        elif fmt == "parquet":
            pq.write_table(
                table,
                tmp,
                compression="zstd",
                use_dictionary=True,
                write_statistics=True,
                row_group_size=1_000_000,
                store_schema=True,
            )
        else:  # pragma: no cover - resolve_format guards this
            raise ConfigError(f"unknown format {fmt!r}")


def write_bytes(data: bytes, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_report(path: Path, columns: list[Column] | None = None) -> pa.Table:
    """Read a report back. Parquet carries its schema; CSV needs the declared ``columns`` (the
    report's ``*_COLUMNS`` list) to restore types, including all-empty columns."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return pq.read_table(path)
    if columns is None:
        return pacsv.read_csv(path)
    types = {c.name: c.arrow_type for c in columns}
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=None),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["true"],
            false_values=["false"],
            null_values=[""],
        ),
    )
