"""Ingest: input files -> quality gate -> append-only event log (see core.py)."""

from pipelines.ingest.core import ConvertedInput, FileReport, IngestResult, ingest

__all__ = ["ConvertedInput", "FileReport", "IngestResult", "ingest"]
