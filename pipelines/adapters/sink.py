"""Streaming output of a conversion: canonical events, quarantine and the reconciled report.

Events and quarantined records are buffered in columnar lists and written to Parquet in chunks
(``chunk_rows``), so memory stays bounded by the chunk size whatever the input size. Files are
written under temporary names and renamed when the conversion completes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.adapters.dates import DateError
from pipelines.adapters.model import (
    CONTRACT_COLUMNS,
    Mapped,
    Outcome,
    OutOfScope,
    Quarantined,
    SourceRecord,
    Tally,
    Unmappable,
)

EVENT_SCHEMA = pa.schema(
    [pa.field(c, pa.string()) for c in CONTRACT_COLUMNS]
    + [
        pa.field("_source_file", pa.string()),
        pa.field("_source_row", pa.int64()),
        pa.field("_extra", pa.string()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string()),
        pa.field("source_row", pa.int64()),
        pa.field("record_type", pa.string()),
        pa.field("reasons", pa.list_(pa.string())),
        pa.field("detail", pa.string()),
        pa.field("original", pa.string()),
    ]
)


@dataclass
class _Buffer:
    schema: pa.Schema
    path: Path
    chunk_rows: int
    columns: dict[str, list[Any]] = field(init=False)
    writer: pq.ParquetWriter | None = None
    rows: int = 0
    written: int = 0

    def __post_init__(self) -> None:
        self.columns = {name: [] for name in self.schema.names}

    def append(self, values: dict[str, Any]) -> None:
        for name, col in self.columns.items():
            col.append(values.get(name))
        self.rows += 1
        if self.rows >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        table = pa.Table.from_pydict(self.columns, schema=self.schema)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self.writer.write_table(table)
        self.written += self.rows
        self.columns = {name: [] for name in self.schema.names}
        self.rows = 0

    def close(self, *, keep_empty: bool) -> bool:
        """Flush and close; True when a file exists afterwards."""
        self.flush()
        if self.writer is None:
            if not keep_empty:
                return False
            pq.write_table(self.schema.empty_table(), self.path, compression="zstd")
            return True
        self.writer.close()
        return True


class ConversionWriter:
    """Collects outcomes: writes events and quarantine, tallies the report."""

    def __init__(self, source_format: str, work_dir: Path, chunk_rows: int = 50_000):
        work_dir.mkdir(parents=True, exist_ok=True)
        self.source_format = source_format
        self.events_path = work_dir / f"{source_format}-events.parquet"
        self.quarantine_path = work_dir / f"{source_format}-quarantine.parquet"
        self._events = _Buffer(EVENT_SCHEMA, work_dir / f".{source_format}-events.tmp", chunk_rows)
        self._quarantine = _Buffer(
            QUARANTINE_SCHEMA, work_dir / f".{source_format}-quarantine.tmp", chunk_rows
        )
        self.tallies: dict[tuple[str, str], Tally] = {}
        self.ignored_files: list[dict[str, str]] = []
        self.reference_tables: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def map(self, rec: SourceRecord, mapper: Callable[[], Outcome]) -> Outcome:
        """Run a mapper for one record and record its outcome (quarantine on Unmappable)."""
        try:
            outcome = mapper()
        except Unmappable as e:
            outcome = Quarantined(e.reasons, e.detail)
        except DateError as e:
            outcome = Quarantined(("unparseable_date",), str(e))
        self.add(rec, outcome)
        return outcome

    def add(self, rec: SourceRecord, outcome: Outcome) -> None:
        key = (rec.source_file, rec.record_type)
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = Tally()
        tally.add(outcome)
        if isinstance(outcome, Mapped):
            for ev in outcome.events:
                extra = ev.get("_extra") or {}
                row = dict(ev)
                row["_extra"] = json.dumps(extra, sort_keys=True, default=str) if extra else None
                row["_source_file"] = rec.source_file
                row["_source_row"] = rec.row
                self._events.append(row)
        elif isinstance(outcome, Quarantined):
            original = rec.original
            if not isinstance(original, str):
                original = json.dumps(original, default=str)
            self._quarantine.append(
                {
                    "source_file": rec.source_file,
                    "source_row": rec.row,
                    "record_type": rec.record_type,
                    "reasons": list(outcome.reasons),
                    "detail": outcome.detail or None,
                    "original": original,
                }
            )
        elif not isinstance(outcome, OutOfScope):  # pragma: no cover - typing guard
            raise TypeError(outcome)

    def ignore_file(self, path: Path | str, why: str) -> None:
        self.ignored_files.append({"path": str(path), "why": why})

    def reference_table(self, path: Path | str, rows: int, used_for: str) -> None:
        self.reference_tables.append({"path": str(path), "rows": rows, "used_for": used_for})

    def close(self, options: dict[str, Any]) -> tuple[Path, Path | None, dict[str, Any]]:
        self._events.close(keep_empty=True)
        self._events.path.replace(self.events_path)
        has_q = self._quarantine.close(keep_empty=False)
        if has_q:
            self._quarantine.path.replace(self.quarantine_path)
        else:
            self.quarantine_path.unlink(missing_ok=True)
        report = self._report(options)
        if report["events_written"] != report["totals"]["events_total"]:  # pragma: no cover
            raise AssertionError("events written differ from events tallied")
        return self.events_path, (self.quarantine_path if has_q else None), report

    def _report(self, options: dict[str, Any]) -> dict[str, Any]:
        totals = Tally()
        by_type: dict[str, Tally] = {}
        entries = []
        for (source_file, record_type), tally in self.tallies.items():
            totals.merge(tally)
            by_type.setdefault(record_type, Tally()).merge(tally)
            entries.append(
                {"source_file": source_file, "record_type": record_type, **tally.to_dict()}
            )
        return {
            "source_format": self.source_format,
            "files": entries,
            "by_record_type": {k: v.to_dict() for k, v in sorted(by_type.items())},
            "totals": totals.to_dict(),
            "reconciled": all(t.reconciled for t in self.tallies.values()),
            "events_written": self._events.written,
            "quarantine_rows_written": self._quarantine.written,
            "ignored_files": self.ignored_files,
            "reference_tables": self.reference_tables,
            "notes": self.notes,
            "options": options,
        }
