"""Agreement of a build with a generated cohort's hidden truth (issue 4: "the derived status
agrees with the generator's hidden truth; report the confusion matrix per condition").

Compares, in DuckDB:
  * patients: truth/patients.csv ``expected_status`` vs ``refractory_status.status`` (the row with
    the build's as-of date) per patient x condition, plus ``misdiagnosis_suspected`` vs the
    ``misdiagnosis_suspected`` flag of ``expected_flags``;
  * trials:   truth/trials.csv ``expected_outcome`` vs ``trial_outcomes.outcome_class``, matched
    on patient, condition and start date.
A truth row without a derived row counts as derived status ``(missing)``; the patient-level
comparison only covers the conditions of the truth file.

Usage: ``python -m pipelines.generate.agreement --build DIR --truth DIR`` (a build directory
under ``<warehouse>/builds/`` or the warehouse itself: its current build is used).
Truth dates are the end of follow-up of the generator; build the cohort ``--as-of`` that date
(``manifest.json`` ``follow_up_end``, 2025-01-31 by default) for a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipelines.build.layout import table_relation


@dataclass
class Agreement:
    patients: int
    patients_agree: int
    trials: int
    trials_agree: int
    misdiagnosis_agree: int
    # condition -> expected -> derived -> n
    confusion: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    trial_confusion: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    disagreements: list[dict[str, str]] = field(default_factory=list)

    @property
    def patient_rate(self) -> float:
        return self.patients_agree / self.patients if self.patients else float("nan")

    @property
    def trial_rate(self) -> float:
        return self.trials_agree / self.trials if self.trials else float("nan")


def _build_dir(path: Path) -> Path:
    """A build directory, or the current build of a warehouse."""
    if (path / "build.json").exists() or (path / "refractory_status.parquet").exists():
        return path
    from pipelines.build.runner import read_current
    from pipelines.warehouse import Warehouse

    wh = Warehouse(path)
    current = read_current(wh)
    if current is None:
        raise FileNotFoundError(f"no build under {path}")
    return wh.builds_dir / current["build_id"]


def compare(build: Path, truth: Path) -> Agreement:
    b = _build_dir(Path(build))
    t = Path(truth)
    con = duckdb.connect()
    con.execute(f"""
        CREATE VIEW status AS SELECT * FROM {table_relation(b, "refractory_status")};
        CREATE VIEW outcomes AS SELECT * FROM {table_relation(b, "trial_outcomes")};
        CREATE VIEW truth_p AS SELECT * FROM read_csv('{t / "patients.csv"}', all_varchar = true);
        CREATE VIEW truth_t AS SELECT * FROM read_csv('{t / "trials.csv"}', all_varchar = true);
        CREATE TABLE pat AS
            SELECT tp.patient_id, tp.condition, tp.archetype, tp.expected_status,
                   coalesce(s.status, '(missing)') AS derived_status,
                   coalesce(tp.expected_flags, '') LIKE '%misdiagnosis_suspected%' AS expected_misdx,
                   coalesce(s.misdiagnosis_suspected, false) AS derived_misdx,
                   s.evidence
            FROM truth_p AS tp
            LEFT JOIN (SELECT * FROM status
                       QUALIFY as_of_date = max(as_of_date) OVER ()) AS s
                ON s.patient_id = tp.patient_id AND s.condition = tp.condition;
        CREATE TABLE tri AS
            SELECT tt.patient_id, tt.condition, tt.trial_no, tt.regimen, tt.expected_outcome,
                   coalesce(o.outcome_class, '(missing)') AS derived_outcome, o.rule_fired
            FROM truth_t AS tt
            LEFT JOIN outcomes AS o
                ON o.patient_id = tt.patient_id AND o.condition = tt.condition
                AND o.start_date = cast(tt.start_date AS DATE);
    """)
    n, agree, misdx = con.execute("""
        SELECT count(*), count(*) FILTER (expected_status = derived_status),
               count(*) FILTER (expected_misdx = derived_misdx) FROM pat""").fetchone()
    nt, agree_t = con.execute(
        "SELECT count(*), count(*) FILTER (expected_outcome = derived_outcome) FROM tri"
    ).fetchone()
    res = Agreement(n, agree, nt, agree_t, misdx)
    for cond, exp, der, k in con.execute("""
            SELECT condition, expected_status, derived_status, count(*) FROM pat
            GROUP BY ALL ORDER BY ALL""").fetchall():
        res.confusion.setdefault(cond, {}).setdefault(exp, {})[der] = k
    for cond, exp, der, k in con.execute("""
            SELECT condition, expected_outcome, derived_outcome, count(*) FROM tri
            GROUP BY ALL ORDER BY ALL""").fetchall():
        res.trial_confusion.setdefault(cond, {}).setdefault(exp, {})[der] = k
    cols = ["patient_id", "condition", "archetype", "expected_status", "derived_status", "evidence"]
    for row in con.execute(f"""
            SELECT {", ".join(cols)} FROM pat
            WHERE expected_status <> derived_status OR expected_misdx <> derived_misdx
            ORDER BY condition, patient_id""").fetchall():
        res.disagreements.append(dict(zip(cols, map(str, row), strict=True)))
    con.close()
    return res


def markdown(res: Agreement) -> str:
    """Confusion matrices per condition (rows: truth, columns: derived)."""
    out = [
        f"Patients: {res.patients_agree}/{res.patients} statuses agree "
        f"({res.patient_rate:.1%}); misdiagnosis flag agrees for {res.misdiagnosis_agree}. "
        f"Trials: {res.trials_agree}/{res.trials} outcome classes agree ({res.trial_rate:.1%}).",
        "",
    ]
    for cond, m in res.confusion.items():
        derived = sorted({d for row in m.values() for d in row})
        out.append(f"**{cond}** (rows: truth, columns: derived)")
        out.append("")
        out.append("| truth \\ derived | " + " | ".join(derived) + " |")
        out.append("|---|" + "---|" * len(derived))
        for exp, row in m.items():
            out.append(f"| {exp} | " + " | ".join(str(row.get(d, "")) for d in derived) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True, type=Path, help="build directory or warehouse")
    ap.add_argument("--truth", required=True, type=Path, help="the cohort's truth/ folder")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = compare(args.build, args.truth)
    if args.json:
        print(json.dumps(res.__dict__, indent=1, default=str))
    else:
        print(markdown(res))
        for d in res.disagreements[:50]:
            print(d)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
