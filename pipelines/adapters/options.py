"""Options shared by all adapters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class AdapterOptions:
    source: str | None = None
    """Overrides the `source` column (default: fhir, omop:<cdm_source_abbreviation>,
    sdtm:<STUDYID>, synthea). `event_id` is unique within a source, so keep it stable per feed."""

    default_condition: str | None = None
    """Condition id written on therapy and response events whose indication the source cannot
    tell (e.g. the disease of a clinical trial: `lbcl`). Never overrides a mapped indication."""

    mappings_dirs: tuple[Path, ...] = ()
    """Directories with user mapping files (same names as schemas/mappings/) read after the
    shipped ones, e.g. a site's own RxNorm -> ingredient rows or local observation codes."""

    sdtm_rs_evaluator: str | None = "INVESTIGATOR"
    """SDTM RS: keep overall responses of this evaluator (RSEVAL), as ADaM ADRS does for the
    primary analysis; None keeps every evaluator (several responses per visit)."""

    sdtm_default_criteria: str = "recist_1_1"
    """SDTM RS: criteria when RSCAT is absent (flagged `criteria_assumed` in _extra)."""

    omop_schema: str | None = None
    """OMOP in a DuckDB database file: schema holding the CDM tables (default: all schemas)."""

    synthea_expand_dispenses: bool = True
    """Synthea medications: spread DISPENSES fills over START..STOP as `dispensed` events."""

    chunk_rows: int = 50_000
    """Rows per Parquet write (bounds memory while streaming)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mappings_dirs"] = [str(p) for p in self.mappings_dirs]
        return d
