"""Reference data loaded into DuckDB for the transforms (rules as data).

Tables:
  ref_drugs(ingredient, atc, rxnorm, route, supply, cycle_days, max_daily_dose_mg)
  ref_drug_classes(ingredient, drug_class)
  ref_drug_indications(ingredient, condition, min_effective_daily_dose_mg, not_for_subtypes)
from ``schemas/reference/drugs.yaml`` (or the file named by ``build.drug_reference``).
Other loaders (rule packs) register themselves in ``LOADERS``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import yaml

from pipelines.config import REPO_ROOT, Config

Loader = Callable[[duckdb.DuckDBPyConnection, Config], list[Path]]
LOADERS: list[Loader] = []


class ReferenceError(ValueError):
    pass


def drug_reference_path(cfg: Config) -> Path:
    p = Path(cfg.build.drug_reference)
    return p if p.is_absolute() else REPO_ROOT / p


def _frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(columns))
    return df


def load_drugs(con: duckdb.DuckDBPyConnection, cfg: Config) -> list[Path]:
    path = drug_reference_path(cfg)
    if not path.exists():
        raise ReferenceError(f"drug reference not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    drugs = raw.get("drugs") or {}
    if not drugs:
        raise ReferenceError(f"{path}: no `drugs`")
    rows, classes, indications = [], [], []
    for ingredient, spec in sorted(drugs.items()):
        ing = str(ingredient).strip().lower()
        spec = spec or {}
        rows.append(
            {
                "ingredient": ing,
                "atc": spec.get("atc"),
                "rxnorm": _str(spec.get("rxnorm")),
                "route": spec.get("route"),
                "supply": spec.get("supply", "continuous"),
                "cycle_days": spec.get("cycle_days"),
                "max_daily_dose_mg": spec.get("max_daily_dose_mg"),
            }
        )
        for c in spec.get("classes") or []:
            classes.append({"ingredient": ing, "drug_class": str(c).lower()})
        for cond, ind in sorted((spec.get("indications") or {}).items()):
            ind = ind or {}
            indications.append(
                {
                    "ingredient": ing,
                    "condition": str(cond).lower(),
                    "min_effective_daily_dose_mg": ind.get("min_effective_daily_dose_mg"),
                    "not_for_subtypes": [str(s).lower() for s in ind.get("not_for_subtypes") or []],
                }
            )
    con.execute("""CREATE OR REPLACE TABLE ref_drugs (ingredient VARCHAR PRIMARY KEY, atc VARCHAR,
                   rxnorm VARCHAR, route VARCHAR, supply VARCHAR, cycle_days INTEGER,
                   max_daily_dose_mg DOUBLE)""")
    con.execute("CREATE OR REPLACE TABLE ref_drug_classes (ingredient VARCHAR, drug_class VARCHAR)")
    con.execute("""CREATE OR REPLACE TABLE ref_drug_indications (ingredient VARCHAR, condition VARCHAR,
                   min_effective_daily_dose_mg DOUBLE, not_for_subtypes VARCHAR[])""")
    for table, data in (
        ("ref_drugs", rows),
        ("ref_drug_classes", classes),
        ("ref_drug_indications", indications),
    ):
        if data:
            df = pd.DataFrame(data)  # noqa: F841 - read by DuckDB's replacement scan
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM df")
    return [path]


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


LOADERS.append(load_drugs)


def load_all(con: duckdb.DuckDBPyConnection, cfg: Config) -> list[Path]:
    files: list[Path] = []
    for loader in LOADERS:
        files += loader(con, cfg)
    return files


def _reference_name(f: Path) -> str:
    """A reference file's name in the hash: relative to the repository when it is a bundled
    file, else its file name. Never the absolute path: the same files in another checkout (a
    new release directory, a CI runner, a container) must not force a full rebuild."""
    try:
        return f.resolve().relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return f.name


def reference_hash(files: list[Path]) -> str:
    """Hash of the reference files' names and contents (part of the build fingerprint)."""
    h = hashlib.sha256()
    for name, f in sorted((_reference_name(f), f) for f in files):
        data = f.read_bytes()
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


from pipelines.build import reference_lines as _reference_lines  # noqa: E402, F401

# rule packs register their loader (rules as data, see pipelines/build/rule_packs.py)
from pipelines.build import rule_packs as _rule_packs  # noqa: E402, F401
