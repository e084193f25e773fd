"""Partial ISO 8601 dates: the documented imputation rule and its flag."""

from __future__ import annotations

import calendar
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.adapters.dates import DateError, parse_date


@pytest.mark.parametrize(
    ("text", "role", "expected", "imputed"),
    [
        ("2013-05-17", "start", "2013-05-17", None),
        ("2013-05-17T10:30", "start", "2013-05-17T10:30:00", None),
        ("2013-05-17 10:30:00.000000", "start", "2013-05-17T10:30:00", None),
        ("2013-05-17T10:30:00.250", "start", "2013-05-17T10:30:00.25", None),
        ("2013-05-17T23:58:16-0400", "start", "2013-05-17T23:58:16-04:00", None),
        ("2013-05-17T10:00:00Z", "end", "2013-05-17T10:00:00Z", None),
        ("2013-05", "start", "2013-05-01", "day"),
        ("2013-05", "end", "2013-05-31", "day"),
        ("2012-02", "end", "2012-02-29", "day"),  # leap year
        ("2013", "start", "2013-01-01", "month"),
        ("2013", "end", "2013-12-31", "month"),
        ("2013---17", "start", "2013-01-01", "month"),  # SDTM: month unknown, day dropped
        (" 2013-05 ", "start", "2013-05-01", "day"),
    ],
)
def test_imputation_rule(text, role, expected, imputed):
    pd = parse_date(text, role)
    assert (pd.text, pd.imputed) == (expected, imputed)


@pytest.mark.parametrize(
    "text",
    [
        "05/2013",
        "2013-13",
        "2013-02-30",
        "UNK-05-2013",
        "2013-UN-UN",
        "20130517",
        "2013-05-17T25:00",
        "yesterday",
    ],
)
def test_unparseable_dates_raise(text):
    with pytest.raises(DateError):
        parse_date(text)


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_empty_is_none(empty):
    assert parse_date(empty) is None


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)))
def test_month_imputation_brackets_every_day_of_the_month(d):
    text = f"{d.year:04d}-{d.month:02d}"
    first, last = parse_date(text, "start").day, parse_date(text, "end").day
    assert first <= d <= last
    assert (first.day, last.day) == (1, calendar.monthrange(d.year, d.month)[1])
