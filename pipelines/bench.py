"""Benchmarks (`make bench`): generated cohorts at 1M and 10M events, end to end.

For each size, in a scratch directory (default bench/out/, git-ignored):
  1. generate the cohort (deliveries; the last delivery ~1% of events for the incremental run)
  2. I/O floor: DuckDB alone reads the same input files and writes them once as Parquet
     (median of FLOOR_RUNS runs, as is the build floor)
  3. `txh ingest` of all deliveries but the last (subprocess; wall time, peak RSS)
  4. `txh build` full (per-step times from the build manifest; peak RSS); and the build I/O
     floor: DuckDB reading the event-log Parquet and rewriting it once; and the outputs floor:
     DuckDB reading the tables that build wrote and rewriting each once (unsorted), the least
     a build spends writing what it must produce, whatever it computes
  5. `txh run` end to end from an empty warehouse on the same inputs (ingest + build + reports)
  6. incremental: `txh run` on the last (~1%) delivery, same as-of date
Results go to <out>/results.json and two Markdown tables printed at the end (the figures,
and what bounds the targets), copied into the README's performance section by hand, with the
date and machine.
Peak memory is the child's maximum resident set size from wait4(2) (the whole process: Python,
DuckDB, great-expectations).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from pipelines.config import REPO_ROOT
from pipelines.warehouse import sql_list, sql_literal

AS_OF = "2025-01-31T00:00:00"
FLOOR_RUNS = 3  # the I/O floors are measured this many times; ratios use the median


def run_measured(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a command; wall time and peak RSS (MB) of that child via wait4."""
    t = time.perf_counter()
    with open(env.get("BENCH_STDERR", os.devnull), "ab") as errf:
        p = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=errf)
        out = p.stdout.read() if p.stdout else b""
        _, status, ru = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t
    rc = os.waitstatus_to_exitcode(status)
    return {
        "seconds": round(secs, 2),
        "rc": rc,
        "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
        "stdout": out.decode(errors="replace"),
    }


def io_floor_inputs(files: list[Path], out: Path) -> float:
    """DuckDB alone: read the input files and write them once as Parquet."""
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    t = time.perf_counter()
    for i, f in enumerate(files):
        name = f.name.lower()
        if name.endswith(".csv"):
            src = f"read_csv({sql_literal(f)}, all_varchar=true, header=true)"
        elif name.endswith((".jsonl", ".ndjson")):
            src = f"read_json({sql_literal(f)}, format='newline_delimited')"
        else:
            src = f"read_parquet({sql_literal(f)})"
        con.execute(
            f"COPY (SELECT * FROM {src}) TO {sql_literal(out / f'floor_{i}.parquet')} (FORMAT parquet)"
        )
    secs = time.perf_counter() - t
    con.close()
    return secs


def io_floor_log(wh: Path, out: Path) -> float:
    files = sorted(wh.glob("log/events/batch=*/*.parquet"))
    con = duckdb.connect()
    t = time.perf_counter()
    con.execute(
        f"COPY (SELECT * FROM read_parquet({sql_list(files)})) TO {sql_literal(out / 'floor_log.parquet')} (FORMAT parquet)"
    )
    secs = time.perf_counter() - t
    con.close()
    return secs


def io_floor_outputs(build_dir: Path, out: Path) -> float:
    """DuckDB alone: read each table a build wrote (its files) and write it once as Parquet."""
    from pipelines.build import layout

    con = duckdb.connect()
    names = layout.table_names(build_dir)
    t = time.perf_counter()
    for name in names:
        files = layout.table_files(build_dir, name)
        con.execute(
            f"COPY (SELECT * FROM read_parquet({sql_list(files)})) "
            f"TO {sql_literal(out / f'{name}.parquet')} (FORMAT parquet, COMPRESSION zstd)"
        )
    secs = time.perf_counter() - t
    con.close()
    return secs


def _patients(build_dir: Path) -> int:
    """Patients with visible events in a build (events_current, whatever its layout)."""
    from pipelines.build import layout

    with duckdb.connect() as con:
        rel = layout.table_relation(build_dir, "events_current")
        return con.execute(f"SELECT count(DISTINCT patient_id) FROM {rel}").fetchone()[0]


def _repeat(measure: Callable[[], float], out: Path, times: int = FLOOR_RUNS) -> list[float]:
    """Seconds of ``times`` runs of a floor measurement writing into ``out`` (emptied each time).
    The floors are cheap and the machine's speed varies by ~10 % between minutes, so the ratios
    use the median of several runs."""
    runs = []
    for _ in range(times):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        runs.append(round(measure(), 2))
    shutil.rmtree(out, ignore_errors=True)
    return runs


def bench_size(n_events: int, root: Path, seed: int) -> dict[str, Any]:
    from pipelines.generate import generate

    d = root / f"n{n_events}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    res: dict[str, Any] = {"events_target": n_events}
    t = time.perf_counter()
    gen = generate(d / "cohort", n_events=n_events, seed=seed, final_delivery_fraction=0.01)
    res["generate_seconds"] = round(time.perf_counter() - t, 2)
    res["events_generated"] = getattr(gen, "n_events", None)
    order = _delivery_order(d / "cohort")
    first, last = order[:-1], order[-1:]
    res["input_bytes"] = sum(f.stat().st_size for f in order)

    floor_dir = d / "floor"
    runs = _repeat(lambda: io_floor_inputs(first, floor_dir), floor_dir)
    res["io_floor_inputs_seconds"] = statistics.median(runs)
    res["io_floor_inputs_runs"] = runs

    env = dict(
        os.environ,
        GX_ANALYTICS_ENABLED="false",
        TXH_WAREHOUSE=str(d / "wh"),
        BENCH_STDERR=str(d / "stderr.log"),
    )
    txh = [sys.executable, "-m", "pipelines.cli", "--json-logs"]
    ing = run_measured([*txh, "ingest", "--json", *map(str, first)], env)
    res["ingest"] = {k: v for k, v in ing.items() if k != "stdout"}
    try:
        summary = json.loads(ing["stdout"])
        res["ingest"].update(
            {
                k: summary[k]
                for k in ("rows_read", "accepted", "quarantined", "duplicates", "reconciled")
            }
        )
        res["ingest"]["stage_seconds"] = summary.get("timings_s")
    except (json.JSONDecodeError, KeyError):
        pass
    res["ingest"]["ratio_to_floor"] = round(ing["seconds"] / res["io_floor_inputs_seconds"], 2)

    bld = run_measured([*txh, "build", "--json", "--full", "--as-of", AS_OF], env)
    res["build"] = {k: v for k, v in bld.items() if k != "stdout"}
    bs: dict[str, Any] | None = None
    try:
        bs = json.loads(bld["stdout"])
        res["build"]["steps"] = {s["name"]: s["seconds"] for s in bs["steps"]}
        # sorting and writing each table to Parquet, apart from computing it
        res["build"]["write_seconds"] = round(
            sum(s.get("write_seconds") or 0 for s in bs["steps"]), 2
        )
        by_layer: dict[str, float] = {}
        for s in bs["steps"]:
            by_layer[s.get("layer") or "?"] = by_layer.get(s.get("layer") or "?", 0) + s["seconds"]
        res["build"]["seconds_by_layer"] = {k: round(v, 2) for k, v in sorted(by_layer.items())}
        timelines = by_layer.get("staging", 0) + by_layer.get("intermediate", 0)
        if timelines:
            # issue 4: derivation (marts) within 2x the timeline build
            res["build"]["derivation_to_timelines"] = round(by_layer.get("marts", 0) / timelines, 2)
    except (json.JSONDecodeError, KeyError):
        pass
    runs = _repeat(lambda: io_floor_log(d / "wh", floor_dir), floor_dir)
    res["io_floor_log_seconds"] = statistics.median(runs)
    res["io_floor_log_runs"] = runs
    res["build"]["ratio_to_floor"] = round(bld["seconds"] / res["io_floor_log_seconds"], 2)
    try:
        if bs is None:
            raise ValueError("the build printed no summary")
        build_dir = Path(bs["output_dir"])
        runs = _repeat(lambda: io_floor_outputs(build_dir, floor_dir), floor_dir)
        res["io_floor_outputs_seconds"] = statistics.median(runs)
        res["io_floor_outputs_runs"] = runs
        res["build"]["ratio_to_outputs_floor"] = round(
            bld["seconds"] / res["io_floor_outputs_seconds"], 2
        )
        res["io_floor_outputs_to_log_floor"] = round(
            res["io_floor_outputs_seconds"] / res["io_floor_log_seconds"], 2
        )
    except (KeyError, TypeError, ValueError, ZeroDivisionError, duckdb.Error) as e:
        # the outputs floor is an extra: without it the bench still reports the rest
        print(f"outputs floor not measured: {type(e).__name__}: {e}", file=sys.stderr)

    # end to end from an empty warehouse, then the incremental run on the last delivery
    env_run = dict(env, TXH_WAREHOUSE=str(d / "wh_run"))
    e2e = run_measured([*txh, "run", "--json", "--as-of", AS_OF, *map(str, first)], env_run)
    res["run_full"] = {k: v for k, v in e2e.items() if k != "stdout"}
    res["run_full"]["ratio_to_floor"] = round(e2e["seconds"] / res["io_floor_inputs_seconds"], 2)
    res["run_full"]["stage_seconds"] = _run_stages(e2e["seconds"], _record(e2e))
    inc = run_measured([*txh, "run", "--json", "--as-of", AS_OF, *map(str, last)], env_run)
    res["run_incremental"] = {k: v for k, v in inc.items() if k != "stdout"}
    rec = _record(inc)
    res["run_incremental"]["stage_seconds"] = _run_stages(inc["seconds"], rec)
    try:
        res["run_incremental"]["build_mode"] = rec["build"]["mode"]
        res["run_incremental"]["affected_patients"] = rec["build"]["affected_patients"]
        res["run_incremental"]["rows_read"] = rec["ingest"]["rows_read"]
        # an incremental build recomputes its patients from their whole history: the share of
        # patients it touches bounds what it can save against a full build
        res["run_incremental"]["affected_fraction"] = round(
            rec["build"]["affected_patients"] / _patients(Path(rec["build"]["output_dir"])), 3
        )
    except (KeyError, TypeError, ZeroDivisionError, duckdb.Error):
        pass
    res["run_incremental"]["fraction_of_full"] = round(inc["seconds"] / e2e["seconds"], 3)
    return res


def _record(measured: dict[str, Any]) -> dict[str, Any] | None:
    """The run record a `txh run --json` printed (None if it printed none)."""
    try:
        return json.loads(measured["stdout"])
    except (json.JSONDecodeError, KeyError):
        return None


def _run_stages(seconds: float, rec: dict[str, Any] | None) -> dict[str, float] | None:
    """Where a `txh run` spent its time, from its record: ingest, build, and the rest (reports,
    start-up, run record) as measured from outside."""
    if rec is None:
        return None
    try:
        ingest_s = float(rec["ingest"]["seconds"])
        build_s = float(rec["build"]["seconds"]) if rec.get("build") else 0.0
    except (KeyError, TypeError, ValueError):
        return None
    return {
        "ingest": round(ingest_s, 2),
        "build": round(build_s, 2),
        "other": round(seconds - ingest_s - build_s, 2),
    }


def _delivery_order(cohort: Path) -> list[Path]:
    """Delivery files in the order they were delivered (from the generator's truth folder)."""
    idx = cohort / "truth" / "deliveries.csv"
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT file FROM read_csv({sql_literal(idx)}) ORDER BY delivery_seq"
    ).fetchall()
    return [cohort / "deliveries" / Path(r[0]).name for r in rows]


def _events(r: dict[str, Any]) -> int:
    """The events a size generated (the target if the generator did not say)."""
    return r.get("events_generated") or r["events_target"]


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| events | I/O floor (inputs) | ingest | ratio | ingest peak RSS | build (full) | "
        "build floor | ratio | build peak RSS | derivation/timelines | run e2e | run/floor | "
        "incremental run (1%) | inc/full |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {_events(r):,} | {r['io_floor_inputs_seconds']} s | "
            f"{r['ingest']['seconds']} s | {r['ingest']['ratio_to_floor']}x | "
            f"{r['ingest']['peak_rss_mb']} MB | {r['build']['seconds']} s | "
            f"{r['io_floor_log_seconds']} s | {r['build']['ratio_to_floor']}x | "
            f"{r['build']['peak_rss_mb']} MB | {r['build'].get('derivation_to_timelines', '?')}x | "
            f"{r['run_full']['seconds']} s | {r['run_full']['ratio_to_floor']}x | "
            f"{r['run_incremental']['seconds']} s | "
            f"{r['run_incremental']['fraction_of_full']:.1%} |"
        )
    # what bounds the targets: writing the tables a build must produce, and the share of the
    # patients an incremental run recomputes from their whole history
    lines += [
        "",
        "| events | build floor (log) | outputs floor | outputs/build floor | build/outputs floor | "
        "patients recomputed (1%) | inc/full |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        aff = r["run_incremental"].get("affected_fraction")
        lines.append(
            f"| {_events(r):,} | "
            f"{r['io_floor_log_seconds']} s | {r.get('io_floor_outputs_seconds', '?')} s | "
            f"{r.get('io_floor_outputs_to_log_floor', '?')}x | "
            f"{r['build'].get('ratio_to_outputs_floor', '?')}x | "
            f"{'?' if aff is None else f'{aff:.1%}'} | "
            f"{r['run_incremental']['fraction_of_full']:.1%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--out", default=str(REPO_ROOT / "bench" / "out"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep generated data and warehouses")
    args = ap.parse_args(argv)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for n in [int(x) for x in args.sizes.split(",")]:
        print(f"== {n:,} events", flush=True)
        r = bench_size(n, root, args.seed)
        results.append(r)
        print(json.dumps(r, indent=1), flush=True)
        (root / "results.json").write_text(json.dumps(results, indent=1))
        if not args.keep:
            shutil.rmtree(root / f"n{n}", ignore_errors=True)
    print(markdown(results))


if __name__ == "__main__":
    main()
