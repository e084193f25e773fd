"""SQL, generated from the contract, that turns raw text rows into typed contract rows.

Normalisation (per contract column): empty strings are NULL; strings are trimmed and, by the
column's `normalise` rule, lower- or upper-cased; timestamps accept ISO 8601 dates and date-times
with an optional offset and are converted to naive UTC; numbers and integers are parsed
strictly ("30.0" is accepted as the integer 30, "thirty" is not). A value that is present but does
not parse becomes NULL and adds `unparseable_<column>` to ``_parse_errors``.
"""

from __future__ import annotations

from pipelines.ingest.sources import RawTable
from pipelines.warehouse import sql_literal
from schemas.contract import Column, Contract

SEP = "chr(31)"  # unit separator between hashed fields
NULL_MARK = "chr(0)"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def _text_expr(raw: RawTable, source_name: str, jsonl: bool) -> str:
    if jsonl:
        return f"json_extract_string(_json, {sql_literal('$.' + _json_key(source_name))})"
    return f"raw.{_ident(source_name)}"


def _json_key(key: str) -> str:
    return '"' + key.replace('"', '\\"') + '"'


def typed_expr(col: Column, text: str) -> tuple[str, str | None]:
    """(typed SQL expression, parse-error SQL expression or None) for a text input."""
    v = f"nullif(trim({text}), '')"
    if col.type == "string":
        if col.normalise == "lower":
            return f"lower({v})", None
        if col.normalise == "upper":
            return f"upper({v})", None
        return v, None
    if col.type == "timestamp":
        typed = f"CAST(try_cast({v} AS TIMESTAMPTZ) AS TIMESTAMP)"
    elif col.type == "number":
        typed = f"try_cast({v} AS DOUBLE)"
    elif col.type == "integer":
        typed = (
            f"coalesce(try_cast({v} AS BIGINT), CASE WHEN try_cast({v} AS DOUBLE) "
            f"= floor(try_cast({v} AS DOUBLE)) AND abs(try_cast({v} AS DOUBLE)) < 1e15 "
            f"THEN CAST(try_cast({v} AS DOUBLE) AS BIGINT) END)"
        )
    elif col.type == "boolean":
        typed = f"try_cast({v} AS BOOLEAN)"
    else:  # pragma: no cover - guarded by the contract loader
        raise ValueError(col.type)
    err = f"CASE WHEN {v} IS NOT NULL AND {typed} IS NULL THEN 'unparseable_{col.name}' END"
    return typed, err


def stage_select(
    raw: RawTable, file_idx: int, display_path: str, contract: Contract, jsonl: bool
) -> str:
    """SELECT producing typed contract columns + provenance + ``_parse_errors`` + ``extra``."""
    by_lower: dict[str, str] = {}
    for name in raw.columns:
        by_lower.setdefault(name.strip().lower(), name)
    known = set(contract.contract_column_names) | {"_source_file", "_source_row", "_extra"}

    selects: list[str] = [f"{file_idx} AS _file_idx", "raw._row AS _row"]
    errors: list[str] = []
    for col in contract.contract_columns:
        src = by_lower.get(col.name)
        if src is None:
            selects.append(f"CAST(NULL AS {col.duckdb_type}) AS {col.name}")
            continue
        typed, err = typed_expr(col, _text_expr(raw, src, jsonl))
        selects.append(f"{typed} AS {col.name}")
        if err:
            errors.append(err)
    err_list = (
        "list_filter([" + ", ".join(errors) + "], lambda x: x IS NOT NULL)"
        if errors
        else "CAST([] AS VARCHAR[])"
    )
    selects.append(f"{err_list} AS _parse_errors")

    # provenance: adapters name the original file and row; otherwise this file and line
    if raw.provenance:
        sf = _text_expr(raw, by_lower["_source_file"], jsonl)
        sr = _text_expr(raw, by_lower["_source_row"], jsonl)
        selects.append(f"coalesce({sf}, {sql_literal(display_path)}) AS source_file")
        selects.append(f"coalesce(try_cast({sr} AS BIGINT), raw._row) AS source_row")
    else:  # NULL = this file (named by _file_idx at write time; saves a column of copies)
        selects.append("CAST(NULL AS VARCHAR) AS source_file")
        selects.append("raw._row AS source_row")

    # extra: unknown columns as a JSON object (nulls dropped); adapters' _extra merged in
    unknown = [name for name in raw.columns if name.strip().lower() not in known]
    parts: list[str] = []
    if jsonl:
        if unknown:
            drop = (
                "{"
                + ", ".join(
                    f"{_json_key(n)}: null" for n in raw.columns if n.strip().lower() in known
                )
                + "}"
            )
            parts.append(f"json_merge_patch(_json, {sql_literal(drop)})")
    elif unknown:
        struct = ", ".join(f"{sql_literal(n)}: raw.{_ident(n)}" for n in unknown)
        parts.append(f"json_merge_patch('{{}}', to_json({{{struct}}}))")
    if "_extra" in by_lower:
        ex = _text_expr(raw, by_lower["_extra"], jsonl)
        parts.append(f"CASE WHEN json_valid({ex}) THEN CAST({ex} AS JSON) END")
    if not parts:
        extra = "CAST(NULL AS VARCHAR)"
    else:
        merged = (
            parts[0]
            if len(parts) == 1
            else f"json_merge_patch({parts[0]}, coalesce({parts[1]}, '{{}}'))"
        )
        extra = f"nullif(CAST({merged} AS VARCHAR), '{{}}')"
    selects.append(f"{extra} AS extra")
    return "SELECT\n  " + ",\n  ".join(selects) + f"\nFROM {raw.table} AS raw"


def content_hash_expr(contract: Contract) -> str:
    parts = [f"coalesce(CAST({c} AS VARCHAR), {NULL_MARK})" for c in contract.content_columns]
    return f"md5(concat_ws({SEP}, {', '.join(parts)}))"


def family_case(contract: Contract) -> str:
    arms = " ".join(
        f"WHEN event_type IN ({', '.join(sql_literal(et) for et in fam.event_types)}) THEN {sql_literal(name)}"
        for name, fam in contract.families.items()
    )
    return f"CASE {arms} END"
