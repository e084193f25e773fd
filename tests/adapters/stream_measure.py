"""Generate a large FHIR NDJSON file and measure the FHIR adapter's peak memory and time.

Used by test_streaming.py (about 150 MB) and run by hand for the 2 GB figure in docs/adapters.md:

    .venv/bin/python tests/adapters/stream_measure.py --mb 2048 --dir /tmp/txh-stream

The resources are synthetic (written here): MedicationRequests (a single-ingredient and a
combination product), blood-pressure panel Observations and inpatient Encounters, in one file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _resources(i: int) -> list[dict]:
    pid = f"p{i % 5000:05d}"
    day = f"20{10 + i % 10:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}"
    return [
        {
            "resourceType": "MedicationRequest",
            "id": f"mr-{i}",
            "status": "active",
            "intent": "order",
            "subject": {"reference": f"Patient/{pid}"},
            "authoredOn": day,
            "medicationCodeableConcept": {
                "coding": [
                    {
                        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                        "code": "314076" if i % 2 else "562251",
                        "display": "synthetic product",
                    }
                ]
            },
            "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "59621000"}]}],
            "dispenseRequest": {
                "expectedSupplyDuration": {"value": 30, "unit": "days", "code": "d"}
            },
            "note": [{"text": "x" * 400}],
        },
        {
            "resourceType": "Observation",
            "id": f"bp-{i}",
            "status": "final",
            "subject": {"reference": f"Patient/{pid}"},
            "encounter": {"reference": f"Encounter/e{i}"},
            "effectiveDateTime": f"{day}T09:30:00+01:00",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "component": [
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "valueQuantity": {"value": 120 + i % 40, "unit": "mm[Hg]"},
                },
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                    "valueQuantity": {"value": 70 + i % 20, "unit": "mm[Hg]"},
                },
            ],
        },
        {
            "resourceType": "Encounter",
            "id": f"e{i}",
            "status": "finished",
            "class": {"code": "IMP" if i % 3 == 0 else "AMB"},
            "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": f"{day}T08:00:00Z", "end": f"{day}T18:00:00Z"},
        },
    ]


def write_ndjson(path: Path, target_bytes: int) -> int:
    """Write about target_bytes of NDJSON; returns the number of lines."""
    n = written = i = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target_bytes:
            for res in _resources(i):
                line = json.dumps(res, separators=(",", ":")) + "\n"
                f.write(line)
                written += len(line)
                n += 1
            i += 1
    return n


# Peak RSS of the child: VmHWM from /proc (reset by exec) where available. getrusage's ru_maxrss
# is not: on Linux a forked child starts with the parent's peak, so a child of a large pytest
# process would report the parent's memory.
PEAK_RSS = """
def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

CHILD = (
    PEAK_RSS
    + """
import json, sys, time
from pathlib import Path
from pipelines.adapters import convert
t = time.perf_counter()
r = convert("fhir", [Path(sys.argv[1])], Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_rss_mb": peak_rss_mb(),
                  "records_read": r.report["totals"]["records_read"],
                  "events": r.report["totals"]["events_total"],
                  "reconciled": r.report["reconciled"]}))
"""
)


def measure(ndjson: Path, work_dir: Path) -> dict:
    """Convert in a fresh interpreter; peak RSS of that process."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(ndjson), str(work_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def baseline_rss_mb() -> float:
    """Peak RSS of an interpreter that only imports the adapters (the fixed cost)."""
    code = PEAK_RSS + "import pipelines.adapters\nprint(peak_rss_mb())"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return float(proc.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=2048)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/txh-stream"))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    src = args.dir / "Bulk.000.ndjson"
    t = time.perf_counter()
    lines = write_ndjson(src, args.mb << 20)
    print(
        f"generated {src.stat().st_size / 2**20:.0f} MiB, {lines} lines "
        f"in {time.perf_counter() - t:.0f} s"
    )
    result = measure(src, args.dir / "work")
    result["baseline_rss_mb"] = baseline_rss_mb()
    result["input_mib"] = round(src.stat().st_size / 2**20)
    print(json.dumps(result, indent=1))
    if not args.keep:
        src.unlink()
        for f in (args.dir / "work").glob("*"):
            f.unlink()


if __name__ == "__main__":
    main()
