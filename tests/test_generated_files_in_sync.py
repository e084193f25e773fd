"""Committed generated files match their sources (contract, rules, sidecars)."""

from __future__ import annotations

from pipelines.docs import stale_docs
from quality.suites import SUITES_DIR, render_default_suites


def test_quality_suites_match_contract_and_rules() -> None:
    rendered = render_default_suites()
    assert sorted(p.name for p in SUITES_DIR.glob("*.json")) == sorted(rendered)
    stale = [n for n, text in rendered.items() if (SUITES_DIR / n).read_text() != text]
    assert not stale, f"run `txh quality suites --write`: {stale}"


def test_docs_match_contract_and_sidecars() -> None:
    assert not stale_docs(), "run `txh docs` to regenerate docs/"
