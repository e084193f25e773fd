"""A killed ingest leaves the log either without the batch or with all of it; the retry succeeds.

Two ways to die: SIGKILL at random moments of a real `txh ingest` subprocess, and crashes at
named points between the writes (TXH_FAULT_AT, see pipelines.warehouse.fault_point).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.warehouse import Warehouse
from tests.conftest import REPO, dispensing, write_csv


def _env(wh: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"TXH_WAREHOUSE": str(wh), "GX_ANALYTICS_ENABLED": "false"}, **extra)
    env.pop("TXH_FAULT_AT", None)
    env.update(extra)
    return env


def _txh(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def check_log_intact(wh: Path) -> int:
    """Every committed batch is complete and readable; returns the number of stored events."""
    w = Warehouse(wh)
    total = 0
    for m in w.committed_manifests():
        files = [wh / f for f in m["event_files"]]
        assert all(f.exists() for f in files), f"batch {m['batch_id']}: missing event files"
        n = 0
        if files:
            lst = "[" + ", ".join(f"'{f}'" for f in files) + "]"
            n = duckdb.sql(f"SELECT count(*) FROM read_parquet({lst})").fetchall()[0][0]
        assert n == m["totals"]["accepted"], f"batch {m['batch_id']}: {n} rows vs manifest"
        if m["quarantine_file"]:
            assert (wh / m["quarantine_file"]).exists()
        total += n
    return total


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("atom")
    rows = [
        dispensing(
            i,
            patient=f"P{i % 997}",
            occurred_at=f"2024-0{1 + i % 9}-{1 + i % 28:02d}",
            recorded_at="2024-12-31",
        )
        for i in range(60_000)
    ]
    rows[5]["days_supply"] = -1  # one quarantined row, so the quarantine file is part of it
    return write_csv(tmp / "big.csv", rows)


@pytest.mark.parametrize("point", ["ingest.before_events_rename", "ingest.before_manifest"])
def test_crash_between_writes_leaves_no_batch_and_retry_succeeds(
    tmp_path: Path, big_input: Path, point: str
) -> None:
    wh = tmp_path / "wh"
    p = _txh(["ingest", str(big_input)], _env(wh, TXH_FAULT_AT=point))
    assert p.wait(timeout=120) == 99
    assert check_log_intact(wh) == 0 and not Warehouse(wh).committed_manifests()
    # the killed ingest left its scratch database (the batch's working tables) behind
    assert list((wh / "tmp").glob("ingest-*.duckdb"))
    p = _txh(["ingest", str(big_input)], _env(wh))
    assert p.wait(timeout=120) == 0, p.stderr.read().decode()[-2000:]
    assert check_log_intact(wh) == 59_999
    leftovers = [x for x in (wh / "log" / "events").iterdir() if x.name.startswith(".tmp")]
    assert not leftovers
    assert not list((wh / "tmp").glob("ingest-*.duckdb*")), "the retry removes scratch files"


def test_crash_after_manifest_keeps_the_batch(tmp_path: Path, big_input: Path) -> None:
    wh = tmp_path / "wh"
    p = _txh(["ingest", str(big_input)], _env(wh, TXH_FAULT_AT="ingest.after_manifest"))
    assert p.wait(timeout=120) == 99
    assert check_log_intact(wh) == 59_999
    p = _txh(["ingest", str(big_input)], _env(wh))  # the retry sees the file as ingested
    assert p.wait(timeout=120) == 0
    assert len(Warehouse(wh).committed_manifests()) == 1


def test_sigkill_at_random_moments_never_corrupts_the_log(tmp_path: Path, big_input: Path) -> None:
    wh = tmp_path / "wh"
    rng = random.Random(7)
    t0 = time.perf_counter()  # measure one clean run in another warehouse for the time scale
    ref = _txh(["ingest", str(big_input)], _env(tmp_path / "ref"))
    assert ref.wait(timeout=120) == 0
    duration = time.perf_counter() - t0
    for _ in range(5):
        p = _txh(["ingest", str(big_input)], _env(wh))
        time.sleep(rng.uniform(0.05, duration))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        n = check_log_intact(wh)
        assert n in (0, 59_999)
    p = _txh(["ingest", str(big_input)], _env(wh))
    assert p.wait(timeout=120) == 0
    assert check_log_intact(wh) == 59_999
    got = [m["totals"] for m in Warehouse(wh).committed_manifests()]
    want = [m["totals"] for m in Warehouse(tmp_path / "ref").committed_manifests()]
    assert got == want


def test_second_writer_exits_75_while_the_lock_is_held(tmp_path: Path, big_input: Path) -> None:
    wh = tmp_path / "wh"
    w = Warehouse(wh)
    with w.lock():
        p = _txh(["ingest", str(big_input)], _env(wh))
        rc = p.wait(timeout=60)
        msg = p.stderr.read().decode()
    assert rc == 75 and "another txh process" in msg
    assert not w.committed_manifests()
    p = _txh(["ingest", "--wait", "30", str(big_input)], _env(wh))
    assert p.wait(timeout=120) == 0
    assert json.loads(w.manifest_path(1).read_text())["totals"]["accepted"] == 59_999
