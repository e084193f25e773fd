"""Derived-table models: one SQL file + one YAML sidecar per table under transforms/.

``transforms/<layer>/<name>.sql`` builds ``<name>``; ``<name>.yml`` beside it states:

    name: drug_eras                 # must equal the file name
    layer: intermediate             # staging | intermediate | marts
    description: ...
    grain: one row per patient x ingredient x era
    keys: [patient_id, ingredient, era_start_date]      # unique together (tested)
    order_by: [...]                 # total order of the Parquet output (default: keys;
                                    # a per-patient table's starts with patient_id)
    depends_on: [exposures]         # upstream models (the runner orders by these)
    per_patient: true               # depends only on each patient's own events
    columns: {col: meaning, ...}    # every output column, documented
    previous_snapshot_of: refractory_status   # optional: read <that>_previous, the latest
                                              # earlier snapshot (<warehouse>/status_history)
    attrition:                      # optional: named counts that explain rows leaving a step
      - reason: therapy events without a usable duration
        sql: SELECT count(*) FROM ... WHERE ...

SQL may read: upstream models by name, ``log_events`` (the visible event log, see runner),
reference tables ``ref_*`` and parameters through ``getvariable('<name>')``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from pipelines.config import TRANSFORMS_DIR

LAYERS = ("staging", "intermediate", "marts")
SOURCES = ("log_events",)  # relations the runner provides


class ModelError(ValueError):
    pass


@dataclass(frozen=True)
class Model:
    name: str
    layer: str
    sql_path: Path
    description: str
    grain: str
    keys: tuple[str, ...]
    order_by: tuple[str, ...]
    depends_on: tuple[str, ...]
    per_patient: bool
    columns: dict[str, str]
    attrition: tuple[dict[str, str], ...] = ()
    identifiers: tuple[str, ...] = ("patient_id",)
    previous_snapshot_of: str | None = None  # the runner provides <that>_previous (see runner)
    sidecar: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def sql(self) -> str:
        return self.sql_path.read_text()


def _load_model(sql_path: Path) -> Model:
    side_path = sql_path.with_suffix(".yml")
    if not side_path.exists():
        raise ModelError(f"{sql_path}: missing sidecar {side_path.name}")
    side = yaml.safe_load(side_path.read_text()) or {}
    name = sql_path.stem
    if side.get("name") != name:
        raise ModelError(f"{side_path}: name {side.get('name')!r} != file name {name!r}")
    layer = sql_path.parent.name
    if layer not in LAYERS or side.get("layer", layer) != layer:
        raise ModelError(f"{side_path}: layer must be the directory name, one of {LAYERS}")
    for key in ("grain", "keys", "columns", "depends_on", "per_patient"):
        if key not in side:
            raise ModelError(f"{side_path}: missing `{key}`")
    keys = tuple(side["keys"])
    columns = {str(k): " ".join(str(v or "").split()) for k, v in (side["columns"] or {}).items()}
    missing = [k for k in keys if k not in columns]
    if missing:
        raise ModelError(f"{side_path}: key column(s) {missing} not documented under columns")
    if side["per_patient"] and "patient_id" not in columns:
        raise ModelError(f"{side_path}: per-patient tables must carry patient_id")
    order_by = tuple(side.get("order_by") or keys)
    if side["per_patient"] and order_by[:1] != ("patient_id",):
        # a grouped build keeps such a table as one file per range of patient ids, in order
        raise ModelError(f"{side_path}: a per-patient table's order_by must start with patient_id")
    return Model(
        name=name,
        layer=layer,
        sql_path=sql_path,
        description=" ".join(str(side.get("description", "")).split()),
        grain=str(side["grain"]),
        keys=keys,
        order_by=order_by,
        depends_on=tuple(side["depends_on"] or ()),
        per_patient=bool(side["per_patient"]),
        columns=columns,
        attrition=tuple(side.get("attrition") or ()),
        identifiers=tuple(
            side.get("identifiers", ["patient_id"] if "patient_id" in columns else [])
        ),
        previous_snapshot_of=side.get("previous_snapshot_of"),
        sidecar=side,
    )


def load_models(root: Path = TRANSFORMS_DIR) -> list[Model]:
    """All models, topologically sorted (ties broken by layer, then name)."""
    return list(_load_models_cached(root, _tree_hash(root)))


@cache
def _load_models_cached(root: Path, _digest: str) -> tuple[Model, ...]:
    models = {}
    for layer in LAYERS:
        for sql in sorted((root / layer).glob("*.sql")):
            m = _load_model(sql)
            if m.name in models:
                raise ModelError(f"two models named {m.name}")
            models[m.name] = m
    for m in models.values():
        for d in m.depends_on:
            if d not in models and d not in SOURCES:
                raise ModelError(f"{m.name}: depends on unknown model {d}")
            if m.per_patient and d in models and not models[d].per_patient:
                raise ModelError(f"{m.name}: per-patient model depends on cohort model {d}")
    order: list[Model] = []
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ModelError(f"dependency cycle: {' -> '.join((*path, name))}")
        state[name] = 1
        for d in models[name].depends_on:
            if d in models:
                visit(d, (*path, name))
        state[name] = 2
        order.append(models[name])

    for name in sorted(models, key=lambda n: (LAYERS.index(models[n].layer), n)):
        visit(name, ())
    return tuple(order)


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".sql", ".yml", ".yaml"):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def code_hash(root: Path = TRANSFORMS_DIR) -> str:
    """Hash of every transform, sidecar and parameter file (a change forces a full rebuild)."""
    return _tree_hash(root)
