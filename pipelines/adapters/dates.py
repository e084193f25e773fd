"""ISO 8601 dates as sources send them, including partial dates, with a documented imputation.

Accepted forms (after trimming):
  full     2013-05-17, 2013-05-17T10:30, 2013-05-17T10:30:00(.fff), 2013-05-17 10:30:00,
           each with an optional offset (Z, +02:00, -0400); the text is kept (ingest converts
           offsets to UTC as for any other input)
  partial  2013-05 (day unknown), 2013 (month and day unknown), and the SDTM form 2013---17
           (month unknown: the day cannot be placed without its month and is dropped)

Imputation rule (``role``):
  start    start and point-in-time dates (occurred_at of most events): the FIRST possible day
           (2013-05 -> 2013-05-01, 2013 -> 2013-01-01)
  end      end dates (stopped, disenrolled, discharged, ...): the LAST possible day
           (2013-05 -> 2013-05-31, 2013 -> 2013-12-31)
Every imputed date is flagged: ``date_imputed`` = ``day`` (the day was imputed) or ``month``
(month and day were imputed). Anything else, including impossible calendar dates (2013-02-30) and
"UNK" spellings, raises :class:`DateError` (quarantine reason ``unparseable_date``).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

Role = Literal["start", "end"]

_FULL = re.compile(
    r"^(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})"
    r"(?:[T ](?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?)?"
    r"(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?)?$"
)
_MONTH = re.compile(r"^(?P<y>\d{4})-(?P<m>\d{2})(?:-{1,2})?$")
_YEAR = re.compile(r"^(?P<y>\d{4})(?:-{1,3}(?:\d{2})?)?$")


class DateError(ValueError):
    """The text is not an ISO 8601 date (quarantine reason ``unparseable_date``)."""


@dataclass(frozen=True, slots=True)
class ParsedDate:
    text: str  # what to write into the canonical column
    day: date  # calendar date as written (local to the source), for day arithmetic
    imputed: str | None  # None | "day" | "month"


def parse_date(value: object, role: Role = "start") -> ParsedDate | None:
    """Parse a source date; None for empty input. Raises DateError when unparseable."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    m = _FULL.match(text)
    if m:
        y, mo, d = int(m["y"]), int(m["m"]), int(m["d"])
        day = _calendar_date(y, mo, d, text)
        if m["H"] is None:
            return ParsedDate(day.isoformat(), day, None)
        hh, mm, ss = int(m["H"]), int(m["M"] or 0), int(m["S"] or 0)
        if hh > 23 or mm > 59 or ss > 60:
            raise DateError(f"not a time of day: {text!r}")
        frac = (m["f"] or "").rstrip("0")
        frac = "" if frac == "." else frac  # 10:30:00.000000 (Arrow's text) = 10:30:00
        tz = _offset(m["tz"])
        return ParsedDate(f"{day.isoformat()}T{hh:02d}:{mm:02d}:{ss:02d}{frac}{tz}", day, None)
    m = _MONTH.match(text)
    if m:
        y, mo = int(m["y"]), int(m["m"])
        if not 1 <= mo <= 12:
            raise DateError(f"month out of range: {text!r}")
        d = 1 if role == "start" else calendar.monthrange(y, mo)[1]
        day = date(y, mo, d)
        return ParsedDate(day.isoformat(), day, "day")
    m = _YEAR.match(text)
    if m:
        y = int(m["y"])
        day = date(y, 1, 1) if role == "start" else date(y, 12, 31)
        return ParsedDate(day.isoformat(), day, "month")
    raise DateError(f"not an ISO 8601 date: {text!r}")


def _calendar_date(y: int, mo: int, d: int, text: str) -> date:
    try:
        return date(y, mo, d)
    except ValueError as e:
        raise DateError(f"not a calendar date: {text!r}") from e


def _offset(tz: str | None) -> str:
    if not tz or tz == "Z":
        return tz or ""
    sign, digits = tz[0], tz[1:].replace(":", "")
    if len(digits) == 2:
        digits += "00"
    return f"{sign}{digits[:2]}:{digits[2:]}"


def days_between(start: date, end: date) -> int:
    return (end - start).days
