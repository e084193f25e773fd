"""`txh run`: the scheduled batch job. Ingest what is new, build, publish, report.

One lock is held for the whole run, so two runs never write at once (the second exits 75, or
waits with --wait). Every run, successful or not, leaves a run record
``<warehouse>/runs/<run_id>.json`` (the `runs` view in the DuckDB file reads them): run id,
start/finish, as-of, inputs with hashes, counts per step, parameters, status and exit code.

Publishing rules: a build is published only when the quality gate passed, or when
``quality.on_gate_failure = quarantine`` (failures quarantined, the rest published). The
previous published outputs stay in place otherwise, and a crash at any point leaves them intact
(see pipelines/warehouse.py and pipelines/build/publish.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.build.runner import BuildResult, build
from pipelines.config import REPO_ROOT, Config
from pipelines.ingest import IngestResult, ingest
from pipelines.logs import get_logger
from pipelines.warehouse import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    Warehouse,
    atomic_write_json,
)

log = get_logger("txh.run")
Progress = Callable[[str, float], None]
# steps after the build (reports, ...) register here: fn(cfg, wh, build_result) -> summary dict
POST_BUILD_STEPS: list[tuple[str, Callable[[Config, Warehouse, BuildResult], dict[str, Any]]]] = []
import pipelines.report.post_build  # noqa: E402, F401  (registers the reports step)


@dataclass
class RunResult:
    run_id: str
    status: str  # ok | gate_failed
    exit_code: int
    as_of: datetime
    ingest: IngestResult | None
    build: BuildResult | None
    steps: dict[str, Any] = field(default_factory=dict)
    record_path: Path | None = None

    def summary(self) -> dict[str, Any]:
        return json.loads(self.record_path.read_text()) if self.record_path else {}


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def resolve_inputs(cfg: Config, inputs: list[str] | None) -> list[Path]:
    out = []
    for p in inputs if inputs is not None else cfg.run.inputs:
        path = Path(p)
        if not path.is_absolute() and inputs is None:
            path = REPO_ROOT / path  # configured defaults are relative to the repo
        out.append(path)
    return out


def run(
    cfg: Config,
    *,
    inputs: list[str] | None = None,
    as_of: datetime | None = None,
    full: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    wh = Warehouse.from_config(cfg)
    wh.ensure()
    progress = progress or (lambda s, f: None)
    run_id = f"{_utcnow():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    started = _utcnow()
    t0 = time.perf_counter()
    with wh.lock(cfg.run.lock_timeout_seconds):
        paths = resolve_inputs(cfg, inputs)
        # provisional record (status running): the published `runs` view includes this run, and
        # a run killed mid-way stays visible as `running` (replaced by the final record below)
        path = wh.runs_dir / f"{run_id}.json"
        record: dict[str, Any] = {
            "run_id": run_id,
            "started_at": started.isoformat(sep=" "),
            "finished_at": None,
            "status": "running",
            "exit_code": None,
            "published": False,
            "as_of": as_of.isoformat(sep=" ") if as_of else None,
            "inputs": [str(p) for p in paths],
            "ingest": None,
            "build": None,
            "post_build": None,
            "parameters": cfg.to_dict(),
            "seconds": None,
        }
        atomic_write_json(path, record)
        log.info("run.start", run_id=run_id, inputs=len(paths))
        ing = ingest(paths, cfg, progress=progress)
        t_ingest = time.perf_counter() - t0
        publish = ing.gate_passed or cfg.quality.on_gate_failure == "quarantine"
        res: BuildResult | None = None
        steps: dict[str, Any] = {}
        if publish:
            as_of = as_of or _utcnow()
            res = build(cfg, as_of=as_of, full=full, progress=progress)
            for name, step in POST_BUILD_STEPS:
                progress(name, 0.97)
                steps[name] = step(cfg, wh, res)
        status = "ok" if ing.gate_passed else "gate_failed"
        code = EXIT_OK if ing.gate_passed else EXIT_GATE_FAILED
        record.update(
            {
                "finished_at": _utcnow().isoformat(sep=" "),
                "status": status,
                "exit_code": code,
                "published": bool(res),
                "as_of": res.as_of.isoformat(sep=" ") if res else None,
                "ingest": {
                    "batch_id": ing.batch_id,
                    "rows_read": ing.rows_read,
                    "accepted": ing.accepted,
                    "quarantined": ing.quarantined,
                    "duplicates": ing.duplicates,
                    "reconciled": ing.reconciled,
                    "gate_passed": ing.gate_passed,
                    "files": [
                        {
                            "path": f.path,
                            "sha256": f.sha256,
                            "status": f.status,
                            "rows_read": f.rows_read,
                            "accepted": f.accepted,
                            "quarantined": f.quarantined,
                            "duplicates": f.duplicates,
                            "message": f.message,
                        }
                        for f in ing.files
                    ],
                    "seconds": round(t_ingest, 3),
                    "peak_rss_mb": round(ing.peak_rss_mb, 1),
                },
                "build": None if res is None else res.summary(),
                "post_build": steps,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        atomic_write_json(path, record)
    log.info("run.done", run_id=run_id, status=status, seconds=record["seconds"])
    return RunResult(
        run_id=run_id,
        status=status,
        exit_code=code,
        as_of=res.as_of if res else started,
        ingest=ing,
        build=res,
        steps=steps,
        record_path=path,
    )
