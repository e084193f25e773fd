"""Best overall response as derived for the ADaM comparison (admiralonco ADRS template rules)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipelines.adapters.validation import (
    Assessment,
    best_overall_response,
    overall_responses,
)

START = date(2020, 1, 1)


def visits(*responses: str, every_days: int = 21) -> list[Assessment]:
    return [
        Assessment(START + timedelta(days=every_days * (i + 1)), r) for i, r in enumerate(responses)
    ]


def bor(assessments: list[Assessment], confirmed: bool = False) -> str:
    return best_overall_response(overall_responses(assessments, START), START, confirmed=confirmed)[
        0
    ]


@pytest.mark.parametrize(
    ("story", "responses", "expected_bor", "expected_cbor"),
    [
        ("cr_at_last_visit_is_unconfirmed", ("sd", "ne", "cr"), "cr", "sd"),
        ("pr_confirmed_four_weeks_later", ("sd", "pr", "pr", "pr"), "pr", "pr"),
        ("pr_confirmed_across_one_ne", ("sd", "pr", "ne", "pr"), "pr", "pr"),
        ("two_ne_break_the_confirmation", ("pr", "ne", "ne", "pr"), "pr", "sd"),
        ("cr_confirmed_by_cr", ("pr", "cr", "cr", "cr"), "cr", "cr"),
        ("sd_only_before_day_42_is_ne", ("sd",), "ne", "ne"),
        ("sd_reaching_day_42", ("sd", "sd"), "sd", "sd"),
        ("progression_ends_the_record", ("sd", "pd", "sd", "pr"), "pd", "pd"),
        (
            "non_target_only_disease",
            ("non-cr/non-pd", "non-cr/non-pd"),
            "non-cr/non-pd",
            "non-cr/non-pd",
        ),
        ("no_assessment", (), "missing", "missing"),
    ],
)
def test_bor_stories(story, responses, expected_bor, expected_cbor):
    a = visits(*responses)
    assert bor(a) == expected_bor, story
    assert bor(a, confirmed=True) == expected_cbor, story


def test_worst_response_of_a_day_counts_and_earlier_days_are_ignored():
    day = START + timedelta(days=42)
    a = [Assessment(day, "pr"), Assessment(day, "pd"), Assessment(START - timedelta(days=5), "cr")]
    ovr = overall_responses(a, START)
    assert ovr == [Assessment(day, "pd")]
    assert best_overall_response(ovr, START, confirmed=False) == ("pd", day)
