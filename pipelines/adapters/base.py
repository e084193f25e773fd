"""The adapter interface: ``convert(fmt, paths, work_dir) -> AdapterResult``.

An adapter maps a source format onto the canonical event contract (schemas/events/v1.yaml). Its
output is what the canonical ingest reads: one Parquet file of canonical rows (every contract
column, as text; ingest casts and normalises them) with provenance columns ``_source_file`` and
``_source_row`` and a JSON ``_extra``; a quarantine Parquet file of source records that could not
be mapped; and a report that reconciles per source file and record type:
records_read = records_mapped + records_out_of_scope + records_quarantined.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.adapters import fhir, omop, sdtm, synthea
from pipelines.adapters.options import AdapterOptions
from pipelines.adapters.sink import ConversionWriter
from pipelines.adapters.vocab import Vocabulary, load_vocabulary

AdapterRun = Callable[
    [Sequence[Path], ConversionWriter, Vocabulary, AdapterOptions], tuple[Path, ...]
]
ADAPTERS: dict[str, AdapterRun] = {
    "fhir": fhir.run,
    "omop": omop.run,
    "sdtm": sdtm.run,
    "synthea": synthea.run,
}
FORMATS: tuple[str, ...] = tuple(ADAPTERS)


class AdapterError(ValueError):
    """Bad adapter input (unknown format, no usable file): a usage error for the CLI."""


@dataclass(frozen=True)
class AdapterResult:
    source_format: str  # fhir | omop | sdtm | synthea
    source_files: tuple[Path, ...]  # original input files read (ingest hashes them)
    events_path: Path  # ONE Parquet file of canonical rows + _source_file/_source_row/_extra
    quarantine_path: Path | None  # source records that could not be mapped (None: none)
    report: dict[str, Any]  # reconciled counts per source file / record type


def convert(
    fmt: str,
    paths: Sequence[Path | str],
    work_dir: Path | str,
    *,
    options: AdapterOptions = AdapterOptions(),  # noqa: B008 (frozen, never mutated)
) -> AdapterResult:
    """Map source files of format ``fmt`` to canonical events under ``work_dir``."""
    key = fmt.strip().lower()
    if key not in ADAPTERS:
        raise AdapterError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if not paths:
        raise AdapterError("no input paths")
    work = Path(work_dir)
    out = ConversionWriter(key, work, options.chunk_rows)
    vocab = load_vocabulary(tuple(options.mappings_dirs))
    source_files = ADAPTERS[key]([Path(p) for p in paths], out, vocab, options)
    if not source_files:
        raise AdapterError(f"no {key} input found in: {', '.join(str(p) for p in paths)}")
    events_path, quarantine_path, report = out.close(options.to_dict())
    report["source_files"] = [str(f) for f in source_files]
    if not report["reconciled"]:  # pragma: no cover - guarded by Tally
        raise AssertionError("adapter report does not reconcile")
    return AdapterResult(
        source_format=key,
        source_files=tuple(source_files),
        events_path=events_path,
        quarantine_path=quarantine_path,
        report=report,
    )


def ingest_source(
    fmt: str,
    paths: Sequence[Path | str],
    cfg: Any,
    *,
    options: AdapterOptions = AdapterOptions(),  # noqa: B008 (frozen)
    progress: Callable[[str, float], None] | None = None,
) -> Any:
    """Convert with the adapter, then ingest the canonical rows as one batch (`txh ingest -f`).

    The converted files live in a temporary directory for the duration of the ingest (the
    warehouse's own tmp directory is swept by ingest). Re-ingesting the same source files is a
    no-op: ingest identifies a conversion by the hashes of its source files.
    Returns the ingest's IngestResult.
    """
    import tempfile

    from pipelines.ingest import ingest

    with tempfile.TemporaryDirectory(prefix=f"txh-{fmt}-") as tmp:
        if progress:
            progress(f"convert {fmt}", 0.0)
        res = convert(fmt, paths, Path(tmp), options=options)
        return ingest([], cfg, converted=[to_converted_input(res)], progress=progress)


def to_converted_input(res: AdapterResult) -> Any:
    """The ingest's ConvertedInput for an adapter result."""
    from pipelines.ingest import ConvertedInput

    return ConvertedInput(
        source_format=res.source_format,
        source_files=res.source_files,
        events_path=res.events_path,
        quarantine_path=res.quarantine_path,
        report=res.report,
    )
