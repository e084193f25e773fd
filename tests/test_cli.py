"""CLI behaviour a scheduler relies on: help, exit codes, JSON summary on stdout, JSON logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, dispensing, write_csv


def txh(*args: str, wh: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--warehouse", str(wh), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    r = txh("--help", wh=tmp_path)
    assert r.returncode == 0
    for cmd in ("ingest", "build", "run", "generate", "report", "query", "config"):
        assert cmd in r.stdout


def test_usage_error_exits_2(tmp_path: Path) -> None:
    assert txh("ingest", wh=tmp_path).returncode == 2
    assert txh("ingest", str(tmp_path / "missing.csv"), wh=tmp_path).returncode == 2
    assert txh("no-such-command", wh=tmp_path).returncode == 2


def test_ingest_exit_codes_json_summary_and_logs(tmp_path: Path) -> None:
    good = write_csv(
        tmp_path / "good.csv", [dispensing(i, recorded_at="2024-12-01") for i in range(1, 21)]
    )
    r = txh("ingest", "--json", str(good), wh=tmp_path / "wh")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["accepted"] == 20 and summary["reconciled"] and summary["gate_passed"]
    logs = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "ingest.batch_done" for e in logs)
    bad_rows = [dispensing(i, days_supply=-1) for i in range(30, 40)]
    bad = write_csv(tmp_path / "bad.csv", bad_rows)
    r = txh("ingest", str(bad), wh=tmp_path / "wh")
    assert r.returncode == 1 and "quality gate failed" in r.stdout


def test_build_until_batch_reproduces_without_publishing_unless_asked(tmp_path: Path) -> None:
    """`txh build --until-batch N` is an audit reproduction: it writes the build but leaves the
    published warehouse (and its status history) on the current build; --publish publishes it."""
    wh = tmp_path / "wh"
    first = write_csv(tmp_path / "a.csv", [dispensing(i) for i in range(1, 6)])
    second = write_csv(tmp_path / "b.csv", [dispensing(i, patient="P2") for i in range(10, 16)])
    for f in (first, second):
        assert txh("ingest", str(f), wh=wh).returncode == 0
    current = json.loads(txh("build", "--json", "--as-of", "2024-06-30", wh=wh).stdout)
    assert current["published"] and current["max_batch_id"] == 2

    def pointer() -> str:
        return json.loads((wh / "CURRENT").read_text())["build_id"]

    assert pointer() == current["build_id"]
    r = txh("build", "--json", "--as-of", "2024-06-30", "--until-batch", "1", wh=wh)
    assert r.returncode == 0, r.stderr
    assert pointer() == current["build_id"]
    repro = json.loads(r.stdout)
    assert not repro["published"] and repro["build_id"] != current["build_id"]
    assert repro["max_batch_id"] == 1  # the summary says which part of the log it read
    assert Path(repro["output_dir"]).is_dir()
    r = txh("build", "--json", "--as-of", "2024-06-30", "--until-batch", "1", "--publish", wh=wh)
    published = json.loads(r.stdout)
    assert published["published"] and pointer() == published["build_id"]
