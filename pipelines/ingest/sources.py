"""Input files: discovery, hashing, format detection and loading into raw (all-text) tables.

Every input row is loaded as text into a DuckDB table ``raw_<n>`` with ``_row``: the 1-based line
(CSV: physical line of the record, header = line 1; JSON Lines: line) or row (Parquet) it came
from. Typing happens later, in SQL generated from the contract, so a bad value becomes a
quarantine reason instead of a reader crash.

File-level problems (missing required column, empty file, unreadable encoding, unknown format)
raise :class:`FileRejected` with a message meant for the user.
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipelines.warehouse import one_thread_each, sql_literal
from schemas.contract import Contract

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet",)
# reserved provenance columns an adapter may supply (see pipelines/adapters)
PROVENANCE_COLUMNS = ("_source_file", "_source_row", "_extra")


class FileRejected(Exception):
    """The whole file is rejected (batch-level failure)."""

    def __init__(self, reason_code: str, message: str):
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


@dataclass(frozen=True)
class InputFile:
    path: Path  # file to read
    display_path: str  # how it is named in manifests and quarantine
    sha256: str
    size_bytes: int
    fmt: str  # csv | jsonl | parquet

    @property
    def name(self) -> str:
        return self.display_path


@dataclass
class RawTable:
    table: str
    columns: list[str]  # original column names (after stripping whitespace)
    rows: int  # data rows parsed
    malformed: int  # lines the reader could not parse (CSV) -> quarantined as malformed_row
    provenance: bool = False  # has _source_file/_source_row columns (adapter output)
    notes: list[str] = field(default_factory=list)


def detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise FileRejected(
        "unknown_format", f"{path}: unknown file type (expected CSV, JSON Lines or Parquet)"
    )


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def discover(paths: list[Path], globs: list[str], recursive: bool = True) -> list[Path]:
    """Files named by ``paths`` (directories expanded), sorted for a deterministic batch order."""
    found: set[Path] = set()
    for p in paths:
        if p.is_dir():
            it = p.rglob("*") if recursive else p.glob("*")
            for f in it:
                if (
                    f.is_file()
                    and not f.name.startswith(".")
                    and any(fnmatch.fnmatch(f.name.lower(), g) for g in globs)
                ):
                    found.add(f)
        elif p.is_file():
            found.add(p)
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return sorted(found, key=lambda f: str(f))


def describe_file(path: Path, display_path: str | None = None) -> InputFile:
    return InputFile(
        path=path,
        display_path=display_path or str(path),
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        fmt=detect_format(path),
    )


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def load_raw(
    con: duckdb.DuckDBPyConnection,
    f: InputFile,
    table: str,
    contract: Contract,
    delimiter: str = ",",
    spill_dir: Path | None = None,
    *,
    max_line_bytes: int,
    parsed: ParsedCsv | None = None,
) -> RawTable:
    """Load one input file as ``table`` (all text, with ``_row``: its line or record number).
    A CSV or JSON Lines line of ``max_line_bytes`` or more (line break included) is a malformed
    row, not read.

    With ``spill_dir``, ``table`` is a view over a Parquet file there, not an in-memory table:
    a CSV is parsed straight into it (streaming), other formats are moved there once loaded.
    After normalisation the originals are needed only for the few rows that end up quarantined
    or duplicate; kept in memory, a 10M-row batch held its text twice (originals and the
    normalised rows) under the 1 GB ingest memory limit and every later stage spilled. The files
    go with the batch (``Warehouse.sweep_uncommitted`` removes leftovers). ``parsed``: the CSV
    was already streamed there by :func:`parse_csvs`."""
    if f.size_bytes == 0:
        raise FileRejected("empty_file", f"{f.name}: the file is empty")
    if f.fmt == "csv":
        raw = _load_csv(con, f, table, delimiter, spill_dir, max_line_bytes, parsed)
    elif f.fmt == "jsonl":
        raw = _load_jsonl(con, f, table, max_line_bytes)
    else:
        raw = _load_parquet(con, f, table, delimiter)
    if spill_dir is not None:
        _spill_table(con, table, spill_dir / f"{table}.parquet")
    if raw.rows == 0 and raw.malformed == 0:
        raise FileRejected("empty_file", f"{f.name}: the file has no data rows")
    if f.fmt != "jsonl":
        present = {c.strip().lower() for c in raw.columns}
        missing = [
            c.name for c in contract.envelope if "all" in c.required_for and c.name not in present
        ]
        if missing:
            raise FileRejected(
                "missing_required_column",
                f"{f.name}: required column(s) {', '.join(missing)} missing "
                f"(found: {', '.join(raw.columns[:20])})",
            )
    return raw


def _spill_table(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    """Replace the in-memory table ``table`` (if it is one) by a view over a Parquet copy."""
    is_table = con.execute(
        f"SELECT count(*) FROM duckdb_tables() WHERE table_name = {sql_literal(table)}"
    ).fetchone()[0]
    if not is_table:  # already a view over Parquet (a streamed CSV)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY (SELECT * FROM {table}) TO {sql_literal(str(path))} (FORMAT parquet)")
    con.execute(f"DROP TABLE {table}")
    con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({sql_literal(str(path))})")


@dataclass
class ParsedCsv:
    """A CSV already streamed into its spill Parquet by :func:`parse_csvs`: its header, or why
    the file is rejected."""

    names: list[str]
    rejected: FileRejected | None = None


def _csv_names(f: InputFile, delimiter: str) -> list[str]:
    # Read the header ourselves: DuckDB's sniffer may guess "no header" for all-text files,
    # and refuses files whose malformed lines confuse it.
    try:
        header = _read_csv_header(f.path, delimiter)
    except (UnicodeDecodeError, csv.Error, OSError) as e:
        raise FileRejected(
            "unreadable_file", f"{f.name}: cannot read the CSV header ({_short(e)})"
        ) from e
    if header is None:
        raise FileRejected("empty_file", f"{f.name}: the file is empty")
    names = [str(h).strip() if h is not None else "" for h in header]
    if any(n == "" for n in names) or len({n.lower() for n in names}) != len(names):
        raise FileRejected("bad_header", f"{f.name}: header has empty or duplicate column names")
    return names


def _csv_scan(
    f: InputFile, table: str, names: list[str], delimiter: str, max_line_bytes: int
) -> str:
    cols = "{" + ", ".join(f"{sql_literal(n)}: 'VARCHAR'" for n in names) + "}"
    # max_line_size is ingest.max_line_bytes (default DuckDB's 2 MB): DuckDB reads in buffers of
    # 16 x max_line_size, and with 10 MB a 250 MB file took 4.2 s instead of 3.3 s under the
    # ingest memory limit. No buffer_size here: smaller buffers
    # spill 250 MB files up to 40 % faster, but with buffer_size = max_line_size + 1 DuckDB 2.0
    # silently returned one record fewer per buffer (24 of 1,955,123 rows, no reject entry;
    # compare duckdb/duckdb#25825). rows_read is what DuckDB returns, so the reconciliation
    # would not have caught it.
    return (
        f"SELECT * FROM read_csv({sql_literal(str(f.path))}, "
        f"header=true, columns={cols}, delim={sql_literal(delimiter)}, quote='\"', escape='\"', "
        f"auto_detect=false, store_rejects=true, rejects_scan={sql_literal(table + '_rej_scans')}, "
        f"rejects_table={sql_literal(table + '_rej_errors')}, max_line_size={int(max_line_bytes)}, "
        "null_padding=false)"
    )


def _csv_streams(names: list[str], spill_dir: Path | None) -> bool:
    """Is the CSV streamed into a spill Parquet file (numbered by its file_row_number)?"""
    return spill_dir is not None and "file_row_number" not in {n.lower() for n in names}


@contextmanager
def _csv_read_errors(f: InputFile) -> Iterator[None]:
    """DuckDB failing to parse the file rejects it."""
    try:
        yield
    except (duckdb.InvalidInputException, duckdb.ConversionException) as e:
        raise FileRejected("unreadable_file", f"{f.name}: cannot read as CSV ({_short(e)})") from e


def _copy_csv(cur: duckdb.DuckDBPyConnection, f: InputFile, scan: str, path: Path) -> None:
    with _csv_read_errors(f):
        cur.execute(f"COPY ({scan}) TO {sql_literal(str(path))} (FORMAT parquet)")


def parse_csvs(
    con: duckdb.DuckDBPyConnection,
    jobs: list[tuple[InputFile, str]],
    delimiter: str,
    spill_dir: Path,
    max_line_bytes: int,
) -> dict[str, ParsedCsv]:
    """Stream several CSV files (``(file, table)``) into their spill Parquet files at once, each
    on one thread (``one_thread_each``), the largest first; ``load_raw(..., parsed=...)`` then
    skips the parse.
    DuckDB keeps a file's record order only at some cost when one file is read by several
    threads (preserve_insertion_order; 250 MB: 3.4 s on two threads, 4.3 s on one), so two
    files on one thread each are faster (10M events: 17.5 -> 13.2 s for the five files).
    A file DuckDB cannot read gets its FileRejected instead. The reject tables DuckDB fills are
    temporary tables of the cursor's connection: they are copied into the main schema."""
    out: dict[str, ParsedCsv] = {}
    work: list[tuple[InputFile, str, str]] = []
    for f, table in jobs:
        try:
            names = _csv_names(f, delimiter)
        except FileRejected as e:
            out[table] = ParsedCsv(names=[], rejected=e)
            continue
        if _csv_streams(names, spill_dir):
            out[table] = ParsedCsv(names=names)
            work.append((f, table, _csv_scan(f, table, names, delimiter, max_line_bytes)))
    if len(work) < 2:  # one file: both threads read it (load_raw parses it)
        for _f, table, _s in work:
            del out[table]
        return out
    spill_dir.mkdir(parents=True, exist_ok=True)

    def parse(job: tuple[InputFile, str, str]) -> None:
        f, table, scan = job
        cur = con.cursor()
        try:
            _copy_csv(cur, f, scan, spill_dir / f"{table}_parsed.parquet")
            for suffix in ("_rej_scans", "_rej_errors"):
                cur.execute(
                    f"CREATE TABLE main.{table}{suffix} AS SELECT * FROM temp.main.{table}{suffix}"
                )
        except FileRejected as e:
            out[table].rejected = e
        finally:
            cur.close()

    one_thread_each(con, parse, sorted(work, key=lambda j: -j[0].size_bytes))
    return out


def _load_csv(
    con: duckdb.DuckDBPyConnection,
    f: InputFile,
    table: str,
    delimiter: str,
    spill_dir: Path | None,
    max_line_bytes: int,
    parsed: ParsedCsv | None = None,
) -> RawTable:
    if parsed is not None and parsed.rejected is not None:
        raise parsed.rejected
    names = parsed.names if parsed is not None else _csv_names(f, delimiter)
    rej_err = f"{table}_rej_errors"
    spill = _csv_streams(names, spill_dir)
    if spill:
        assert spill_dir is not None
        path = spill_dir / f"{table}_parsed.parquet"
        if parsed is None:
            spill_dir.mkdir(parents=True, exist_ok=True)
            _copy_csv(con, f, _csv_scan(f, table, names, delimiter, max_line_bytes), path)
        con.execute(
            f"CREATE VIEW {table}_parsed AS SELECT * "
            f"FROM read_parquet({sql_literal(str(path))}, file_row_number = true)"
        )
    else:
        scan = _csv_scan(f, table, names, delimiter, max_line_bytes)
        with _csv_read_errors(f):
            con.execute(f"CREATE TABLE {table}_parsed AS {scan}")
    # the record number (0-based, file order) as _k: the rowid of the in-memory table, or the
    # row number in the Parquet file the CSV was streamed into (preserve_insertion_order)
    numbered = (
        f"SELECT * EXCLUDE (file_row_number), file_row_number AS _k FROM {table}_parsed"
        if spill
        else f"SELECT *, rowid AS _k FROM {table}_parsed"
    )
    rejected_lines = con.execute(f"SELECT count(DISTINCT line) FROM {rej_err}").fetchone()[0]
    n_parsed = con.execute(f"SELECT count(*) FROM {table}_parsed").fetchone()[0]
    if n_parsed == 0 and rejected_lines > 0:
        raise FileRejected(
            "unreadable_file",
            f"{f.name}: no line could be parsed as CSV "
            f"({rejected_lines} malformed lines; wrong delimiter or encoding?)",
        )
    # Line numbers: DuckDB keeps file order (preserve_insertion_order); the k-th parsed record
    # (0-based) sits on line k + 2 plus the number of rejected lines before it. This assumes no
    # quoted newlines inside fields; with them, _row is the record number + 1.
    _number_lines(con, table, numbered, rej_err, rejected_lines, first_line=2)
    if rejected_lines:  # the numbered rows were copied; without rejects `table` is a view
        con.execute(f"DROP {'VIEW' if spill else 'TABLE'} {table}_parsed")
    return RawTable(
        table=table,
        columns=names,
        rows=n_parsed,
        malformed=rejected_lines,
        provenance=_has_provenance(names),
    )


def _number_lines(
    con: duckdb.DuckDBPyConnection,
    table: str,
    numbered: str,
    rej_err: str,
    rejected_lines: int,
    first_line: int,
) -> None:
    """``table`` from ``numbered`` (records with ``_k``, 0-based in file order) with ``_row``,
    the record's line: record k sits on line k + first_line plus the number of rejected lines
    before it. ``{table}_malformed`` holds the rejected lines (line, text, DuckDB's error).
    Without rejected lines ``table`` is a view (no copy) and ``{table}_malformed`` empty."""
    if not rejected_lines:
        con.execute(
            f"CREATE VIEW {table} AS "
            f"SELECT * EXCLUDE (_k), _k + {int(first_line)} AS _row FROM ({numbered})"
        )
        con.execute(
            f"CREATE TABLE {table}_malformed (_row BIGINT, original VARCHAR, detail VARCHAR)"
        )
        return
    # DuckDB's reject line numbers are UBIGINT: BIGINT like every other row number (a mix made
    # the quarantine's source_row DOUBLE)
    con.execute(f"""
        CREATE TABLE {table}_rejlines AS
        SELECT line, row_number() OVER (ORDER BY line) AS n_before_incl
        FROM (SELECT DISTINCT CAST(line AS BIGINT) AS line FROM {rej_err})
    """)
    con.execute(f"""
        CREATE TABLE {table}_rejthreshold AS
        SELECT line - {int(first_line)} - (n_before_incl - 1) AS k_from, n_before_incl AS shift
        FROM {table}_rejlines
    """)
    con.execute(f"""
        CREATE TABLE {table} AS
        WITH numbered AS ({numbered})
        SELECT n.* EXCLUDE (_k),
               n._k + {int(first_line)} + coalesce(t.shift, 0) AS _row
        FROM numbered n ASOF LEFT JOIN {table}_rejthreshold t ON n._k >= t.k_from
        ORDER BY n._k
    """)
    con.execute(f"DROP TABLE {table}_rejthreshold")
    con.execute(f"DROP TABLE {table}_rejlines")
    # csv_line may start with the blank lines before the rejected one
    con.execute(f"""
        CREATE TABLE {table}_malformed AS
        SELECT CAST(line AS BIGINT) AS _row,
               ltrim(any_value(csv_line), chr(13) || chr(10)) AS original,
               string_agg(DISTINCT error_type, '; ' ORDER BY error_type) AS detail
        FROM {rej_err} GROUP BY line
    """)


_HEADER_MAX_BYTES = 1 << 20  # the header line is read up to this many bytes


def _read_csv_header(path: Path, delimiter: str) -> list[str] | None:
    # only the first line is decoded: a text-mode reader decodes ahead, so a row that is not
    # UTF-8 further down would reject the whole file instead of being quarantined by DuckDB
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        first = fh.readline(_HEADER_MAX_BYTES)
    if not first:
        return None
    for row in csv.reader([first.decode("utf-8-sig")], delimiter=delimiter):
        return row
    return None


def _load_jsonl(
    con: duckdb.DuckDBPyConnection, f: InputFile, table: str, max_line_bytes: int
) -> RawTable:
    # One physical line per row (blank lines kept so line numbers stay exact), parsed as JSON in
    # SQL; a line over max_line_bytes is rejected by DuckDB and becomes a malformed row.
    rej_scan, rej_err = f"{table}_rej_scans", f"{table}_rej_errors"
    try:
        con.execute(f"""
            CREATE TABLE {table}_text AS
            SELECT line AS _json
            FROM read_csv({sql_literal(str(f.path))}, columns={{'line': 'VARCHAR'}}, header=false,
                          delim=chr(1), quote='', escape='', auto_detect=false,
                          max_line_size={int(max_line_bytes)}, strict_mode=false,
                          store_rejects=true, rejects_scan={sql_literal(rej_scan)},
                          rejects_table={sql_literal(rej_err)})
        """)
    except (duckdb.InvalidInputException, duckdb.ConversionException) as e:
        raise FileRejected(
            "unreadable_file", f"{f.name}: cannot read as JSON Lines ({_short(e)})"
        ) from e
    rejected = con.execute(f"SELECT count(DISTINCT line) FROM {rej_err}").fetchone()[0]
    # blank lines are kept until here (they count for the numbering), then skipped
    numbered = f"SELECT _json, rowid AS _k FROM {table}_text"
    _number_lines(con, f"{table}_lines", numbered, rej_err, rejected, first_line=1)
    nonblank = f"FROM {table}_lines WHERE _json IS NOT NULL AND trim(_json) <> ''"
    con.execute(f"""
        CREATE TABLE {table}_malformed AS
        SELECT _row, _json AS original, 'invalid JSON object' AS detail {nonblank}
            AND (NOT coalesce(json_valid(_json), false) OR json_type(_json) <> 'OBJECT')
        UNION ALL
        SELECT _row, original, detail FROM {table}_lines_malformed
    """)
    con.execute(f"""
        CREATE TABLE {table} AS SELECT _json, _row {nonblank}
            AND coalesce(json_valid(_json), false) AND json_type(_json) = 'OBJECT'
        ORDER BY _row
    """)
    con.execute(f"DROP {'TABLE' if rejected else 'VIEW'} {table}_lines")
    con.execute(f"DROP TABLE {table}_lines_malformed")
    con.execute(f"DROP TABLE {table}_text")
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    malformed = con.execute(f"SELECT count(*) FROM {table}_malformed").fetchone()[0]
    if rows == 0 and malformed > 0:
        raise FileRejected("unreadable_file", f"{f.name}: no line is a JSON object")
    # keys present anywhere in the file (for the required-column check and `extra`)
    keys = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT unnest(json_keys(_json)) FROM {table} ORDER BY 1"
        ).fetchall()
    ]
    present = {k.strip().lower() for k in keys}
    from schemas.contract import load_contract

    missing = [
        c.name
        for c in load_contract().envelope
        if "all" in c.required_for and c.name not in present
    ]
    if missing:
        raise FileRejected(
            "missing_required_column",
            f"{f.name}: required field(s) {', '.join(missing)} absent from every line",
        )
    return RawTable(
        table=table, columns=keys, rows=rows, malformed=malformed, provenance=_has_provenance(keys)
    )


def _load_parquet(
    con: duckdb.DuckDBPyConnection, f: InputFile, table: str, delimiter: str
) -> RawTable:
    try:
        desc = con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({sql_literal(str(f.path))})"
        ).fetchall()
    except (duckdb.InvalidInputException, duckdb.IOException) as e:
        raise FileRejected(
            "unreadable_file", f"{f.name}: cannot read as Parquet ({_short(e)})"
        ) from e
    names = [d[0] for d in desc]
    casts = ", ".join(f"CAST({_ident(n)} AS VARCHAR) AS {_ident(n.strip())}" for n in names)
    con.execute(f"""
        CREATE TABLE {table} AS
        SELECT {casts}, file_row_number + 1 AS _row
        FROM read_parquet({sql_literal(str(f.path))}, file_row_number=true)
        ORDER BY file_row_number
    """)
    con.execute(f"CREATE TABLE {table}_malformed (_row BIGINT, original VARCHAR, detail VARCHAR)")
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return RawTable(
        table=table,
        columns=[n.strip() for n in names],
        rows=rows,
        malformed=0,
        provenance=_has_provenance(names),
    )


def _has_provenance(names: list[str]) -> bool:
    lowered = {n.strip().lower() for n in names}
    return "_source_file" in lowered and "_source_row" in lowered


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:200]
