"""great-expectations on DuckDB: the shim and the validation call.

No released GX (1.24.x) supports DuckDB: its SQL engine returns an unconsumed cursor after the
SQLAlchemy connection closed, and DuckDB invalidates result sets on the rollback at close, so
every metric query comes back empty ("list index out of range"; GX issues #10738, #11579).
Two patches fix it (measured in tooling-notes.md):
  1. add "duckdb" to GX's persisted-connection dialects, so one connection stays open;
  2. give the engine a dialect module so regex expectations know the operator.
GX is pinned to 1.24.* in pyproject.toml and tests/test_quality_gx_canary.py validates a 3-row
DuckDB table through this shim on every CI run. Delete the shim when GX ships a native engine
(GX PR #12084).

GX is imported lazily (2.7 s, 280 MB) so `txh --help` stays fast; ingest starts the import in
the background when a batch begins (``import_in_background``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import types
from pathlib import Path
from typing import Any

from pipelines.warehouse import sql_literal
from quality.suites import ENVELOPE_SUITE, Suite

_PATCHED = False
_IMPORTING: threading.Thread | None = None


def import_in_background() -> None:
    """Start importing great-expectations on a background thread (2.7 s of Python, which then
    overlaps the batch's read, DuckDB releasing the GIL while it works); ``_context`` waits for
    it. A failed import is raised again, with its traceback, by the foreground import."""
    global _IMPORTING
    if _IMPORTING is None and not _PATCHED:
        _IMPORTING = threading.Thread(target=_import_quietly, name="gx-import", daemon=True)
        _IMPORTING.start()


def _import_quietly() -> None:
    with contextlib.suppress(Exception):
        _patch()


def _patch() -> None:
    global _PATCHED
    if _PATCHED:
        return
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations.data_context.types.base  # noqa: F401  (sets its logger level)
    import great_expectations.execution_engine.sqlalchemy_execution_engine as see

    class _Dialect(str):
        # GX calls .value on entries of this tuple and also compares them as strings
        @property
        def value(self) -> str:
            return str(self)

    # some GX modules force their own logger to INFO at import; keep them quiet
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if "duckdb" not in [str(d) for d in see._PERSISTED_CONNECTION_DIALECTS]:
        see._PERSISTED_CONNECTION_DIALECTS += (_Dialect("duckdb"),)
    _PATCHED = True


def _context() -> Any:
    if _IMPORTING is not None:
        _IMPORTING.join()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _patch()
    ctx = gx.get_context(mode="ephemeral")
    # GX passes disable= to tqdm explicitly, so TQDM_DISABLE has no effect; this does
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return ctx


def _validate(ds: Any, suites: list[Suite], relation: str) -> dict[str, dict[str, Any]]:
    import great_expectations as gx

    results: dict[str, dict[str, Any]] = {}
    for suite in suites:
        where = "" if suite.name == ENVELOPE_SUITE else f" WHERE {suite.scope}"
        asset = ds.add_query_asset(name=suite.name, query=f"SELECT * FROM {relation}{where}")
        batch = asset.add_batch_definition_whole_table("all").get_batch()
        gx_suite = gx.ExpectationSuite(**suite.gx_json())
        res = batch.validate(gx_suite, result_format={"result_format": "SUMMARY"})
        results[suite.name] = res.to_json_dict()
    return results


def _datasource(ctx: Any, name: str, **kwargs: Any) -> Any:
    import sqlalchemy as sa

    ds = ctx.data_sources.add_sql(name=name, connection_string="duckdb:///:memory:", **kwargs)
    ds.get_execution_engine().dialect_module = types.SimpleNamespace(
        dialect=sa.dialects.postgresql.dialect
    )
    return ds


def validate_table(con: Any, table: str, suites: list[Suite]) -> dict[str, dict[str, Any]]:
    """Validate a table of an open DuckDB connection (the ingest's staged batch) in place.

    GX gets cursors of the same database through duckdb_engine's wrapper, so the metrics are
    computed by SQL push-down on the in-memory table: no copy, no Parquet round trip (10
    expectations on 10M rows in about a second).
    """
    from duckdb_engine import ConnectionWrapper

    ctx = _context()
    ds = _datasource(ctx, "staged", kwargs={"creator": lambda: ConnectionWrapper(con.cursor())})
    return _validate(ds, suites, table)


def validate_parquet(staged: Path, suites: list[Suite]) -> dict[str, dict[str, Any]]:
    """Validate a Parquet file against each suite (in GX's own in-memory DuckDB)."""
    ctx = _context()
    ds = _datasource(ctx, "parquet")
    return _validate(ds, suites, f"read_parquet({sql_literal(staged)})")


def unexpected_counts(result: dict[str, Any]) -> dict[str, int]:
    """reason_code -> number of failing rows, from a GX suite validation result."""
    out: dict[str, int] = {}
    for r in result["results"]:
        code = r["expectation_config"]["meta"]["reason_code"]
        res = r.get("result") or {}
        if r["expectation_config"]["type"] == "unexpected_rows_expectation":
            n = res.get("observed_value")
        else:
            n = res.get("unexpected_count")
        if n is None and res.get("element_count") == 0:
            n = 0
        if n is None:
            raise RuntimeError(f"GX returned no count for {code}: {r.get('exception_info')}")
        out[code] = int(n)
    return out
