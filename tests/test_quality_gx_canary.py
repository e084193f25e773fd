"""Canary for the great-expectations/DuckDB shim (quality/gx_duckdb.py).

If a GX upgrade breaks the two patches, this fails before any ingest does. Delete the shim (and
this test's first case) once GX ships a native DuckDB engine.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from quality.gx_duckdb import unexpected_counts, validate_parquet
from quality.suites import Check, Suite


def test_gx_validates_a_three_row_duckdb_batch(tmp_path: Path) -> None:
    p = tmp_path / "t.parquet"
    duckdb.sql(f"""COPY (SELECT * FROM (VALUES ('a', 1, 'x1'), (NULL, -2, 'x2'), ('c', 3, 'bad'))
                   t(name, n, code)) TO '{p}' (FORMAT parquet)""")
    suite = Suite(
        name="canary",
        scope="TRUE",
        checks=(
            Check(
                "canary",
                "missing_name",
                "expect_column_values_to_not_be_null",
                {"column": "name"},
                "name IS NULL",
                "",
                "contract",
                1.0,
            ),
            Check(
                "canary",
                "negative_n",
                "unexpected_rows_expectation",
                {"unexpected_rows_query": "SELECT * FROM {batch} WHERE n < 0"},
                "n < 0",
                "",
                "clinical",
                1.0,
            ),
            Check(
                "canary",
                "bad_code",
                "expect_column_values_to_match_regex",
                {"column": "code", "regex": "^x[0-9]$"},
                "NOT regexp_matches(code, '^x[0-9]$')",
                "",
                "contract",
                1.0,
            ),
            Check(
                "canary",
                "unknown_name",
                "expect_column_values_to_be_in_set",
                {"column": "name", "value_set": ["a", "b"]},
                "name NOT IN ('a','b')",
                "",
                "contract",
                1.0,
            ),
        ),
    )
    res = validate_parquet(p, [suite])["canary"]
    assert unexpected_counts(res) == {
        "missing_name": 1,
        "negative_n": 1,
        "bad_code": 1,
        "unknown_name": 1,
    }
    assert res["success"] is False
