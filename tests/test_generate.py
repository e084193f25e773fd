"""Synthetic cohort generator: determinism, sizing, delivery slices, and the noise truth agreeing
with what a real in-process ingest quarantines and de-duplicates."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import duckdb
import pytest

from pipelines.generate import generate
from pipelines.generate.archetypes import ARCHETYPES
from pipelines.ingest import ingest
from schemas.contract import load_contract
from tests.conftest import make_cfg


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    generate(out, n_patients=120, seed=3, n_deliveries=4)
    return out


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, n_patients=80, seed=11)
    generate(b, n_patients=80, seed=11)
    generate(c, n_patients=80, seed=12)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


@pytest.mark.parametrize("n_events", [5_000, 40_000])
def test_n_events_sizes_the_cohort_within_10_percent(tmp_path: Path, n_events: int) -> None:
    res = generate(tmp_path, n_events=n_events, seed=5)
    assert abs(res.n_events - n_events) <= 0.10 * n_events
    rows = sum(len(_read(f)) for f in sorted((tmp_path / "deliveries").glob("*.csv")))
    assert rows == res.n_events


def test_exactly_one_size_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path, seed=1)
    with pytest.raises(ValueError):
        generate(tmp_path, n_patients=10, n_events=1000, seed=1)


def test_final_delivery_fraction_is_honoured(tmp_path: Path) -> None:
    res = generate(tmp_path, n_events=20_000, seed=9, n_deliveries=6, final_delivery_fraction=0.01)
    rows = res.manifest["counts"]["rows_per_delivery"]
    assert len(rows) == 6
    assert abs(rows[-1] / sum(rows) - 0.01) <= 0.005
    order = _read(tmp_path / "truth" / "deliveries.csv")
    assert [int(r["delivery_seq"]) for r in order] == list(range(6))
    assert [int(r["n_rows"]) for r in order] == rows


def test_files_follow_the_contract_and_slices(cohort: Path) -> None:
    contract = load_contract()
    expected_header = [c.name for c in (*contract.envelope, *contract.columns)]
    order = _read(cohort / "truth" / "deliveries.csv")
    for r in order:
        rows = _read(cohort / r["file"])
        assert list(rows[0].keys()) == expected_header
        # clean rows lie in the delivery's slice of recorded time, except re-sent duplicates
        dup_ids = {
            n["event_id"]
            for n in _read(cohort / "truth" / "noise.csv")
            if n["kind"] == "duplicate" and n["file"] == Path(r["file"]).name
        }
        for row in rows:
            if row["event_id"] in dup_ids:
                continue
            assert r["recorded_from"] <= row["recorded_at"] <= r["recorded_to"], row
            assert "2020-01-01" <= row["recorded_at"] <= "2025-01-31"


def test_truth_tables_are_consistent(cohort: Path) -> None:
    patients = _read(cohort / "truth" / "patients.csv")
    trials = _read(cohort / "truth" / "trials.csv")
    assert len(patients) == 120
    known = {(a.condition, a.name, a.expected_status) for a in ARCHETYPES}
    assert {(p["condition"], p["archetype"], p["expected_status"]) for p in patients} <= known
    per_patient: dict[str, int] = {}
    for t in trials:
        per_patient[t["patient_id"]] = per_patient.get(t["patient_id"], 0) + 1
    assert all(per_patient[p["patient_id"]] == int(p["n_trials"]) for p in patients)


def test_noise_truth_matches_the_ingest(cohort: Path, tmp_path: Path) -> None:
    """Real ingest of every delivery: it quarantines exactly the deliberately bad rows (for the
    reasons the truth names), finds exactly the re-sent duplicates, and reconciles."""
    cfg = make_cfg(tmp_path / "wh")
    files = [cohort / r["file"] for r in _read(cohort / "truth" / "deliveries.csv")]
    res = ingest(files, cfg)
    noise = _read(cohort / "truth" / "noise.csv")
    bad = {
        n["event_id"]: n["expected_reason"] for n in noise if n["expected_outcome"] == "quarantined"
    }
    n_dup = sum(1 for n in noise if n["expected_outcome"] == "duplicate")
    assert res.gate_passed and res.reconciled
    assert res.quarantined == len(bad) > 0
    assert res.duplicates == n_dup > 0
    assert res.rows_read == sum(len(_read(f)) for f in files)
    q = duckdb.sql(
        f"SELECT event_id, reasons FROM read_parquet('{tmp_path}/wh/quarantine/*.parquet')"
    ).fetchall()
    assert {e for e, _ in q} == set(bad)
    assert all(bad[e] in reasons for e, reasons in q)
    # every correction targets an event that was delivered (and accepted)
    ids = set(
        duckdb.sql(f"SELECT event_id FROM read_parquet('{tmp_path}/wh/log/events/*/*.parquet')")
        .fetchnumpy()["event_id"]
        .tolist()
    )
    targets = [n["target_event_id"] for n in noise if n["kind"] in ("amended", "retracted")]
    assert targets and all(t in ids for t in targets)
