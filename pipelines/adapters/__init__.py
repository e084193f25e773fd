"""Real-world input adapters: FHIR R4, OMOP CDM 5.3/5.4, CDISC SDTM and Synthea CSV.

Each adapter maps its source format onto the canonical event contract and hands the result to
the canonical ingest (quality gate, event log, quarantine). Mapping tables: docs/adapters.md.
"""

from pipelines.adapters.base import FORMATS, AdapterError, AdapterResult, convert, ingest_source
from pipelines.adapters.options import AdapterOptions

__all__ = ["FORMATS", "AdapterError", "AdapterOptions", "AdapterResult", "convert", "ingest_source"]
