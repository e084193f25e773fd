"""SDTM as SAS XPORT (v5), the format sponsors submit: a tiny writer for character datasets."""

from __future__ import annotations

import struct
from pathlib import Path

from adapter_testing import by_id

STAMP = b"01JAN20:00:00:00"


def _rec(text: bytes) -> bytes:
    assert len(text) <= 80
    return text.ljust(80, b" ")


def _header(kind: bytes, tail: bytes = b"0" * 30) -> bytes:
    return _rec(b"HEADER RECORD*******" + kind.ljust(8) + b"HEADER RECORD!!!!!!!" + tail)


def write_xpt(path: Path, name: str, rows: list[dict[str, str]]) -> None:
    """Write a SAS XPORT v5 file of character variables (enough for the adapter's reader)."""
    cols = list(rows[0])
    # records longer than 80 bytes: pandas counts shorter records by trailing blank words
    widths = {c: max(16, *(len(r[c]) for r in rows)) for c in cols}
    out = _header(b"LIBRARY")
    out += _rec(b"SAS     SAS     SASLIB  9.4     X64_7PRO" + b" " * 24 + STAMP)
    out += _rec(STAMP)
    out += _header(b"MEMBER", b"000000000000000001600000000140")
    out += _header(b"DSCRPTR")
    out += _rec(
        b"SAS     " + name.encode().ljust(8) + b"SASDATA 9.4     X64_7PRO" + b" " * 24 + STAMP
    )
    out += _rec(STAMP + b" " * 16 + name.encode().ljust(40) + b" " * 8)
    out += _rec(
        b"HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!000000"
        + f"{len(cols):04d}".encode()
        + b"0" * 20
    )
    namestr, pos = b"", 0
    for i, c in enumerate(cols, start=1):
        namestr += struct.pack(
            ">hhhh8s40s8shhh2s8shhi52s",
            2,
            0,
            widths[c],
            i,
            c.encode().ljust(8),  # SAS pads names and labels with blanks
            b" " * 40,
            b" " * 8,
            0,
            0,
            0,
            b"",
            b"",
            0,
            0,
            pos,
            b"",
        )
        pos += widths[c]
    out += namestr + b" " * (-len(namestr) % 80)
    out += _header(b"OBS")
    data = b"".join(r[c].encode().ljust(widths[c]) for r in rows for c in cols)
    out += data + b" " * (-len(data) % 80)
    path.write_bytes(out)


def test_sdtm_xpt_datasets(run, tmp_path):
    base = {"STUDYID": "TXHXPT", "USUBJID": "X-1"}
    write_xpt(
        tmp_path / "dm.xpt",
        "DM",
        [{**base, "DOMAIN": "DM", "RFSTDTC": "2021-03-01", "RFENDTC": "2021-09", "DTHDTC": ""}],
    )
    write_xpt(
        tmp_path / "ex.xpt",
        "EX",
        [
            {
                **base,
                "DOMAIN": "EX",
                "EXSEQ": "1",
                "EXTRT": "LENALIDOMIDE",
                "EXDOSE": "25",
                "EXDOSU": "mg",
                "EXDOSFRQ": "QD",
                "EXROUTE": "ORAL",
                "EXSTDTC": "2021-03-01",
                "EXENDTC": "2021-03-21",
            }
        ],
    )
    res, events, quarantine = run("sdtm", tmp_path, default_condition="multiple_myeloma")
    ids = by_id(events)
    ex = ids["X-1/EX/1"]
    assert (ex["event_type"], ex["drug"], ex["dose"], ex["days_supply"], ex["condition"]) == (
        "dispensed",
        "lenalidomide",
        "25",
        "21",
        "multiple_myeloma",
    )
    assert ids["X-1/DM#disenrolled"]["occurred_at"] == "2021-09-30"
    assert "X-1/DM#died" not in ids  # blank character value read as missing
    assert ex["source"] == "sdtm:TXHXPT" and quarantine == []
    assert {Path(f).suffix for f in res.report["source_files"]} == {".xpt"}
