"""Typed configuration: every parameter with its default and documentation.

Operational settings are frozen dataclasses below; clinical parameters are declared (with unit,
documentation and source) in ``transforms/parameters/*.yaml`` and become the frozen dataclass
``ClinicalParams`` at import time, so SQL and Python read the same values.

A YAML file (``txh --config FILE``) overrides any of them::

    warehouse: /data/txh
    engine: {memory_limit: 8GB}
    params: {persistence_window_days: 60}

Unknown keys and wrongly typed values are configuration errors (exit code 2). Every run writes
the complete, resolved configuration into its manifest (``Config.to_dict``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TRANSFORMS_DIR = REPO_ROOT / "transforms"
QUALITY_DIR = REPO_ROOT / "quality"
SCHEMAS_DIR = REPO_ROOT / "schemas"
DATA_DIR = REPO_ROOT / "data"


class ConfigError(ValueError):
    """Bad configuration or usage; the CLI exits with code 2."""


def _p(default: Any, doc: str, **kw: Any) -> Any:
    """A documented field."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: default, metadata={"doc": doc, **kw})
    return field(default=default, metadata={"doc": doc, **kw})


@dataclass(frozen=True)
class EngineConfig:
    memory_limit: str = _p(
        "auto",
        "DuckDB memory_limit for builds, reports and queries, e.g. '8GB'; 'auto' = half the "
        "machine's physical memory (at least 2GB). DuckDB spills to temp_directory beyond it. "
        "At 10M events a 4GB limit made the build spill and run 1.3x slower than with 10GB.",
    )
    threads: int = _p(0, "DuckDB threads (0 = all cores).")
    block_allocator_memory: str = _p(
        "auto",
        "DuckDB block_allocator_memory: memory DuckDB's block allocator keeps for reuse instead "
        "of returning it to the system ('auto' = the connection's memory limit; 'off' = "
        "DuckDB's default, none). Only what is used is resident; it is released when the "
        "connection closes. Full builds of 10M events, alternating: 201-206 s with it, "
        "209-216 s without (system time 53-59 s against 70-71 s). DuckDB caps it at about 80 % "
        "of the memory it sees: 'auto' is skipped (with a warning) beyond that.",
        false_as="off",
    )
    temp_directory: str = _p("", "Spill directory ('' = <warehouse>/tmp/duckdb).")


@dataclass(frozen=True)
class IngestConfig:
    default_source: str = _p("", "Value of `source` for rows that have none ('' keeps it null).")
    recorded_after_occurred_tolerance_days: int = _p(
        1,
        "occurred_at may be later than recorded_at (or the ingest time) by at most this many days "
        "before the row is quarantined as occurred_after_recorded (time-zone slack).",
    )
    min_plausible_date: str = _p(
        "1900-01-01", "occurred_at before this date is quarantined as implausible_date."
    )
    max_days_supply: int = _p(
        400, "days_supply above this is quarantined as implausible_days_supply (PQA max is 365+)."
    )
    csv_delimiter: str = _p(",", "CSV field delimiter.")
    max_line_bytes: int = _p(
        2_097_152,
        "Line length limit for CSV and JSON Lines inputs, in bytes: a line of this many bytes or "
        "more, its line break included, is quarantined as malformed_row (LINE SIZE OVER "
        "MAXIMUM, its first 10,000 characters kept); the rest of the file is read. DuckDB "
        "reads CSV in buffers of 16 x this: with 10 MB a 250 MB file was read in 4.2 s instead "
        "of 2.8 s with this default (DuckDB's own).",
        minimum=1024,
    )
    memory_limit: str = _p(
        "1GB",
        "DuckDB memory limit during ingest (spills beyond it): keeps a whole ingest, Python and "
        "great-expectations included, under 2 GB whatever the input size.",
    )
    log_part_rows: int = _p(
        1_000_000,
        "Rows per Parquet file of a batch in the event log. The files are written concurrently "
        "(one per thread), each on a single thread so its bytes do not depend on scheduling; "
        "the number of files depends only on the batch.",
        minimum=1,
    )
    recursive: bool = _p(True, "Descend into sub-directories of input paths.")
    file_globs: list[str] = _p(
        ["*.csv", "*.csv.gz", "*.parquet", "*.jsonl", "*.ndjson", "*.jsonl.gz"],
        "Input files picked up inside directories.",
    )


@dataclass(frozen=True)
class QualityConfig:
    mostly: float = _p(
        0.95,
        "Default fraction of rows that must pass each row-level expectation for the gate to pass. "
        "Failing rows are quarantined either way; below `mostly` the batch fails the gate.",
    )
    on_gate_failure: str = _p(
        "reject",
        "reject: a file that fails the gate is not appended (exit 1). "
        "quarantine: append its passing rows anyway and quarantine the rest (still exit 1).",
        choices=("reject", "quarantine"),
    )
    gx_validation: bool = _p(
        True,
        "Also validate each batch with great-expectations (SQL push-down) and cross-check its "
        "counts against the quarantine. Off only for debugging.",
    )


@dataclass(frozen=True)
class ReportConfig:
    pseudonymize_key_env: str = _p(
        "TXH_PSEUDONYM_KEY", "Environment variable holding the pseudonymisation key (never logged)."
    )
    small_cell_threshold: int = _p(
        5, "Counts below this in summary reports are suppressed and marked."
    )


@dataclass(frozen=True)
class RunConfig:
    inputs: list[str] = _p(
        ["data/sample/deliveries"],
        "Input files or directories `txh run` ingests (relative paths: from the repo root).",
    )
    lock_timeout_seconds: float = _p(
        0.0, "How long a run waits for the warehouse lock before giving up (exit 75)."
    )


@dataclass(frozen=True)
class BuildConfig:
    drug_reference: str = _p(
        "schemas/reference/drugs.yaml",
        "Drug reference (ingredients, classes, indications, minimum effective doses); "
        "point at your own copy to override.",
    )
    incremental: bool = _p(
        True,
        "Recompute only patients with new events when the previous build is compatible (same "
        "evaluation date, parameters and transforms); otherwise rebuild everything.",
    )
    incremental_max_affected_fraction: float = _p(
        0.5,
        "An incremental build recomputes the patients with new events; when more than this "
        "fraction of the previous build's patients is affected, a full rebuild is cheaper "
        "and leaves one file per table (10M events, before delta parts: 60% affected took "
        "241 s incrementally, 213 s in full).",
    )
    max_delta_parts: int = _p(
        6,
        "An incremental build writes only the recomputed patients' rows of each per-patient "
        "table, as a delta part beside the previous parts (10M events, 1% more touching a "
        "fifth of the patients: the incremental build 158 s -> 66-78 s). Readers combine the "
        "parts, so the build after this many delta parts compacts: it rewrites each table "
        "whole, byte-identical to a full rebuild. 0 compacts at every incremental build.",
    )
    patient_buckets: int | str = _p(
        "auto",
        "A full build computes the per-patient tables for this many groups of patients in turn "
        "(contiguous ranges of patient ids), so DuckDB holds one group's rows at a time, then "
        "joins each table's parts into one file in its order; the cohort tables follow as "
        "usual. Same rows in the same order as 1 (all patients at once). 'auto' = one group per "
        "build.patient_bucket_events visible events (rounded up), so the groups depend on the "
        "log alone, not on the machine. An incremental build groups the patients it recomputes "
        "by build.patient_bucket_events whatever this says. At 100M events with 11.7 GiB, the exposures query of a "
        "one-group build failed (DuckDB out of memory) even with the block allocator off; ten "
        "groups ran.",
        int_or_auto=True,
        minimum=1,
    )
    patient_bucket_events: int = _p(
        5_000_000,
        "Visible events per group of patients when build.patient_buckets is 'auto'. Full "
        "builds of 10M events (11.7 GiB memory limit, 2 cores), in turn: one group 323 and "
        "289 s, peak RSS 12.8 GB (adherence_cma_windows 102 and 90 s, spilling); two groups "
        "254 and 305 s, 8.9 GB (the table 40 and 48 s; joining the parts adds 20-50 s of "
        "writes); four groups 289 s, 4.8 GB. The time stays within this machine's noise while "
        "the memory falls.",
        minimum=1,
    )
    keep_builds: int = _p(
        3,
        "Published builds kept on disk for readers of older views (unpublished builds, such as "
        "--until-batch reproductions, do not count; they go once older than the oldest kept).",
    )
    rule_pack_dirs: list[str] = _p(
        [],
        "Extra directories of rule packs (YAML); a pack here overrides the shipped pack "
        "of the same condition.",
    )
    skip_models: list[str] = _p(
        [],
        "Derived tables not to build, with every table that depends on them (logged). E.g. "
        "[adherence_cma_events] drops the AdhereR CMA family (CMA1-9, episodes, sliding "
        "windows: about 40% of the build on large cohorts); PDC per trial and the refractory "
        "tables do not depend on it.",
    )


def _load_param_specs() -> dict[str, dict[str, Any]]:
    """Clinical parameters from transforms/parameters/*.yaml (one file per area, unique names)."""
    specs: dict[str, dict[str, Any]] = {}
    for path in sorted((TRANSFORMS_DIR / "parameters").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text()) or {}
        for name, spec in (raw.get("parameters") or {}).items():
            if name in specs:
                raise ConfigError(f"{path.name}: parameter {name} is defined twice")
            for key in ("type", "default", "doc", "source"):
                if key not in spec:
                    raise ConfigError(f"{path.name}: parameter {name} lacks `{key}`")
            specs[name] = {**spec, "file": path.name}
    return specs


_PY_TYPES = {"integer": int, "number": float, "string": str, "boolean": bool}


def _make_clinical_params() -> type:
    specs = _load_param_specs()
    cls_fields = []
    for name, spec in specs.items():
        typ = _PY_TYPES[spec["type"]]
        meta = {
            "doc": " ".join(str(spec.get("doc", "")).split()),
            "unit": spec.get("unit", ""),
            "source": spec.get("source", ""),
        }
        if "choices" in spec:
            meta["choices"] = tuple(spec["choices"])
        if "minimum" in spec:
            meta["minimum"] = spec["minimum"]
        cls_fields.append((name, typ, field(default=typ(spec["default"]), metadata=meta)))
    return dataclasses.make_dataclass("ClinicalParams", cls_fields, frozen=True)


ClinicalParams = _make_clinical_params()


@dataclass(frozen=True)
class Config:
    warehouse: str = _p(
        "data/warehouse", "Output directory (overridden by --warehouse or TXH_WAREHOUSE)."
    )
    engine: EngineConfig = field(default_factory=EngineConfig, metadata={"doc": "DuckDB engine."})
    ingest: IngestConfig = field(default_factory=IngestConfig, metadata={"doc": "Ingest."})
    quality: QualityConfig = field(default_factory=QualityConfig, metadata={"doc": "Quality gate."})
    report: ReportConfig = field(default_factory=ReportConfig, metadata={"doc": "Reports."})
    run: RunConfig = field(default_factory=RunConfig, metadata={"doc": "Scheduled runs."})
    build: BuildConfig = field(default_factory=BuildConfig, metadata={"doc": "Projections."})
    params: ClinicalParams = field(  # type: ignore[valid-type]
        default_factory=ClinicalParams,
        metadata={"doc": "Clinical parameters (transforms/parameters/*.yaml)."},
    )

    # -- paths ----------------------------------------------------------------------------------
    @property
    def warehouse_path(self) -> Path:
        p = Path(self.warehouse)
        return p if p.is_absolute() else (Path.cwd() / p)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for name, value in data.items():
        f = known[name]
        default = getattr(defaults, name)
        path = f"{where}.{name}" if where else name
        if is_dataclass(default):
            kwargs[name] = _coerce(type(default), value, path)
            continue
        kwargs[name] = _check_value(value, default, f.metadata, path)
    return cls(**kwargs)


def _check_value(value: Any, default: Any, meta: Any, path: str) -> Any:
    if meta and meta.get("int_or_auto"):
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer or 'auto', got {value!r}")
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        value = float(value)
    elif isinstance(default, str):
        if meta and meta.get("false_as") and (value is False or value == 0):
            value = meta["false_as"]  # YAML reads an unquoted `off` as false
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
    elif isinstance(default, list) and not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list, got {value!r}")
    minimum = meta.get("minimum") if meta else None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{path}: {value!r} is below the minimum {minimum}")
    choices = meta.get("choices") if meta else None
    if choices and value not in choices:
        raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(str, choices))}")
    return value


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Defaults <- YAML file (path or TXH_CONFIG) <- TXH_WAREHOUSE <- explicit overrides (CLI)."""
    data: dict[str, Any] = {}
    if path is None and os.environ.get("TXH_CONFIG"):
        path = os.environ["TXH_CONFIG"]
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
    if os.environ.get("TXH_WAREHOUSE"):
        data["warehouse"] = os.environ["TXH_WAREHOUSE"]
    for k, v in overrides.items():
        if v is not None:
            data[k] = v
    cfg = _coerce(Config, data, "")
    return cfg


def describe(cfg: Config | None = None) -> list[tuple[str, Any, str]]:
    """(dotted name, value, documentation) for every parameter, for `txh config`."""
    cfg = cfg or Config()
    out: list[tuple[str, Any, str]] = []

    def walk(obj: Any, prefix: str) -> None:
        for f in fields(obj):
            v = getattr(obj, f.name)
            name = f"{prefix}{f.name}"
            if is_dataclass(v):
                walk(v, name + ".")
            else:
                doc = f.metadata.get("doc", "")
                extra = [f.metadata.get("unit", ""), f.metadata.get("source", "")]
                extra = [e for e in extra if e]
                if extra:
                    doc = f"{doc} [{'; '.join(extra)}]"
                out.append((name, v, doc))

    walk(cfg, "")
    return out
