"""Rule packs are data: a user pack is checked when it is loaded, and a mistake names the file
and what is wrong instead of failing later inside the build's SQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.build.rule_packs import RulePackError, load_packs
from tests.conftest import make_cfg

PACK = """\
id: test-pack
version: "1.0.0"
condition: {condition}
title: Test pack
sources:
{sources}
parameters:
  required_failures: {{value: 2, doc: "Failed adequate trials needed.", source: s1}}
  response_target: {{value: 0.50, doc: "Improvement that counts as response.", source: s1}}
efficacy:
  response: "{response}"
  non_response: "pct_improvement <= 0"
"""
SOURCE = '  - {id: s1, citation: "A guideline, 2024"}'


def _cfg(tmp_path: Path, **fields: str):
    d = tmp_path / "packs"
    d.mkdir(exist_ok=True)
    text = PACK.format(
        condition=fields.get("condition", "test_condition"),
        sources=fields.get("sources", SOURCE),
        response=fields.get("response", "pct_improvement >= {response_target}"),
    )
    (d / "test.yaml").write_text(text)
    return make_cfg(tmp_path / "wh", build={"rule_pack_dirs": [str(d)]})


def test_user_pack_is_loaded_beside_the_shipped_ones(tmp_path: Path) -> None:
    packs = {p.condition: p for p in load_packs(_cfg(tmp_path))}
    assert "epilepsy" in packs  # shipped
    mine = packs["test_condition"]
    assert mine.efficacy["response"] == "pct_improvement >= 0.5"
    assert mine.parameters["required_failures"] == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"response": "pct_improvment >= {response_target}"}, "efficacy.response"),
        ({"response": "pct_improvement >= {no_such_parameter}"}, "unknown parameter"),
        ({"sources": "  []"}, "cite at least one source"),
    ],
    ids=["misspelt_evidence_column", "unknown_parameter", "no_source"],
)
def test_mistake_in_a_pack_names_the_file_and_the_problem(
    tmp_path: Path, fields: dict[str, str], message: str
) -> None:
    cfg = _cfg(tmp_path, **fields)
    for _ in range(2):  # the predicate check is cached per process; a failure is not
        with pytest.raises(RulePackError, match=message) as e:
            load_packs(cfg)
        assert "test.yaml" in str(e.value)
