"""Reports: patient and cohort-summary exports (CSV/Parquet) and the HTML cohort report.

- ``api``: the entry points of `txh report` (and of the post-build step);
- ``source``: which build a report reads (the published one, or one built as of a date);
- ``patients`` / ``summary``: the two tabular reports and their fixed columns;
- ``pseudonym``: keyed pseudonyms (HMAC-SHA256) for exported patient ids;
- ``suppress``: small-cell suppression with complementary suppression and an audit;
- ``export``: deterministic, atomic CSV/Parquet/HTML writing;
- ``html`` / ``figures`` / ``ingest_quality``: the self-contained HTML cohort report;
- ``post_build``: the `txh run` step writing <warehouse>/reports/ (registered on import by
  pipelines/run.py).

Pseudonymisation and suppression happen here, at export, only: warehouse tables keep exact
values and real identifiers. User documentation: docs/reports.md.
"""
