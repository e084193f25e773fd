"""Upcasters: read events stored under an older contract version as the current version.

Stored events are never rewritten. When the contract changes, bump ``schema_version`` in a new
``schemas/events/v<N>.yaml``, add a pure SQL upcaster ``upcast_v<N-1>_v<N>`` here, and register it.
The log reader applies the chain to every batch whose manifest says it was written under an older
version. Each upcaster maps a SELECT over the old storage columns to one over the new columns.

There is only v1 today, so the chain is empty; the mechanism and its test (a committed v1 fixture
read through ``upcast_sql``) are in place for the first change.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.contract import CURRENT_SCHEMA_VERSION, load_contract

# from-version -> function(relation_sql) -> relation_sql at from-version + 1
UPCASTERS: dict[int, Callable[[str], str]] = {}


def upcast_sql(
    relation_sql: str, from_version: int, to_version: int = CURRENT_SCHEMA_VERSION
) -> str:
    """Return SQL selecting ``relation_sql`` (stored at ``from_version``) as ``to_version``.

    The result always has exactly the storage columns of ``to_version`` in contract order, so
    batches of different versions can be unioned by position.
    """
    if from_version > to_version:
        raise ValueError(f"cannot downcast events from v{from_version} to v{to_version}")
    sql = relation_sql
    for v in range(from_version, to_version):
        if v not in UPCASTERS:
            raise ValueError(f"no upcaster registered from v{v} to v{v + 1}")
        sql = UPCASTERS[v](sql)
    cols = ", ".join(c.name for c in load_contract(to_version).storage_columns())
    return f"SELECT {cols} FROM ({sql})"
