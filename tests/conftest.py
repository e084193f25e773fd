"""Shared fixtures: a throw-away warehouse per test and small input writers."""

from __future__ import annotations

import csv
import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
EXTERNAL = REPO.parent / "shared" / "external"
FIXED_TIME = datetime(2025, 1, 15, 12, 0, 0)


def make_cfg(warehouse: Path, *, gx: bool = False, **sections: dict[str, Any]) -> Config:
    cfg = load_config(warehouse=str(warehouse))
    cfg = dataclasses.replace(cfg, quality=dataclasses.replace(cfg.quality, gx_validation=gx))
    for name, values in sections.items():
        cfg = dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **values)})
    return cfg


@pytest.fixture
def wh_dir(tmp_path: Path) -> Path:
    return tmp_path / "wh"


@pytest.fixture
def cfg(wh_dir: Path) -> Config:
    return make_cfg(wh_dir)


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Path:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def dispensing(i: int, patient: str = "P1", **kw: Any) -> dict[str, Any]:
    row = {
        "event_id": f"d{i}",
        "patient_id": patient,
        "event_type": "dispensed",
        "occurred_at": f"2024-01-{(i % 28) + 1:02d}",
        "recorded_at": "2024-03-01T00:00:00Z",
        "source": "pharmacy",
        "drug": "levetiracetam",
        "days_supply": 30,
        "dose": 1000,
        "dose_unit": "mg",
        "condition": "epilepsy",
    }
    row.update(kw)
    return row
