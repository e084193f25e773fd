"""Row-by-row reading of tabular sources (CSV, Parquet, SAS XPORT, tables of a DuckDB database).

Every value is handed to the mappers as text (or None), like the canonical ingest does, so a bad
value becomes a quarantine reason instead of a reader crash. CSV and Parquet are streamed in
record batches (bounded memory); SAS XPORT files are read whole (SDTM datasets are per study and
small). Row numbers are 1-based: CSV rows count the header as line 1, so the first data record is
row 2 (with quoted newlines inside fields this is the record number + 1, not the physical line);
Parquet, XPORT and database rows count from 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".xpt")
KeyCase = Literal["lower", "upper"]
Row = dict[str, str | None]


@dataclass(frozen=True)
class Table:
    """A readable table: a file, or a table inside a DuckDB database file."""

    name: str  # table / dataset name, lower case (e.g. drug_exposure, ex)
    path: Path  # the file read (the database file for database tables)
    db_table: str | None = None  # qualified table name inside the database

    @property
    def display(self) -> str:
        return f"{self.path}#{self.db_table}" if self.db_table else str(self.path)


def table_name(path: Path) -> str:
    name = path.name.lower()
    for suffix in TABLE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem.lower()


def is_table_file(path: Path) -> bool:
    return path.name.lower().endswith(TABLE_SUFFIXES) and not path.name.startswith(".")


def iter_rows(table: Table, keys: KeyCase, batch_rows: int = 50_000) -> Iterator[tuple[int, Row]]:
    """(row number, {column: text or None}) for every row, in file order."""
    if table.db_table:
        yield from _iter_db(table, keys, batch_rows)
        return
    name = table.path.name.lower()
    if name.endswith(".parquet"):
        yield from _iter_parquet(table.path, keys, batch_rows)
    elif name.endswith(".xpt"):
        yield from _iter_xpt(table.path, keys)
    else:
        yield from _iter_csv(table.path, keys)


def columns_of(table: Table) -> list[str]:
    if table.db_table:
        con = duckdb.connect(str(table.path), read_only=True)
        try:
            return list(con.sql(f"SELECT * FROM {table.db_table} LIMIT 0").columns)
        finally:
            con.close()
    name = table.path.name.lower()
    if name.endswith(".parquet"):
        return list(pq.ParquetFile(table.path).schema_arrow.names)
    if name.endswith(".xpt"):
        return [str(c) for c in _read_xpt(table.path).columns]
    return _csv_header(table.path)


def _norm_keys(names: list[str], keys: KeyCase) -> list[str]:
    return [n.strip().lower() if keys == "lower" else n.strip().upper() for n in names]


def _csv_header(path: Path) -> list[str]:
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20))
    return list(reader.schema.names)


def _iter_csv(path: Path, keys: KeyCase) -> Iterator[tuple[int, Row]]:
    header = _csv_header(path)
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=8 << 20),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    names = _norm_keys(header, keys)
    row = 1  # header
    for batch in reader:
        for values in zip(
            *(batch.column(i).to_pylist() for i in range(batch.num_columns)), strict=True
        ):
            row += 1
            yield row, dict(zip(names, values, strict=True))


def _as_text(batch: pa.RecordBatch) -> list[list[str | None]]:
    cols = []
    for col in batch.columns:
        if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
            col = pc.cast(col, pa.string())
        cols.append(col.to_pylist())
    return cols


def _iter_parquet(path: Path, keys: KeyCase, batch_rows: int) -> Iterator[tuple[int, Row]]:
    pf = pq.ParquetFile(path)
    names = _norm_keys(list(pf.schema_arrow.names), keys)
    row = 0
    for batch in pf.iter_batches(batch_size=batch_rows):
        for values in zip(*_as_text(batch), strict=True):
            row += 1
            yield row, dict(zip(names, values, strict=True))


def _read_xpt(path: Path):  # -> pandas.DataFrame (pandas imported lazily: 0.3 s)
    import pandas as pd

    return pd.read_sas(path, format="xport", encoding="latin-1")


def _xpt_text(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return str(int(v)) if v.is_integer() else repr(v)
    s = str(v)
    return s if s.strip() else None


def _iter_xpt(path: Path, keys: KeyCase) -> Iterator[tuple[int, Row]]:
    df = _read_xpt(path)
    names = _norm_keys([str(c) for c in df.columns], keys)
    for i, values in enumerate(df.itertuples(index=False, name=None), start=1):
        yield i, {n: _xpt_text(v) for n, v in zip(names, values, strict=True)}


def _iter_db(table: Table, keys: KeyCase, batch_rows: int) -> Iterator[tuple[int, Row]]:
    con = duckdb.connect(str(table.path), read_only=True)
    try:
        rel = con.sql(f"SELECT * FROM {table.db_table}")
        names = _norm_keys(list(rel.columns), keys)
        reader = rel.to_arrow_reader(batch_rows)
        row = 0
        for batch in reader:
            for values in zip(*_as_text(batch), strict=True):
                row += 1
                yield row, dict(zip(names, values, strict=True))
    finally:
        con.close()


def database_tables(path: Path, schema: str | None = None) -> list[Table]:
    """The tables of a DuckDB database file (optionally of one schema)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE ? IS NULL OR schema_name = ? ORDER BY 1, 2",
            [schema, schema],
        ).fetchall()
    finally:
        con.close()
    return [Table(name=t.lower(), path=path, db_table=f'"{s}"."{t}"') for s, t in rows]
