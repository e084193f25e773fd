"""drug_eras.sql reproduces OMOP reference DRUG_ERA tables (docs/validation/drug_eras_omop.md).

The OMOP DRUG_EXPOSURE rows are fed straight into transforms/intermediate/drug_eras.sql as a
table shaped like `exposures` (bypassing ingest): one row per exposure x RxNorm ingredient,
start_date = drug_exposure_start_date, end_date = OMOP end - 1 (our ends are inclusive; OMOP's
end is start + days_supply), with OMOP's end rule COALESCE(end_date, start + days_supply,
start + 1), concept 0 and negative supply dropped. Parameters: persistence_window_days = 30,
drug_era_end_convention = omop_exclusive. Compared per reference era on (person, ingredient,
era start): end date, drug_exposure_count and gap_days must all be equal ("exact").

Eunomia GiBleed (CDM 5.3.1, 2,694 persons, 67,707 exposures -> 52,508 reference eras; CONCEPT_
ANCESTOR shipped, so the ingredient roll-up is complete):
  * 52,508 eras built, 52,508 reference eras, every reference era found at its start.
  * 52,495 / 52,508 exact (99.975 %) once the reference gap_days is decoded. Mismatch classes:
    1. gap_days encoding (all but 1 reference rows as stored): GiBleed's gap_days is not a day
       count but a date written as days since 1970-01-01 (the ETL-Synthea bug described in its
       README), i.e. stored = (era_end - 1970-01-01) - gap. Decoded, 52,499 agree; raw, 1 does.
    2. 13 eras (0.025 %, all acetaminophen 1125315), each joining a zero-day exposure
       (days_supply 0, end = start) with another exposure starting the same day: the reference
       ends the era at the zero-day exposure (= the era start) in its end date, in the end its
       gap_days was computed from, or in both: stored end = real end but gap_days from the start
       (5), stored end = start but gap_days from the real end (4), both from the start (4). The
       reference is internally inconsistent in 9 of them; which end lands where depends on the
       SQL engine's order of same-day rows (ETL-CMS numbers starts ordered by start date only).
       OMOP's rule - and ours, order-independent - gives one sub-exposure with the real end and
       gap 0; the test checks that every mismatch is exactly this case (same count, our end =
       the other exposure's end, gap 0, the reference's two ends within {start, our end}).
Eunomia MIMIC-IV demo (CDM 5.3.1, 100 persons, 18,229 inpatient administrations -> 7,931
reference eras): the shipped CONCEPT / CONCEPT_RELATIONSHIP hold only MIMIC's local concepts
("Maps to" standard drugs), not the drug -> ingredient roll-up (its README says so), so the
ingredient of most clinical-drug concepts is unknown. Two maps are used:
  * vocabulary (28 concepts): a drug_concept_id that is itself a reference ingredient (8) or
    rolls up to an RxNorm ingredient in GiBleed's CONCEPT_ANCESTOR (vocabulary 2019; 21);
  * + unique-inferred (108 more): a concept every one of whose exposures lies inside reference
    eras of one and only one common ingredient (of the same person) is mapped to it. This uses
    the reference only to name the ingredient, never its era boundaries or counts.
  A (person, ingredient) pair is "closed" when its mapped exposures number exactly the sum of
  its reference drug_exposure_count (no exposure of the ingredient is missing from the map).
  * closed pairs: 276 / 276 eras exact (vocabulary map) and 1,676 / 1,676 (with unique-inferred):
    100 %. Of all 3,680 reference eras of reachable ingredients, 2,042 are exact (55.5 %).
  * every one of the other 1,638 eras is in a pair with fewer mapped exposures than the reference
    counts (619 eras: none of the person's exposures of that ingredient could be mapped; 1,019:
    some could not): missing vocabulary, not era logic. The test checks that class. (Vocabulary
    map alone: 324 / 1,127 reachable eras exact, 28.7 %; the 803 others in the same two classes.)
Neither dataset has a stockpiling DRUG_ERA; the stockpiling variant is covered by scenarios.

Run `python -m tests.test_drug_eras_omop` for the numbers of the validation report.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import pytest

from pipelines.build.models import load_models
from pipelines.build.runner import bind_params, run_model
from tests.harness import _to_ts, config_with

pytestmark = pytest.mark.external

EXTERNAL = Path(__file__).resolve().parent.parent.parent / "shared" / "external"
GIBLEED = EXTERNAL / "eunomia_gibleed"
MIMIC = EXTERNAL / "eunomia_mimic_iv_demo"
OMOP_PARAMS = {"persistence_window_days": 30, "drug_era_end_convention": "omop_exclusive"}


def _require(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"OMOP reference data not found at {path} (see ../shared/external/README.md)")


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    bind_params(con, config_with(OMOP_PARAMS), _to_ts("2300-01-01"))
    return con


def _build_eras(con: duckdb.DuckDBPyConnection, exposures_sql: str) -> None:
    """drug_eras.sql over an `exposures` table built from OMOP rows."""
    con.execute(f"CREATE OR REPLACE TABLE exposures AS {exposures_sql}")
    model = {m.name: m for m in load_models()}["drug_eras"]
    run_model(con, model)
    con.execute(
        "CREATE OR REPLACE TABLE ours AS "
        "SELECT * FROM drug_eras WHERE era_method = 'non_stockpiling'"
    )


# OMOP's exposure end (ETL-CMS / ETL-Synthea), as our inclusive end (end - 1)
OMOP_END = """coalesce(d.drug_exposure_end_date,
                       d.drug_exposure_start_date + cast(nullif(d.days_supply, 0) AS INTEGER),
                       d.drug_exposure_start_date + 1) - 1"""

EXACT = """o.era_end_date = r.drug_era_end_date AND o.drug_exposure_count = r.drug_exposure_count
           AND o.gap_days = r.gap_days"""


@dataclass(frozen=True)
class GiBleedResult:
    n_reference: int
    n_ours: int
    n_found: int
    n_exact: int
    n_exact_raw_gap: int
    mismatches: list[tuple]


@cache
def gibleed() -> GiBleedResult:
    con = _connect()
    for t in ("drug_exposure", "drug_era", "concept", "concept_ancestor"):
        con.execute(f"CREATE VIEW omop_{t} AS SELECT * FROM read_parquet('{GIBLEED / t}.parquet')")
    _build_eras(
        con,
        f"""
        SELECT CAST(d.person_id AS VARCHAR) AS patient_id,
               CAST(c.concept_id AS VARCHAR) AS ingredient,
               CAST(d.drug_exposure_id AS VARCHAR) AS source_exposure_id,
               'dispensed' AS origin,
               d.drug_exposure_start_date AS start_date,
               {OMOP_END} AS end_date
        FROM omop_drug_exposure AS d
        JOIN omop_concept_ancestor AS ca ON ca.descendant_concept_id = d.drug_concept_id
        JOIN omop_concept AS c ON c.concept_id = ca.ancestor_concept_id
            AND c.vocabulary_id = 'RxNorm' AND c.concept_class_id = 'Ingredient'
        WHERE d.drug_concept_id <> 0 AND coalesce(d.days_supply, 0) >= 0""",
    )
    # gap_days as stored is a date in days since 1970 (ETL-Synthea bug): decode it
    con.execute("""CREATE TABLE ref AS SELECT
        CAST(person_id AS VARCHAR) AS patient_id, CAST(drug_concept_id AS VARCHAR) AS ingredient,
        drug_era_start_date, drug_era_end_date, drug_exposure_count,
        (drug_era_end_date - DATE '1970-01-01') - gap_days AS gap_days, gap_days AS gap_days_raw
        FROM omop_drug_era""")
    join = (
        "ref AS r JOIN ours AS o ON o.patient_id = r.patient_id "
        "AND o.ingredient = r.ingredient AND o.era_start_date = r.drug_era_start_date"
    )
    n_ref, n_ours = con.execute(
        "SELECT (SELECT count(*) FROM ref), (SELECT count(*) FROM ours)"
    ).fetchone()
    n_found, n_exact, n_raw = con.execute(f"""SELECT count(*), count(*) FILTER (WHERE {EXACT}),
        count(*) FILTER (WHERE o.era_end_date = r.drug_era_end_date
            AND o.drug_exposure_count = r.drug_exposure_count AND o.gap_days = r.gap_days_raw)
        FROM {join}""").fetchone()
    # each mismatch, with what class 2 needs: a zero-day exposure starting on the era start, our
    # end and the two candidate ends the reference mixes (stored end, end implied by gap_days)
    mismatches = con.execute(f"""
        SELECT r.patient_id, r.ingredient, r.drug_era_start_date, r.drug_era_end_date,
               DATE '1970-01-01' + CAST(r.gap_days_raw AS INTEGER) AS gap_reference_date,
               o.era_end_date, o.gap_days, o.drug_exposure_count = r.drug_exposure_count,
               EXISTS (SELECT 1 FROM exposures x WHERE x.patient_id = r.patient_id
                       AND x.ingredient = r.ingredient AND x.start_date = r.drug_era_start_date
                       AND x.end_date = x.start_date - 1) AS has_same_day_zero_day_exposure
        FROM {join} WHERE NOT ({EXACT}) ORDER BY ALL""").fetchall()
    con.close()
    return GiBleedResult(n_ref, n_ours, n_found, n_exact, n_raw, mismatches)


@dataclass(frozen=True)
class MimicTier:
    name: str
    n_concepts_mapped: int
    n_reference_reachable: int
    n_exact_reachable: int
    n_reference_closed: int
    n_exact_closed: int
    mismatch_classes: dict[str, int]


@cache
def mimic() -> tuple[MimicTier, ...]:
    con = _connect()
    con.execute(
        f"CREATE VIEW omop_drug_exposure AS SELECT * FROM read_csv('{MIMIC}/drug_exposure.csv', types = {{'days_supply': 'BIGINT'}})"
    )
    con.execute(f"CREATE VIEW omop_drug_era AS SELECT * FROM read_csv('{MIMIC}/drug_era.csv')")
    con.execute(
        f"CREATE VIEW gib_ancestor AS SELECT * FROM read_parquet('{GIBLEED}/concept_ancestor.parquet')"
    )
    con.execute(
        f"CREATE VIEW gib_concept AS SELECT * FROM read_parquet('{GIBLEED}/concept.parquet')"
    )
    con.execute(f"""CREATE TABLE mapped_source AS SELECT d.drug_exposure_id, d.person_id,
        d.drug_concept_id, d.drug_exposure_start_date, {OMOP_END} AS end_date
        FROM omop_drug_exposure AS d
        WHERE d.drug_concept_id <> 0 AND coalesce(d.days_supply, 0) >= 0""")
    con.execute("""CREATE TABLE vocabulary_map AS
        SELECT DISTINCT drug_concept_id, drug_concept_id AS ingredient_id FROM mapped_source
        WHERE drug_concept_id IN (SELECT drug_concept_id FROM omop_drug_era)
        UNION
        SELECT DISTINCT x.drug_concept_id, c.concept_id FROM mapped_source AS x
        JOIN gib_ancestor AS a ON a.descendant_concept_id = x.drug_concept_id
        JOIN gib_concept AS c ON c.concept_id = a.ancestor_concept_id
            AND c.vocabulary_id = 'RxNorm' AND c.concept_class_id = 'Ingredient'""")
    # ingredients whose reference eras (same person) contain every exposure of the concept
    con.execute("""CREATE TABLE unique_inferred_map AS
        WITH n AS (SELECT drug_concept_id, count(*) AS n_exposures FROM mapped_source GROUP BY ALL),
        inside AS (
            SELECT x.drug_concept_id, r.drug_concept_id AS ingredient_id,
                   count(DISTINCT x.drug_exposure_id) AS n_inside
            FROM mapped_source AS x JOIN omop_drug_era AS r ON r.person_id = x.person_id
                AND r.drug_era_start_date <= x.drug_exposure_start_date
                AND r.drug_era_end_date >= x.end_date + 1
            GROUP BY ALL),
        candidates AS (SELECT i.* FROM inside AS i JOIN n USING (drug_concept_id)
                       WHERE i.n_inside = n.n_exposures)
        SELECT drug_concept_id, any_value(ingredient_id) AS ingredient_id FROM candidates
        WHERE drug_concept_id NOT IN (SELECT drug_concept_id FROM vocabulary_map)
        GROUP BY ALL HAVING count(*) = 1""")
    tiers = []
    for name, map_sql in (
        ("vocabulary", "SELECT * FROM vocabulary_map"),
        (
            "vocabulary + unique-inferred",
            "SELECT * FROM vocabulary_map UNION ALL SELECT * FROM unique_inferred_map",
        ),
    ):
        con.execute(f"CREATE OR REPLACE TABLE concept_map AS {map_sql}")
        _build_eras(
            con,
            """
            SELECT CAST(x.person_id AS VARCHAR) AS patient_id,
                   CAST(m.ingredient_id AS VARCHAR) AS ingredient,
                   CAST(x.drug_exposure_id AS VARCHAR) AS source_exposure_id,
                   'administered' AS origin,
                   x.drug_exposure_start_date AS start_date,
                   x.end_date
            FROM mapped_source AS x JOIN concept_map AS m USING (drug_concept_id)""",
        )
        con.execute("""CREATE OR REPLACE TABLE ref AS SELECT
            CAST(person_id AS VARCHAR) AS patient_id, CAST(drug_concept_id AS VARCHAR) AS ingredient,
            drug_era_start_date, drug_era_end_date, drug_exposure_count, gap_days
            FROM omop_drug_era
            WHERE CAST(drug_concept_id AS VARCHAR) IN (SELECT DISTINCT ingredient FROM exposures)""")
        con.execute("""CREATE OR REPLACE TABLE pairs AS
            SELECT r.patient_id, r.ingredient, r.n AS n_reference, coalesce(o.n, 0) AS n_mapped
            FROM (SELECT patient_id, ingredient, sum(drug_exposure_count) AS n FROM ref GROUP BY ALL) AS r
            LEFT JOIN (SELECT patient_id, ingredient, count(*) AS n FROM exposures GROUP BY ALL) AS o
                USING (patient_id, ingredient)""")
        rows = con.execute(f"""
            SELECT p.n_mapped = p.n_reference AS closed,
                   coalesce({EXACT}, false) AS exact,
                   CASE WHEN p.n_mapped = 0 THEN 'no exposure of the pair mapped'
                        WHEN p.n_mapped < p.n_reference THEN 'pair has fewer mapped exposures'
                        WHEN p.n_mapped > p.n_reference THEN 'pair has more mapped exposures'
                        ELSE 'closed pair' END AS pair_class
            FROM ref AS r JOIN pairs AS p USING (patient_id, ingredient)
            LEFT JOIN ours AS o ON o.patient_id = r.patient_id AND o.ingredient = r.ingredient
                AND o.era_start_date = r.drug_era_start_date""").fetchall()
        classes: dict[str, int] = {}
        for _closed, exact, cls in rows:
            if not exact:
                classes[cls] = classes.get(cls, 0) + 1
        tiers.append(
            MimicTier(
                name=name,
                n_concepts_mapped=con.execute(
                    "SELECT count(DISTINCT drug_concept_id) FROM concept_map"
                ).fetchone()[0],
                n_reference_reachable=len(rows),
                n_exact_reachable=sum(1 for r in rows if r[1]),
                n_reference_closed=sum(1 for r in rows if r[0]),
                n_exact_closed=sum(1 for r in rows if r[0] and r[1]),
                mismatch_classes=classes,
            )
        )
    con.close()
    return tuple(tiers)


# -- GiBleed -------------------------------------------------------------------------------


def test_gibleed_every_reference_era_is_rebuilt() -> None:
    _require(GIBLEED)
    g = gibleed()
    assert g.n_ours == g.n_reference == 52_508
    assert g.n_found == g.n_reference, "some reference eras start on a day no era of ours starts"


def test_gibleed_exact_match_rate() -> None:
    _require(GIBLEED)
    g = gibleed()
    rate = g.n_exact / g.n_reference
    assert g.n_exact == 52_495, f"exact {g.n_exact}/{g.n_reference} ({rate:.4%})"
    # as stored, gap_days is a date (days since 1970), not a day count
    assert g.n_exact_raw_gap <= 1


def test_gibleed_every_mismatch_is_a_same_day_zero_day_exposure() -> None:
    """Class 2: the reference mixes the zero-day exposure's end (= era start) and the real end
    between drug_era_end_date and gap_days; ours is the real end with gap 0."""
    _require(GIBLEED)
    g = gibleed()
    assert len(g.mismatches) == 13
    for (
        _p,
        _i,
        start,
        ref_end,
        gap_ref_date,
        our_end,
        our_gap,
        same_count,
        zero_day,
    ) in g.mismatches:
        assert zero_day and same_count and our_gap == 0
        # the reference ends the era (in its end date, its gap_days, or both) at the zero-day
        # exposure, i.e. on the era start; ours ends it at the other exposure's end
        assert {ref_end, gap_ref_date} <= {start, our_end} and start in {ref_end, gap_ref_date}


# -- MIMIC-IV demo ---------------------------------------------------------------------------


def test_mimic_closed_pairs_match_exactly() -> None:
    _require(MIMIC)
    _require(GIBLEED)  # its CONCEPT_ANCESTOR supplies part of the ingredient map
    vocab, inferred = mimic()
    assert vocab.n_reference_closed == 276 and vocab.n_exact_closed == 276
    assert inferred.n_reference_closed == 1_676 and inferred.n_exact_closed == 1_676


def test_mimic_every_other_mismatch_lacks_mapped_exposures() -> None:
    _require(MIMIC)
    _require(GIBLEED)
    for tier in mimic():
        assert set(tier.mismatch_classes) <= {
            "no exposure of the pair mapped",
            "pair has fewer mapped exposures",
        }, tier
    inferred = mimic()[1]
    assert inferred.n_exact_reachable == 2_042 and inferred.n_reference_reachable == 3_680


def report() -> str:
    g = gibleed()
    lines = [
        f"GiBleed: reference eras {g.n_reference}, ours {g.n_ours}, "
        f"found at their start {g.n_found}",
        f"  exact (decoded gap_days) {g.n_exact} = {100 * g.n_exact / g.n_reference:.3f} %; "
        f"exact with gap_days as stored {g.n_exact_raw_gap}",
        f"  mismatches: {len(g.mismatches)} (same-day zero-day exposure class)",
    ]
    patterns: dict[str, int] = {}
    for _p, _i, start, ref_end, gap_date, _oe, _og, _c, _z in g.mismatches:
        key = (
            f"stored end {'= start' if ref_end == start else '= real end'}, "
            f"gap_days from {'start' if gap_date == start else 'real end'}"
        )
        patterns[key] = patterns.get(key, 0) + 1
    lines += [f"    {k}: {v}" for k, v in sorted(patterns.items())]
    for t in mimic():
        lines.append(
            f"MIMIC [{t.name}]: concepts mapped {t.n_concepts_mapped}; reachable reference eras "
            f"{t.n_reference_reachable}, exact {t.n_exact_reachable} "
            f"({100 * t.n_exact_reachable / t.n_reference_reachable:.1f} %); closed-pair eras "
            f"{t.n_reference_closed}, exact {t.n_exact_closed}; mismatches {t.mismatch_classes}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
