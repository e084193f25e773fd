"""FHIR NDJSON is streamed: peak memory does not grow with the input size.

Two generated files (about 25 MiB and 125 MiB) are converted in fresh interpreters; the peak RSS
(VmHWM of the child process; see stream_measure.py) must be the same within a small tolerance and far
below the larger input. The 2 GiB figure in docs/adapters.md comes from stream_measure.py.
"""

from __future__ import annotations

import pytest
from stream_measure import measure, write_ndjson

SMALL_MIB, LARGE_MIB = 25, 125
GROWTH_TOLERANCE_MB = 40  # allocator noise; a non-streaming reader would grow by ~100+ MB here


@pytest.mark.slow
def test_peak_memory_is_bounded(tmp_path):
    peaks = {}
    for mib in (SMALL_MIB, LARGE_MIB):
        src = tmp_path / f"Bulk{mib}.000.ndjson"
        lines = write_ndjson(src, mib << 20)
        result = measure(src, tmp_path / f"work{mib}")
        assert result["reconciled"]
        assert result["records_read"] == lines
        peaks[mib] = result["peak_rss_mb"]
        src.unlink()
    assert peaks[LARGE_MIB] - peaks[SMALL_MIB] < GROWTH_TOLERANCE_MB, peaks
    assert peaks[LARGE_MIB] < 400, peaks
