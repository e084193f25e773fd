"""The README's analyst queries run against a warehouse built from the bundled sample: each
statement binds and executes, and the questions that the sample is built to answer return rows."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from pipelines.run import run
from tests.conftest import REPO, make_cfg

SECTION = re.compile(r"## Ten questions analysts ask first\n(.*?)\n## ", re.S)


def _queries() -> list[str]:
    text = SECTION.search((REPO / "README.md").read_text()).group(1)
    blocks = re.findall(r"```sql\n(.*?)```", text, re.S)
    return [s.strip() for b in blocks for s in b.split(";") if s.strip()]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wh = tmp_path_factory.mktemp("readme") / "wh"
    cfg = make_cfg(wh)
    res = run(
        cfg,
        inputs=[str(REPO / "data" / "sample" / "deliveries")],
        as_of=datetime(2025, 1, 31, 23, 59, 59),
    )
    assert res.exit_code == 0
    return wh / "warehouse.duckdb"


def test_readme_has_ten_questions() -> None:
    text = SECTION.search((REPO / "README.md").read_text()).group(1)
    assert len(re.findall(r"^\d+\. ", text, re.M)) == 10
    assert len(_queries()) >= 10


@pytest.mark.parametrize("sql", _queries(), ids=lambda s: s.split("\n")[0][:40])
def test_readme_query_runs_read_only(warehouse: Path, sql: str) -> None:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute(sql).fetchall()
    finally:
        con.close()
    if "refractory_status_history" in sql or "cohort_summary" in sql or "sensitivity" in sql:
        assert rows, "the sample answers this question"


def test_warehouse_has_html_data_dictionary_and_column_comments(warehouse: Path) -> None:
    html = (warehouse.parent / "data_dictionary.html").read_text()
    assert "<html" in html.lower() and "refractory_status" in html and "evidence" in html
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        (comment,) = con.execute(
            "SELECT comment FROM duckdb_columns() "
            "WHERE table_name = 'refractory_status' AND column_name = 'status'"
        ).fetchone()
    finally:
        con.close()
    assert comment and "refractory" in comment
