"""Columnar event buffer: events are appended as numpy blocks (one block = one event type for a
group of patients), strings as codes into one vocabulary, and rendered once per chunk to an
all-string Arrow table in the canonical contract's column order."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.contract import load_contract

# The event contract's columns, in file order, by how the generator fills them: ids are
# written per event, timestamps from day numbers, other text columns from vocabulary codes
_CONTRACT = load_contract().contract_columns
COLUMNS = [c.name for c in _CONTRACT]
ID_COLS = ["event_id", "patient_id", "target_event_id"]
TIME_COLS = [c.name for c in _CONTRACT if c.duckdb_type == "TIMESTAMP"]
STR_COLS = [c.name for c in _CONTRACT if c.duckdb_type == "VARCHAR" and c.name not in ID_COLS]
INT_COLS = [c.name for c in _CONTRACT if c.duckdb_type in ("BIGINT", "INTEGER")]
FLOAT_COLS = [c.name for c in _CONTRACT if c.duckdb_type == "DOUBLE"]
_unclassified = set(COLUMNS) - set(ID_COLS + TIME_COLS + STR_COLS + INT_COLS + FLOAT_COLS)
if _unclassified:  # a new contract type: teach the generator how to write it
    raise RuntimeError(f"generator: contract columns of unknown kind {sorted(_unclassified)}")
NUM_COLS = INT_COLS + FLOAT_COLS

EPOCH = date(1970, 1, 1)


def day_number(d: date) -> int:
    """Days since 1970-01-01 (Arrow date32)."""
    return (d - EPOCH).days


def day_iso(day: int) -> str:
    return date.fromordinal(EPOCH.toordinal() + int(day)).isoformat()


class Vocab:
    """Every string value used in generated events, coded 0..n-1 (code -1 is null)."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.index: dict[str, int] = {}
        self._arrow: pa.Array | None = None

    def code(self, s: str) -> int:
        c = self.index.get(s)
        if c is None:
            c = self.index[s] = len(self.items)
            self.items.append(s)
            self._arrow = None
        return c

    def codes(self, values: list[str]) -> np.ndarray:
        return np.array([self.code(v) for v in values], dtype=np.int32)

    def arrow(self) -> pa.Array:
        if self._arrow is None:
            self._arrow = pa.array(self.items, type=pa.string())
        return self._arrow


VOCAB = Vocab()
V = VOCAB.code


class EventBuffer:
    """Blocks of events; ``pat`` are chunk-local patient indices, ``day`` day numbers."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, np.ndarray]] = []

    def add(self, pat: np.ndarray, event_type: str, day: Any, **cols: Any) -> None:
        pat = np.asarray(pat, dtype=np.int64)
        n = len(pat)
        if n == 0:
            return
        block: dict[str, np.ndarray] = {
            "pat": pat,
            "day": np.broadcast_to(np.asarray(day, dtype=np.int64), (n,)).copy(),
            "event_type": np.full(n, V(event_type), dtype=np.int32),
        }
        for k, v in cols.items():
            if v is None:
                continue
            if k in STR_COLS:
                if isinstance(v, str):
                    block[k] = np.full(n, V(v), dtype=np.int32)
                else:
                    block[k] = np.broadcast_to(np.asarray(v, dtype=np.int32), (n,)).copy()
            elif k in NUM_COLS:
                block[k] = np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
            else:
                raise KeyError(f"not a generated column: {k}")
        self.blocks.append(block)

    def extend(self, other: EventBuffer) -> None:
        self.blocks.extend(other.blocks)

    def shift(self, shift_by_pat: np.ndarray) -> None:
        """Add a per-patient day offset to every event (pat indexes shift_by_pat)."""
        for b in self.blocks:
            b["day"] += shift_by_pat[b["pat"]]

    def concat(self) -> dict[str, np.ndarray]:
        n = sum(len(b["pat"]) for b in self.blocks)
        out: dict[str, np.ndarray] = {
            "pat": np.empty(n, np.int64),
            "day": np.empty(n, np.int64),
        }
        for c in STR_COLS:
            out[c] = np.full(n, -1, np.int32)
        for c in NUM_COLS:
            out[c] = np.full(n, np.nan, np.float64)
        pos = 0
        for b in self.blocks:
            m = len(b["pat"])
            for k, v in b.items():
                out[k][pos : pos + m] = v
            pos += m
        return out


def take_cols(cols: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in cols.items()}


def _str_col(codes: np.ndarray) -> pa.Array:
    mask = codes < 0
    idx = pa.array(np.where(mask, 0, codes), mask=mask, type=pa.int32())
    return pc.take(VOCAB.arrow(), idx)


def _num_col(values: np.ndarray, integer: bool) -> pa.Array:
    arr = pa.array(values, from_pandas=True, type=pa.float64())
    if integer:
        arr = arr.cast(pa.int64())
    return arr.cast(pa.string())


def render(
    cols: dict[str, np.ndarray],
    event_id: pa.Array,
    patient_id: pa.Array,
    target_event_id: pa.Array | None = None,
) -> pa.Table:
    """All-string Arrow table in contract order (dates ISO, numbers shortest form, null = empty)."""
    n = len(cols["day"])
    arrays: dict[str, pa.Array] = {}
    for c in COLUMNS:
        if c == "event_id":
            arrays[c] = event_id
        elif c == "patient_id":
            arrays[c] = patient_id
        elif c in ("occurred_at", "recorded_at"):
            key = "day" if c == "occurred_at" else "rec_day"
            arrays[c] = (
                pa.array(cols[key].astype(np.int32), type=pa.int32())
                .cast(pa.date32())
                .cast(pa.string())
            )
        elif c in STR_COLS:
            arrays[c] = _str_col(cols[c])
        elif c in NUM_COLS:
            arrays[c] = _num_col(cols[c], c in INT_COLS)
        elif c == "target_event_id":
            arrays[c] = target_event_id if target_event_id is not None else pa.nulls(n, pa.string())
        else:
            arrays[c] = pa.nulls(n, pa.string())
    return pa.table(arrays)


def patient_ids(global_index: np.ndarray) -> pa.Array:
    s = pa.array(global_index + 1, type=pa.int64()).cast(pa.string())
    return pc.binary_join_element_wise("P", pc.utf8_lpad(s, 7, "0"), "")


def suffixed(ids: pa.Array, suffix: str) -> pa.Array:
    return pc.binary_join_element_wise(ids, suffix, "")
