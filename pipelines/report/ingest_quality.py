"""Data quality of the latest ingest batches, from the batch manifests (<warehouse>/log/manifests).

Counts only: rows read / accepted / quarantined / duplicates per batch, files by outcome and the
most frequent quarantine reasons. File names are reduced to their base name and the per-batch
data-docs pages are named as warehouse paths, not linked (the report is one self-contained
file that may travel without the warehouse).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.warehouse import Warehouse


@dataclass(frozen=True)
class BatchQuality:
    batch_id: int
    ingested_at: str
    n_files: int
    files_rejected: int
    files_gate_failed: int
    rows_read: int
    accepted: int
    quarantined: int
    duplicates: int
    conflicts: int
    reconciled: bool
    gate_passed: bool
    data_docs: str | None
    files: list[dict[str, Any]] = field(default_factory=list)


def latest_batches(wh: Warehouse, n: int = 10) -> list[BatchQuality]:
    """The ``n`` most recent committed batches, oldest first."""
    out = []
    for m in wh.committed_manifests()[-n:] if n > 0 else []:
        t = m.get("totals", {})
        files = [
            {
                "file": Path(f.get("path", "")).name,
                "status": f.get("status", ""),
                "rows_read": f.get("rows_read", 0),
                "accepted": f.get("accepted", 0),
                "quarantined": f.get("quarantined", 0),
                "duplicates": f.get("duplicates", 0),
                "reasons": dict(f.get("reasons") or {}),
            }
            for f in m.get("files", [])
        ]
        out.append(
            BatchQuality(
                batch_id=int(m["batch_id"]),
                ingested_at=str(m.get("ingested_at", "")),
                n_files=len(files),
                files_rejected=int(t.get("files_rejected", 0)),
                files_gate_failed=int(t.get("files_gate_failed", 0)),
                rows_read=int(t.get("rows_read", 0)),
                accepted=int(t.get("accepted", 0)),
                quarantined=int(t.get("quarantined", 0)),
                duplicates=int(t.get("duplicates", 0)),
                conflicts=int(t.get("conflicts", 0)),
                reconciled=bool(m.get("reconciled", False)),
                gate_passed=bool(m.get("gate_passed", False)),
                data_docs=m.get("data_docs"),
                files=files,
            )
        )
    return out


def top_reasons(batches: list[BatchQuality], k: int = 10) -> list[tuple[str, int, int]]:
    """(reason, quarantined rows, batches with it), most rows first, over ``batches``."""
    rows: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for b in batches:
        per_batch: Counter[str] = Counter()
        for f in b.files:
            per_batch.update({r: int(n) for r, n in f["reasons"].items() if n})
        rows.update(per_batch)
        seen.update(per_batch.keys())
    return [(r, n, seen[r]) for r, n in sorted(rows.items(), key=lambda x: (-x[1], x[0]))[:k]]
