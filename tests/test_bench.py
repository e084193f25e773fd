"""The benchmark's outputs floor: DuckDB rewriting every table a build wrote, once each."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

from pipelines.bench import io_floor_outputs, markdown
from pipelines.build import layout
from pipelines.build.runner import read_current
from pipelines.run import run
from pipelines.warehouse import Warehouse, sql_literal
from tests.conftest import REPO, make_cfg


def test_outputs_floor_rewrites_every_table_of_a_grouped_build(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "wh", build={"patient_buckets": 3})
    res = run(
        cfg,
        inputs=[str(REPO / "data" / "sample" / "deliveries")],
        as_of=datetime(2025, 1, 31, 23, 59, 59),
    )
    assert res.exit_code == 0
    wh = Warehouse.from_config(cfg)
    build_dir = wh.builds_dir / read_current(wh)["build_id"]
    names = layout.table_names(build_dir)
    # the grouped build keeps its per-patient tables as several files: the floor reads them all
    assert any(len(layout.table_files(build_dir, n)) == 3 for n in names)
    out = tmp_path / "floor"
    out.mkdir()
    assert io_floor_outputs(build_dir, out) > 0
    assert sorted(p.stem for p in out.glob("*.parquet")) == sorted(names)
    con = duckdb.connect()
    for n in names:
        built = con.execute(
            f"SELECT count(*) FROM {layout.table_relation(build_dir, n)}"
        ).fetchone()[0]
        copied = con.execute(
            f"SELECT count(*) FROM read_parquet({sql_literal(out / f'{n}.parquet')})"
        ).fetchone()[0]
        assert copied == built, n


def test_markdown_states_the_bounds_and_marks_what_was_not_measured() -> None:
    row = {
        "events_target": 1000,
        "events_generated": 998,
        "io_floor_inputs_seconds": 0.5,
        "io_floor_log_seconds": 0.2,
        "ingest": {"seconds": 2.0, "ratio_to_floor": 4.0, "peak_rss_mb": 100.0},
        "build": {"seconds": 3.0, "ratio_to_floor": 15.0, "peak_rss_mb": 200.0},
        "run_full": {"seconds": 6.0, "ratio_to_floor": 12.0},
        "run_incremental": {"seconds": 3.0, "fraction_of_full": 0.5},
    }
    measured = dict(
        row,
        io_floor_outputs_seconds=0.8,
        io_floor_outputs_to_log_floor=4.0,
        build=dict(row["build"], ratio_to_outputs_floor=3.75),
        run_incremental=dict(row["run_incremental"], affected_fraction=0.25),
    )
    text = markdown([row, measured])
    bounds = text.split("\n\n")[1].splitlines()
    assert bounds[0].startswith("| events | build floor (log) | outputs floor |")
    assert bounds[2] == "| 998 | 0.2 s | ? s | ?x | ?x | ? | 50.0% |"
    assert bounds[3] == "| 998 | 0.2 s | 0.8 s | 4.0x | 3.75x | 25.0% | 50.0% |"


def test_bench_size_measures_every_floor_and_the_incremental_share(tmp_path: Path) -> None:
    """The whole bench on a tiny cohort: the figures the README's tables are made of."""
    from pipelines.bench import bench_size

    r = bench_size(20_000, tmp_path, seed=5)
    assert r["ingest"]["rc"] == r["build"]["rc"] == r["run_full"]["rc"] == 0
    assert r["ingest"]["reconciled"] is True
    assert len(r["io_floor_outputs_runs"]) == 3
    assert r["io_floor_outputs_seconds"] in r["io_floor_outputs_runs"]
    assert r["build"]["ratio_to_outputs_floor"] == round(
        r["build"]["seconds"] / r["io_floor_outputs_seconds"], 2
    )
    inc = r["run_incremental"]
    assert inc["rc"] == 0 and inc["build_mode"] == "incremental"
    assert inc["affected_patients"] > 0 and 0 < inc["affected_fraction"] < 1
    text = markdown([r])
    assert "?" not in text.split("\n\n")[1]
