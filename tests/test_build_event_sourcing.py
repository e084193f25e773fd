"""Event-sourcing guarantees of the build, on generated data with many batches:

- an incremental build (only new batches, only affected patients recomputed) equals a rebuild
  from scratch: row for row with delta parts, byte for byte once compacted;
- `--as-of` reproduces exactly what a build at that moment produced, after more data and
  corrections arrived;
- the same log gives byte-identical Parquet;
- a crash at any point of a build or publish leaves the previous published outputs intact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.build import layout, reference
from pipelines.build.models import load_models
from pipelines.build.publish import prune_builds
from pipelines.build.runner import build, files_by_version, read_current
from pipelines.ingest import ingest
from pipelines.report.source import open_build, published_build
from pipelines.warehouse import Warehouse, sql_list
from tests.conftest import REPO, make_cfg
from tests.event_factory import random_batches

AS_OF = datetime(2025, 6, 30, 12, 0, 0)


def digests(build_dir: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(build_dir.glob("*.parquet"))
    }


def cfg_root(cfg) -> Path:
    return Warehouse.from_config(cfg).root


def ingest_all(cfg, files: list[Path], t0: datetime) -> None:
    for i, f in enumerate(files):
        r = ingest([f], cfg, ingest_time=t0 + timedelta(hours=i))
        assert r.reconciled


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return random_batches(tmp_path_factory.mktemp("gen"), n_patients=60, n_batches=8, seed=11)


def _build_after_every_batch(cfg, batches: list[Path]) -> list[dict]:
    """Ingest and build after every batch (incremental after the first): the manifests."""
    t0 = datetime(2025, 1, 1)
    manifests = []
    for i, f in enumerate(batches):
        ingest([f], cfg, ingest_time=t0 + timedelta(hours=i))
        res = build(cfg, as_of=AS_OF)
        manifests.append(json.loads((res.output_dir / "build.json").read_text()))
    modes = [m["mode"] for m in manifests]
    assert modes[0] == "full" and set(modes[1:]) <= {"incremental"}, modes
    return manifests


def test_incremental_compacted_equals_full_rebuild_byte_for_byte(
    tmp_path: Path, batches: list[Path]
) -> None:
    # every build after the first incremental, however many patients a batch touches, and
    # every incremental build rewrites its tables whole (no delta parts)
    inc = make_cfg(
        tmp_path / "inc",
        quality={"mostly": 0.0},
        build={"incremental_max_affected_fraction": 1.0, "max_delta_parts": 0},
    )
    full = make_cfg(tmp_path / "full", quality={"mostly": 0.0})
    manifests = _build_after_every_batch(inc, batches)
    assert all(m.get("compacted") and "deltas" not in m for m in manifests[1:])
    ingest_all(full, batches, datetime(2025, 1, 1))
    res_full = build(full, as_of=AS_OF, full=True)
    inc_dir = Warehouse(tmp_path / "inc").builds_dir / manifests[-1]["build_id"]
    assert digests(inc_dir) == digests(res_full.output_dir)
    assert len(digests(inc_dir)) >= 1


def _rows(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple]:
    return con.execute(f"SELECT * FROM {relation} ORDER BY ALL").fetchall()


@pytest.mark.parametrize("group_events", [None, 100], ids=["one_pass", "patient_groups"])
def test_incremental_delta_parts_equal_full_rebuild(
    tmp_path: Path, batches: list[Path], group_events: int | None
) -> None:
    """Incremental builds add delta parts (only the recomputed patients' rows, beside hard links
    of the previous parts) and compact past build.max_delta_parts, byte-identical to a full
    rebuild; what readers see of a build with delta parts (the published views, the reports'
    build views, the status snapshot) equals a full rebuild, also once older builds are pruned.
    With build.patient_bucket_events small, the builds recompute their patients in groups."""
    settings = {"incremental_max_affected_fraction": 1.0, "max_delta_parts": 4, "keep_builds": 99}
    if group_events:
        settings["patient_bucket_events"] = group_events
    inc = make_cfg(tmp_path / "inc", quality={"mostly": 0.0}, build=settings)
    manifests = _build_after_every_batch(inc, batches)
    groups = [m.get("patient_buckets", 1) for m in manifests]
    if group_events:  # deltas and the compaction (6th) recomputed in groups
        assert groups[0] > 1 and groups[1] > 1 and groups[5] > 1, groups
    else:
        assert groups == [1] * len(manifests)
    n_parts = [  # delta parts (a grouped build's delta is one file per group)
        max((len(layout.delta_builds(m, t)) for t in m.get("deltas", {})), default=0)
        for m in manifests
    ]
    assert n_parts == [0, 1, 2, 3, 4, 0, 1, 2]  # the 6th build compacts
    assert manifests[5]["compacted"] and not any(m.get("compacted") for m in manifests[1:5])
    builds = Warehouse(tmp_path / "inc").builds_dir
    t0 = datetime(2025, 1, 1)
    # the compaction after four delta parts is byte-identical to a full rebuild of its log with
    # the same settings (with small groups: the same files per group of the whole log's
    # patients, not the recomputed patients' groups)
    full6 = make_cfg(tmp_path / "full6", quality={"mostly": 0.0}, build=settings)
    ingest_all(full6, batches[:6], t0)
    full6_dir = build(full6, as_of=AS_OF, full=True).output_dir
    assert digests(builds / manifests[5]["build_id"]) == digests(full6_dir)
    full6_tables = json.loads((full6_dir / "build.json").read_text())["tables"]
    assert manifests[5]["tables"] == full6_tables
    if group_events:
        assert isinstance(full6_tables["exposures"], list) and len(full6_tables["exposures"]) > 1
    last, before = manifests[-1], manifests[-2]
    inc_dir = builds / last["build_id"]
    for name in before["deltas"]:  # the previous parts are the same files
        for f in layout.table_files(builds / before["build_id"], name, before):
            a, b = f.stat(), (inc_dir / f.name).stat()
            assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev), f
    # each patient's latest part: its delta holds only the patients the build recomputed
    con = duckdb.connect()
    rec = dict(con.execute(f"SELECT * FROM '{inc_dir / 'recomputed_patients.parquet'}'").fetchall())
    assert set(rec.values()) == {int(m["build_id"]) for m in manifests[-2:]}
    latest = {p for p, b in rec.items() if b == int(last["build_id"])}
    seen = set()
    for name, parts in last["deltas"].items():
        mine = [inc_dir / f for f in parts if layout.delta_build_id(f) == int(last["build_id"])]
        if group_events:  # one delta file per group of the recomputed patients
            assert len(mine) == last["patient_buckets"] > 1, name
        pats = con.execute(f"SELECT DISTINCT patient_id FROM read_parquet({sql_list(mine)})")
        pats = {p for (p,) in pats.fetchall()}
        assert pats <= latest, name
        seen |= pats
    assert seen == latest
    prune_builds(Warehouse(tmp_path / "inc"), 1, keep={last["build_id"]})
    assert [p.name for p in builds.iterdir()] == [last["build_id"]]
    full = make_cfg(tmp_path / "full", quality={"mostly": 0.0})
    ingest_all(full, batches, t0)
    res_full = build(full, as_of=AS_OF, full=True)
    # the cohort tables' steps record their inputs whole (every patient's latest rows), as a
    # full rebuild does, not just the recomputed patients' delta
    cohort = {m.name for m in load_models() if not m.per_patient}
    full_steps = {s.name: s.inputs for s in res_full.steps if s.name in cohort}
    inc_steps = {s["name"]: s["inputs"] for s in last["steps"] if s["name"] in cohort}
    assert inc_steps == full_steps and any(inc_steps.values())
    published = duckdb.connect(str(Warehouse(tmp_path / "inc").duckdb_path), read_only=True)
    reports = open_build(inc, published_build(Warehouse(tmp_path / "inc")))
    try:
        for name in last["tables"]:
            want = _rows(con, f"read_parquet('{res_full.output_dir / (name + '.parquet')}')")
            assert _rows(published, name) == want, name
            assert _rows(reports, name) == want, name
        snap = Warehouse(tmp_path / "inc").root / "status_history" / "refractory_status"
        snap_full = Warehouse(tmp_path / "full").root / "status_history" / "refractory_status"
        (a,), (b,) = list(snap.glob("*.parquet")), list(snap_full.glob("*.parquet"))
        assert _rows(con, f"read_parquet('{a}')") == _rows(con, f"read_parquet('{b}')")
    finally:
        published.close()
        reports.close()


def test_a_build_of_another_layout_is_rebuilt_in_full(tmp_path: Path, batches: list[Path]) -> None:
    """The version before delta parts reads only <table>.parquet: builds record their layout
    in the fingerprint, so neither version extends the other's build incrementally."""
    cfg = make_cfg(tmp_path / "wh", quality={"mostly": 0.0})
    ingest_all(cfg, batches[:2], datetime(2025, 1, 1))
    first = build(cfg, as_of=AS_OF)
    manifest = json.loads((first.output_dir / "build.json").read_text())
    del manifest["fingerprint"]["layout"]  # as the previous version wrote it
    (first.output_dir / "build.json").write_text(json.dumps(manifest))
    ingest([batches[2]], cfg, ingest_time=datetime(2025, 1, 2))
    res = build(cfg, as_of=AS_OF)
    assert res.mode == "full" and "layout" in res.reason


def test_same_reference_data_elsewhere_keeps_builds_incremental(
    tmp_path: Path, batches: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fingerprint hashes reference files by content and location-free name: the same
    drug reference in another directory (a new release directory, another checkout) keeps the
    next build incremental; a changed one rebuilds in full."""
    bundled = REPO / "schemas" / "reference" / "drugs.yaml"
    a, b, c = (tmp_path / d / "drugs.yaml" for d in ("a", "b", "c"))
    for p in (a, b, c):
        p.parent.mkdir()
        p.write_bytes(bundled.read_bytes())
    c.write_text(c.read_text() + "\n# edited\n")
    t0 = datetime(2025, 1, 1)
    ingest([batches[0]], make_cfg(tmp_path / "wh", quality={"mostly": 0.0}), ingest_time=t0)
    for i, (ref, mode) in enumerate(((a, "full"), (b, "incremental"), (c, "full")), start=1):
        cfg = make_cfg(
            tmp_path / "wh",
            quality={"mostly": 0.0},
            build={"drug_reference": str(ref), "incremental_max_affected_fraction": 1.0},
        )
        res = build(cfg, as_of=AS_OF)
        assert res.mode == mode, res.reason
        ingest([batches[i]], cfg, ingest_time=t0 + timedelta(hours=i))
    assert "reference" in res.reason
    # a bundled file is named by its path in the repository: a moved checkout hashes the same
    moved = tmp_path / "checkout"
    (moved / "schemas" / "reference").mkdir(parents=True)
    copy = moved / "schemas" / "reference" / "drugs.yaml"
    copy.write_bytes(bundled.read_bytes())
    here = reference.reference_hash([bundled])
    monkeypatch.setattr(reference, "REPO_ROOT", moved)
    assert reference.reference_hash([copy]) == here
    assert reference.reference_hash([a]) != here  # outside the repository: by file name only


def test_many_affected_patients_rebuild_in_full(tmp_path: Path, batches: list[Path]) -> None:
    """Past build.incremental_max_affected_fraction of the patients, a full rebuild is cheaper
    than recomputing them and merging: the build says so and the result is the full one."""
    t0 = datetime(2025, 1, 1)
    strict = make_cfg(
        tmp_path / "wh",
        quality={"mostly": 0.0},
        build={"incremental_max_affected_fraction": 0.0},
    )
    ingest([batches[0]], strict, ingest_time=t0)
    assert build(strict, as_of=AS_OF).mode == "full"
    ingest([batches[1]], strict, ingest_time=t0 + timedelta(hours=1))
    res = build(strict, as_of=AS_OF)
    assert res.mode == "full"
    assert "incremental_max_affected_fraction" in res.reason
    assert res.affected_patients is None
    lenient = make_cfg(
        tmp_path / "wh",
        quality={"mostly": 0.0},
        build={"incremental_max_affected_fraction": 1.0},
    )
    ingest([batches[2]], lenient, ingest_time=t0 + timedelta(hours=2))
    again = build(lenient, as_of=AS_OF)
    assert again.mode == "incremental" and again.affected_patients


def test_as_of_reproduces_an_earlier_build(tmp_path: Path, batches: list[Path]) -> None:
    cfg = make_cfg(tmp_path / "wh", quality={"mostly": 0.0})
    t0 = datetime(2025, 1, 1)
    half = len(batches) // 2
    ingest_all(cfg, batches[:half], t0)
    first_moment = datetime(2025, 1, 1) + timedelta(
        days=half - 1, hours=23
    )  # after delivery half-1
    before = build(cfg, as_of=first_moment, full=True)
    snapshot = digests(before.output_dir)
    # more data arrives, including corrections of events the first build saw
    for i, f in enumerate(batches[half:]):
        ingest([f], cfg, ingest_time=t0 + timedelta(days=30, hours=i))
    later = build(cfg, as_of=t0 + timedelta(days=60), full=True)
    assert digests(later.output_dir) != snapshot
    again = build(cfg, as_of=first_moment, full=True)
    assert digests(again.output_dir) == snapshot


def test_until_batch_reproduces_a_build_despite_backfilled_records(
    tmp_path: Path, batches: list[Path]
) -> None:
    """A backfill: later files carry records the source knew before T. As of T (recorded
    basis) they now count; restricting the log to the batches the old build saw reproduces it."""
    cfg = make_cfg(tmp_path / "wh", quality={"mostly": 0.0})
    ingest_all(cfg, batches[:3], datetime(2025, 1, 1))
    as_of = datetime(2025, 3, 1)
    before = build(cfg, as_of=as_of, full=True)
    ingest_all(cfg, batches[3:], datetime(2025, 2, 1))  # recorded Jan 2025: before as_of
    assert digests(build(cfg, as_of=as_of, full=True).output_dir) != digests(before.output_dir)
    current = read_current(Warehouse.from_config(cfg))["build_id"]
    history = layout.snapshot_files(cfg_root(cfg), "refractory_status")
    again = build(cfg, as_of=as_of, full=True, until_batch=3)
    assert digests(again.output_dir) == digests(before.output_dir)
    # a reproduction is not published: the warehouse and the status history stay as they were
    assert read_current(Warehouse.from_config(cfg))["build_id"] == current
    assert layout.snapshot_files(cfg_root(cfg), "refractory_status") == history
    assert not again.published and again.build_id != current
    published = build(cfg, as_of=as_of, full=True, until_batch=3, publish=True)
    assert published.published
    assert read_current(Warehouse.from_config(cfg))["build_id"] == published.build_id


def test_unpublished_builds_do_not_push_published_builds_out(
    tmp_path: Path, batches: list[Path]
) -> None:
    """build.keep_builds counts builds made to be published: a reproduction (--until-batch)
    does not take the place of a published build that readers of an older warehouse file may
    still use; it goes once older than the oldest kept published build."""
    cfg = make_cfg(tmp_path / "wh", quality={"mostly": 0.0}, build={"keep_builds": 2})
    ingest_all(cfg, batches[:3], datetime(2025, 1, 1))
    wh = Warehouse.from_config(cfg)

    def on_disk() -> list[str]:
        return sorted(p.name for p in wh.builds_dir.iterdir() if p.name[:6].isdigit())

    b1 = build(cfg, as_of=AS_OF, full=True).build_id
    b2 = build(cfg, as_of=AS_OF + timedelta(days=1), full=True).build_id
    b3 = build(cfg, as_of=AS_OF, until_batch=2)
    assert not b3.published
    b4 = build(cfg, as_of=AS_OF + timedelta(days=2), full=True).build_id
    assert on_disk() == [b2, b3.build_id, b4]
    b5 = build(cfg, as_of=AS_OF + timedelta(days=3), full=True).build_id
    assert on_disk() == [b4, b5] and b1 not in on_disk()


def test_same_log_gives_identical_parquet(tmp_path: Path, batches: list[Path]) -> None:
    a = make_cfg(tmp_path / "a", quality={"mostly": 0.0})
    b = make_cfg(tmp_path / "b", quality={"mostly": 0.0}, engine={"threads": 1})
    t0 = datetime(2025, 1, 1)
    ingest_all(a, batches, t0)
    ingest_all(b, batches, t0)
    da, db = build(a, as_of=AS_OF, full=True), build(b, as_of=AS_OF, full=True)
    assert digests(da.output_dir) == digests(db.output_dir)
    # the log itself is byte-identical too (same inputs, same ingest times)
    la = sorted((tmp_path / "a" / "log" / "events").rglob("*.parquet"))
    lb = sorted((tmp_path / "b" / "log" / "events").rglob("*.parquet"))
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in la] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in lb
    ]


@pytest.mark.parametrize(
    "point",
    [
        "build.before_rename",
        "build.after_snapshots",
        "publish.before_duckdb_replace",
        "publish.before_pointer",
    ],
)
def test_crash_during_build_keeps_the_published_outputs(
    tmp_path: Path, batches: list[Path], point: str
) -> None:
    wh = tmp_path / "wh"
    cfg = make_cfg(wh, quality={"mostly": 0.0})
    ingest_all(cfg, batches[:4], datetime(2025, 1, 1))
    first = build(cfg, as_of=AS_OF, full=True)
    published = read_current(Warehouse(wh))
    history = "SELECT * FROM refractory_status_history ORDER BY ALL"
    con = duckdb.connect(str(Warehouse(wh).duckdb_path), read_only=True)
    tables = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    history_before = con.execute(history).fetchall()
    con.close()
    ingest_all(cfg, batches[4:], datetime(2025, 2, 1))
    env = dict(
        os.environ, TXH_WAREHOUSE=str(wh), TXH_FAULT_AT=point, TXH_CONFIG=str(_write_cfg(tmp_path))
    )
    cmd = [sys.executable, "-m", "pipelines.cli", "build", "--as-of", AS_OF.isoformat(), "--full"]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True)
    assert p.returncode == 99, p.stderr.decode()[-1500:]
    assert read_current(Warehouse(wh))["build_id"] in (
        published["build_id"],
        str(int(published["build_id"]) + 1).zfill(6),
    )
    # the DuckDB file opens and every view still reads its (complete) Parquet
    con = duckdb.connect(str(Warehouse(wh).duckdb_path), read_only=True)
    for (name,) in tables:
        con.execute(f"SELECT count(*) FROM {name}").fetchall()
    if point != "publish.before_pointer":  # there the new DuckDB file is already in place
        # the status history of the same as-of date still reads the published build's rows
        assert con.execute(history).fetchall() == history_before
    con.close()
    assert digests(first.output_dir)  # the previous build's files are still there
    if point == "build.after_snapshots":
        # the build that completes shows the new batches' statuses (so the check above could
        # fail), and after pruning its snapshot is the date's only one
        env.pop("TXH_FAULT_AT")
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True)
        assert p.returncode == 0, p.stderr.decode()[-1500:]
        con = duckdb.connect(str(Warehouse(wh).duckdb_path), read_only=True)
        assert con.execute(history).fetchall() != history_before
        con.close()
        prune_builds(Warehouse(wh), 1, keep=set())
        snaps = sorted((wh / "status_history" / "refractory_status").glob("*.parquet"))
        assert [s.name for s in snaps] == [
            f"as_of_date={AS_OF.date().isoformat()}.build={read_current(Warehouse(wh))['build_id']}.parquet"
        ]


def test_status_snapshots_are_chosen_by_build_and_pruned_when_no_kept_build_lists_them(
    tmp_path: Path,
) -> None:
    d = tmp_path / "status_history" / "t"
    d.mkdir(parents=True)
    names = [
        "as_of_date=2025-01-01.parquet",  # written before snapshots named their build
        "as_of_date=2025-01-01.build=000002.parquet",
        "as_of_date=2025-01-01.build=000004.parquet",
        "as_of_date=2025-01-02.build=000003.parquet",
    ]
    for n in names + [".tmp-as_of_date=2025-01-02.build=000005.parquet"]:  # a killed save's
        (d / n).write_bytes(b"")

    def listed(build_id: str) -> list[str]:
        return [p.name for p in layout.published_snapshots(tmp_path, "t", build_id)]

    assert listed("000001") == [names[0]]
    assert listed("000003") == [names[1], names[3]]
    assert listed("000009") == [names[2], names[3]]
    layout.prune_snapshots(tmp_path, "000003")  # builds 3.. kept: build 3's view lists 2's
    assert sorted(p.name for p in d.iterdir()) == sorted(names[1:])
    layout.prune_snapshots(tmp_path, "000004")
    assert sorted(p.name for p in d.iterdir()) == sorted(names[2:])


def _write_cfg(tmp_path: Path) -> Path:
    p = tmp_path / "cfg.yaml"
    base = os.environ.get("TXH_CONFIG")
    text = Path(base).read_text() if base else ""
    p.write_text(text + "\nquality: {mostly: 0.0}\n")
    return p


def test_build_records_attrition_and_parameters(tmp_path: Path, batches: list[Path]) -> None:
    cfg = make_cfg(tmp_path / "wh", quality={"mostly": 0.0})
    ingest_all(cfg, batches[:3], datetime(2025, 1, 1))
    res = build(cfg, as_of=AS_OF)
    manifest = json.loads((res.output_dir / "build.json").read_text())
    assert manifest["parameters"]["persistence_window_days"] == 30
    steps = {s["name"]: s for s in manifest["steps"]}
    ec = steps["events_current"]
    assert ec["inputs"]["log_events"]["rows"] >= ec["rows"]
    assert any("retraction" in a["reason"] for a in ec["attrition"])
    changed = dataclasses.replace(
        cfg, params=dataclasses.replace(cfg.params, persistence_window_days=60)
    )
    res2 = build(changed, as_of=AS_OF)
    assert res2.mode == "full" and "params" in res2.reason


def test_skip_models_drops_dependents_and_keeps_the_refractory_tables(
    tmp_path: Path, batches: list[Path]
) -> None:
    full = make_cfg(tmp_path / "all", quality={"mostly": 0.0})
    lean = make_cfg(
        tmp_path / "lean", quality={"mostly": 0.0}, build={"skip_models": ["adherence_cma_events"]}
    )
    t0 = datetime(2025, 1, 1)
    ingest_all(full, batches, t0)
    ingest_all(lean, batches, t0)
    a = digests(build(full, as_of=AS_OF, full=True).output_dir)
    b = digests(build(lean, as_of=AS_OF, full=True).output_dir)
    dropped = set(a) - set(b)
    assert {
        "adherence_cma_events.parquet",
        "adherence_cma_windows.parquet",
        "adherence_cma.parquet",
        "adherence_sliding_windows.parquet",
    } <= dropped
    assert "adherence_trial.parquet" in b
    for name in ("trial_outcomes.parquet", "refractory_status.parquet", "treatment_trials.parquet"):
        assert a[name] == b[name], name


def test_skip_models_rejects_an_unknown_table(tmp_path: Path) -> None:
    from pipelines.config import ConfigError

    cfg = make_cfg(tmp_path / "wh", build={"skip_models": ["no_such_table"]})
    with pytest.raises(ConfigError, match="no_such_table"):
        build(cfg, as_of=AS_OF, full=True)


def test_status_snapshot_is_on_disk_before_it_is_named(
    tmp_path: Path, batches: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot is what the next build compares with (status_changes): like every published
    file it is synced to disk under its temporary name before the rename makes it visible, so a
    power cut cannot leave a named but empty snapshot."""
    from pipelines.build import runner

    cfg = make_cfg(tmp_path / "wh", quality={"mostly": 0.0})
    ingest_all(cfg, batches[:1], datetime(2025, 1, 1))
    synced: list[str] = []
    named: list[tuple[str, str, bool]] = []
    real_replace = os.replace

    def replace(src, dst) -> None:
        named.append((Path(src).name, Path(dst).name, Path(src).name in synced))
        real_replace(src, dst)

    monkeypatch.setattr(runner, "fsync_file", lambda p: synced.append(Path(p).name))
    monkeypatch.setattr(runner.os, "replace", replace)
    build(cfg, as_of=AS_OF, full=True)
    snapshots = [n for n in named if n[1].startswith("as_of_date=")]
    assert snapshots, "the build saved no status snapshot"
    assert all(was_synced for _, _, was_synced in snapshots), snapshots


def test_full_build_in_patient_buckets_equals_one_group(
    tmp_path: Path, batches: list[Path]
) -> None:
    """build.patient_buckets computes a full build's per-patient tables for one group of patients
    at a time (for cohorts that outgrow memory): every table holds the same rows in the same
    order as a build of all patients at once, the steps record the same counts and attrition,
    and status_changes compares with the same earlier snapshot."""
    t0 = datetime(2025, 1, 1)
    results = {}
    for name, buckets in (("one", 1), ("four", 4), ("auto", "auto")):
        # auto: one group per 700 visible events (about 2,000 here)
        groups = {"patient_buckets": buckets, "patient_bucket_events": 700}
        cfg = make_cfg(tmp_path / name, quality={"mostly": 0.0}, build=groups)
        ingest_all(cfg, batches[:5], t0)
        build(cfg, as_of=AS_OF - timedelta(days=30), full=True)  # the snapshot compared with
        ingest_all(cfg, batches[5:], t0 + timedelta(days=1))
        results[name] = build(cfg, as_of=AS_OF, full=True)
    one, four, auto = results["one"], results["four"], results["auto"]
    tables = layout.table_names(one.output_dir)
    per_patient = {m.name for m in load_models() if m.per_patient}
    con = duckdb.connect()
    for res in (four, auto):
        m = layout.read_manifest(res.output_dir)
        assert layout.table_names(res.output_dir) == tables
        for name in tables:  # a per-patient table: one file per group, in group order
            files = layout.table_files(res.output_dir, name, m)
            want = m["patient_buckets"] if name in per_patient else 1
            assert len(files) == want, name
            if len(files) > 1:  # contiguous ranges of patient ids
                ranges = [
                    con.execute(f"SELECT min(patient_id), max(patient_id) FROM '{f}'").fetchone()
                    for f in files
                ]
                ranges = [r for r in ranges if r[0] is not None]
                assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False)), name
        assert sorted(p.name for p in res.output_dir.glob("*.parquet")) == sorted(
            f.name for n in tables for f in layout.table_files(res.output_dir, n, m)
        )
    for name in tables:  # the same rows in the same order (files read in group order)
        rows = [
            con.execute(f"SELECT * FROM {layout.table_relation(d, name)}").fetchall()
            for d in (one.output_dir, four.output_dir, auto.output_dir)
        ]
        assert rows[0] == rows[1] == rows[2], name
    changes = con.execute(
        f"SELECT count(*) FROM {layout.table_relation(four.output_dir, 'status_changes')} "
        "WHERE previous_as_of_date IS NOT NULL"
    ).fetchone()[0]
    assert changes > 0, "no status change against the earlier snapshot: the test shows nothing"

    def counts(res) -> dict:
        return {
            s.name: (s.rows, s.patients, s.inputs, [a["rows"] for a in s.attrition])
            for s in res.steps
        }

    assert counts(four) == counts(one) == counts(auto)
    manifest = json.loads((four.output_dir / "build.json").read_text())
    assert manifest["patient_buckets"] == 4
    manifest = json.loads((auto.output_dir / "build.json").read_text())
    log = [f for fs in files_by_version(Warehouse(tmp_path / "auto")).values() for f in fs]
    (visible,) = con.execute(
        f"SELECT count(*) FROM read_parquet({sql_list(log)}, union_by_name = true) "
        f"WHERE recorded_at <= '{AS_OF}' AND occurred_at <= '{AS_OF}'"
    ).fetchone()
    assert manifest["patient_buckets"] == -(-visible // 700) > 1
    one_manifest = json.loads((one.output_dir / "build.json").read_text())
    assert "patient_buckets" not in one_manifest


def test_a_model_out_of_memory_names_the_setting_that_splits_the_build(tmp_path: Path) -> None:
    """When DuckDB runs out of memory in a per-patient table, the error says which setting
    lets a full build compute it for a group of patients at a time."""
    import dataclasses as dc

    from pipelines.build.models import load_models
    from pipelines.build.runner import ModelError, run_model

    sql = tmp_path / "big.sql"
    sql.write_text("SELECT * FROM range(20000000) AS t(i) ORDER BY hash(i)")
    model = next(m for m in load_models() if m.name == "exposures")
    model = dc.replace(model, name="big", sql_path=sql)
    con = duckdb.connect()
    con.execute("SET memory_limit = '32MB'")
    con.execute("SET temp_directory = ''")  # no spilling: the sort cannot fit
    with pytest.raises(ModelError, match="build.patient_buckets"):
        run_model(con, model)
    with pytest.raises(ModelError) as not_per_patient:
        run_model(con, dc.replace(model, per_patient=False))
    assert "patient_buckets" not in str(not_per_patient.value)
