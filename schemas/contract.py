"""The canonical event contract, loaded from ``schemas/events/v<N>.yaml``.

Everything that depends on the contract (Arrow storage schema, ingest normalisation SQL, baseline
quality suites, documentation) is generated from the :class:`Contract` object defined here, so the
YAML file stays the single source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pyarrow as pa
import yaml

SCHEMAS_DIR = Path(__file__).resolve().parent
CURRENT_SCHEMA_VERSION = 1

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us"),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}
_DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
}


class ContractError(ValueError):
    """The contract file is inconsistent (a bug in schemas/, not in user data)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    doc: str
    families: tuple[str, ...]  # empty for envelope columns (= all families)
    normalise: str | None = None  # lower | upper | trim | None
    required_for: tuple[str, ...] = ()
    domain: tuple[str, ...] = ()
    identifier: bool = False
    envelope: bool = False

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.type]

    @property
    def duckdb_type(self) -> str:
        return _DUCKDB_TYPES[self.type]

    def required_event_types(self, contract: Contract) -> tuple[str, ...]:
        if "all" in self.required_for:
            return contract.event_types
        return self.required_for


@dataclass(frozen=True)
class Family:
    name: str
    doc: str
    event_types: dict[str, str]


@dataclass(frozen=True)
class Contract:
    schema_version: int
    families: dict[str, Family]
    envelope: tuple[Column, ...]
    columns: tuple[Column, ...]
    response_codes: dict[str, tuple[str, ...]]
    system_columns: tuple[Column, ...]
    source_path: Path = field(compare=False)

    # -- lookups ------------------------------------------------------------------------------
    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(et for fam in self.families.values() for et in fam.event_types)

    @property
    def family_of(self) -> dict[str, str]:
        return {et: fam.name for fam in self.families.values() for et in fam.event_types}

    @property
    def contract_columns(self) -> tuple[Column, ...]:
        """Envelope + payload columns: what a user may supply."""
        return self.envelope + self.columns

    @property
    def contract_column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.contract_columns)

    def column(self, name: str) -> Column:
        for c in self.contract_columns + self.system_columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def columns_for_family(self, family: str) -> tuple[Column, ...]:
        return self.envelope + tuple(c for c in self.columns if family in c.families)

    @property
    def content_columns(self) -> tuple[str, ...]:
        """Columns whose values define an event's content (duplicate vs conflict).

        ``event_id`` is the key, ``recorded_at`` is system time: a re-sent event with another
        recorded_at is the same event, so both are left out.
        """
        return tuple(
            c.name for c in self.contract_columns if c.name not in ("event_id", "recorded_at")
        )

    # -- derived artefacts ----------------------------------------------------------------------
    def storage_schema(self) -> pa.Schema:
        """Arrow schema of a stored event (log Parquet files), in a fixed column order."""
        fields = [pa.field(c.name, c.arrow_type, nullable=True) for c in self.contract_columns]
        fields += [pa.field(c.name, c.arrow_type, nullable=True) for c in self.system_columns]
        metadata = {b"txh.schema_version": str(self.schema_version).encode()}
        return pa.schema(fields, metadata=metadata)

    def storage_columns(self) -> tuple[Column, ...]:
        return self.contract_columns + self.system_columns

    def duckdb_ddl(self, table: str = "events") -> str:
        cols = ",\n  ".join(f"{c.name} {c.duckdb_type}" for c in self.storage_columns())
        return f"CREATE TABLE {table} (\n  {cols}\n)"


def _column(name: str, spec: dict, *, envelope: bool, event_types: tuple[str, ...]) -> Column:
    typ = spec.get("type")
    if typ not in _ARROW_TYPES:
        raise ContractError(f"column {name}: unknown type {typ!r}")
    domain = tuple(spec.get("domain", ()))
    if spec.get("domain_from") == "event_types":
        domain = event_types
    required_for = tuple(spec.get("required_for", ()))
    for et in required_for:
        if et != "all" and et not in event_types:
            raise ContractError(f"column {name}: required_for names unknown event type {et!r}")
    norm = spec.get("normalise")
    if norm not in (None, "lower", "upper", "trim"):
        raise ContractError(f"column {name}: unknown normalise {norm!r}")
    if norm is not None and typ != "string":
        raise ContractError(f"column {name}: normalise applies to strings only")
    return Column(
        name=name,
        type=typ,
        doc=" ".join(str(spec.get("doc", "")).split()),
        families=tuple(spec.get("family", ())),
        normalise=norm,
        required_for=required_for,
        domain=domain,
        identifier=bool(spec.get("identifier", False)),
        envelope=envelope,
    )


def load_contract(version: int = CURRENT_SCHEMA_VERSION) -> Contract:
    return _load_contract_cached(version)


@cache
def _load_contract_cached(version: int) -> Contract:
    path = SCHEMAS_DIR / "events" / f"v{version}.yaml"
    if not path.exists():
        raise ContractError(f"no contract file for schema version {version}: {path}")
    raw = yaml.safe_load(path.read_text())
    if raw.get("schema_version") != version:
        raise ContractError(f"{path}: schema_version {raw.get('schema_version')} != {version}")
    families = {
        name: Family(name=name, doc=spec["doc"], event_types=dict(spec["event_types"]))
        for name, spec in raw["families"].items()
    }
    event_types = tuple(et for f in families.values() for et in f.event_types)
    if len(set(event_types)) != len(event_types):
        raise ContractError("an event type appears in two families")
    envelope = tuple(
        _column(n, s, envelope=True, event_types=event_types) for n, s in raw["envelope"].items()
    )
    columns = tuple(
        _column(n, s, envelope=False, event_types=event_types) for n, s in raw["columns"].items()
    )
    for c in columns:
        unknown = set(c.families) - set(families)
        if unknown or not c.families:
            raise ContractError(f"column {c.name}: bad family list {c.families}")
    system = tuple(
        _column(n, s, envelope=False, event_types=event_types)
        for n, s in raw["system_columns"].items()
    )
    names = [c.name for c in envelope + columns + system]
    if len(set(names)) != len(names):
        raise ContractError("duplicate column names in the contract")
    response_codes = {k: tuple(v) for k, v in raw["response_codes"].items()}
    resp = next(c for c in columns if c.name == "response")
    crit = next(c for c in columns if c.name == "criteria")
    if set(response_codes) != set(crit.domain):
        raise ContractError("response_codes must list every criteria value")
    for k, codes in response_codes.items():
        if not set(codes) <= set(resp.domain):
            raise ContractError(f"response_codes[{k}] has codes outside the response domain")
    return Contract(
        schema_version=version,
        families=families,
        envelope=envelope,
        columns=columns,
        response_codes=response_codes,
        system_columns=system,
        source_path=path,
    )
