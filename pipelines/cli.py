"""`txh`: the command-line interface.

Exit codes (documented in the README):
  0   ok
  1   ran, but the quality gate failed (a file was rejected or failed its checks)
  2   usage or configuration error
  70  internal error (a bug; the message and the log say where)
  75  another txh process holds the warehouse lock; try again later
Logs are JSON lines on stderr when stderr is not a terminal; stdout carries the summary (or the
JSON summary with --json) and query results.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines import logs
from pipelines.config import REPO_ROOT, Config, ConfigError, describe, load_config
from pipelines.warehouse import (
    EXIT_GATE_FAILED,
    EXIT_INTERNAL,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_USAGE,
    LockBusy,
    Warehouse,
)

app = typer.Typer(
    name="txh",
    help="treatment-history: turn clinical treatment records into refractory-status answers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
quality_app = typer.Typer(help="Quality suites (great-expectations).", no_args_is_help=True)
app.add_typer(quality_app, name="quality")

out = Console()  # stdout: summaries and results
err = Console(stderr=True)


class State:
    cfg: Config | None = None
    config_path: Path | None = None
    warehouse: str | None = None
    json_out: bool = False


state = State()


def cfg() -> Config:
    if state.cfg is None:
        state.cfg = load_config(state.config_path, warehouse=state.warehouse)
    return state.cfg


@app.callback()
def main_options(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML configuration file.", envvar="TXH_CONFIG"),
    ] = None,
    warehouse: Annotated[
        str | None,
        typer.Option(
            "--warehouse",
            "-w",
            help="Output directory (default data/warehouse; env TXH_WAREHOUSE).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    json_logs: Annotated[
        bool | None,
        typer.Option(
            "--json-logs/--console-logs", help="Log format (default: JSON unless stderr is a TTY)."
        ),
    ] = None,
) -> None:
    logs.configure(log_level, json_logs)
    state.config_path = config
    state.warehouse = warehouse
    state.cfg = None


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Callable[[str, float], None]]:
    """A rich progress display on a TTY; a no-op callback otherwise (cron, CI, pipes)."""
    if not (enabled and err.is_terminal):
        yield lambda stage, frac: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as prog:
        task = prog.add_task("starting", total=1.0)

        def update(stage: str, frac: float) -> None:
            prog.update(task, description=stage, completed=max(0.0, min(1.0, frac)))

        yield update


def _print_ingest_summary(result: Any) -> None:
    if state.json_out:
        return
    t = Table(title=f"ingest batch {result.batch_id}" if result.batch_id else "ingest: nothing new")
    for col in ("file", "status", "read", "accepted", "quarantined", "duplicates", "reconciled"):
        t.add_column(
            col,
            justify="right" if col in ("read", "accepted", "quarantined", "duplicates") else "left",
        )
    for f in result.files:
        t.add_row(
            Path(f.path).name if len(f.path) > 60 else f.path,
            f.status,
            str(f.rows_read),
            str(f.accepted),
            str(f.quarantined),
            str(f.duplicates),
            "yes" if f.reconciled else "NO",
        )
    t.add_row(
        "total",
        "",
        str(result.rows_read),
        str(result.accepted),
        str(result.quarantined),
        str(result.duplicates),
        "yes" if result.reconciled else "NO",
        style="bold",
    )
    out.print(t)
    for f in result.files:
        if f.message and f.status not in ("already_ingested",):
            out.print(f"[yellow]{f.path}[/]: {f.message}", soft_wrap=True)
    if result.data_docs_path:
        out.print(f"data docs: {result.data_docs_path}", soft_wrap=True)


def ingest_summary_dict(result: Any) -> dict[str, Any]:
    return {
        "batch_id": result.batch_id,
        "rows_read": result.rows_read,
        "accepted": result.accepted,
        "quarantined": result.quarantined,
        "duplicates": result.duplicates,
        "reconciled": result.reconciled,
        "gate_passed": result.gate_passed,
        "files": [f.to_dict() for f in result.files],
        "manifest": str(result.manifest_path) if result.manifest_path else None,
        "data_docs": str(result.data_docs_path) if result.data_docs_path else None,
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
    }


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories (recursive).")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="canonical (CSV/Parquet/JSON Lines in the event contract), "
            "fhir, omop, sdtm or synthea.",
        ),
    ] = "canonical",
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the warehouse lock.")] = 0.0,
) -> None:
    """Validate input files and append them to the event log as one atomic batch."""
    from pipelines.ingest import ingest as do_ingest

    state.json_out = json_out
    c = _with_lock_wait(cfg(), wait)
    with progress_bar() as prog:
        if fmt == "canonical":
            result = do_ingest(paths, c, progress=prog)
        else:
            from pipelines.adapters import ingest_source

            result = ingest_source(fmt, paths, c, progress=prog)
    if json_out:
        out.print_json(json.dumps(ingest_summary_dict(result), default=str))
    _print_ingest_summary(result)
    raise typer.Exit(EXIT_OK if result.gate_passed else EXIT_GATE_FAILED)


def _with_lock_wait(c: Config, wait: float) -> Config:
    if wait:
        import dataclasses

        return dataclasses.replace(c, run=dataclasses.replace(c.run, lock_timeout_seconds=wait))
    return c


def _parse_as_of(value: str | None) -> Any:
    if value is None:
        return None
    from datetime import datetime

    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise ConfigError(f"--as-of: not an ISO date or timestamp: {value!r}") from e
    if ts.tzinfo is not None:
        from datetime import UTC

        ts = ts.astimezone(UTC).replace(tzinfo=None)
    if len(value) == 10:  # a bare date means the end of that day
        ts = ts.replace(hour=23, minute=59, second=59)
    return ts


@app.command()
def build(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Replay only events recorded (and occurred) at or before this ISO date or "
            "timestamp (UTC; a bare date means its end). Default: now.",
        ),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Rebuild everything (no incremental).")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Write the rendered SQL with its parameters for review; build nothing.",
        ),
    ] = False,
    until_batch: Annotated[
        int | None,
        typer.Option(
            "--until-batch",
            help="Use only log batches up to this id: reproduces a past build "
            "exactly (see its run record) even after backfilled records arrived. The "
            "reproduction is written under builds/ but not published (the warehouse and the "
            "status history keep the current build) unless --publish is given.",
        ),
    ] = None,
    publish: Annotated[
        bool | None,
        typer.Option(
            "--publish/--no-publish",
            help="Publish the build (default: yes, except for --until-batch reproductions).",
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the warehouse lock.")] = 0.0,
) -> None:
    """Replay the event log (as of a moment) into the derived tables and publish them."""
    from pipelines.build.runner import build as do_build
    from pipelines.build.runner import render_dry_run

    c = _with_lock_wait(cfg(), wait)
    ts = _parse_as_of(as_of)
    if dry_run:
        from datetime import UTC, datetime

        target = Warehouse.from_config(c).root / "dry-run"
        files = render_dry_run(c, ts or datetime.now(UTC).replace(tzinfo=None), target)
        out.print(f"wrote {len(files)} files to {target}")
        return
    with progress_bar() as prog:
        res = do_build(
            c,
            as_of=ts,
            full=full,
            progress=prog,
            until_batch=until_batch,
            publish=publish,
        )
    summary = res.summary()
    if json_out:
        out.print_json(json.dumps(summary))
        return
    t = Table(
        title=f"build {res.build_id} ({res.mode}) as of {res.as_of:%Y-%m-%d %H:%M:%S}, "
        f"log batches up to {res.max_batch_id}"
    )
    for col in ("table", "rows", "patients", "seconds"):
        t.add_column(col, justify="left" if col == "table" else "right")
    for s in res.steps:
        t.add_row(
            s.name, str(s.rows), "" if s.patients is None else str(s.patients), f"{s.seconds:.2f}"
        )
    out.print(t)
    where = (
        f"warehouse: {Warehouse.from_config(c).duckdb_path}"
        if res.published
        else f"not published; its tables: {res.output_dir}"
    )
    out.print(f"{res.reason}; {where}", soft_wrap=True)


@app.command("run")
def run_cmd(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="Inputs to ingest (default: run.inputs, the bundled sample)."),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="As-of moment for the build (default now).")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Rebuild everything.")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the run record (JSON) on stdout.")
    ] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the warehouse lock.")] = 0.0,
) -> None:
    """The scheduled batch job: ingest what is new, build, publish, report."""
    from pipelines.run import run as do_run

    c = _with_lock_wait(cfg(), wait)
    with progress_bar() as prog:
        res = do_run(c, inputs=inputs or None, as_of=_parse_as_of(as_of), full=full, progress=prog)
    rec = res.summary()
    if json_out:
        out.print_json(json.dumps(rec, default=str))
    else:
        state.json_out = False
        if res.ingest is not None:
            _print_ingest_summary(res.ingest)
        b = rec.get("build")
        if b:
            out.print(
                f"build {b['build_id']}: {b['mode']} ({b['reason']}), {b['seconds']} s",
                soft_wrap=True,
            )
        for name, step in rec.get("post_build", {}).items():
            out.print(f"{name}: {step.get('summary', '')}", soft_wrap=True)
        out.print(f"run {res.run_id}: {res.status}; record {res.record_path}", soft_wrap=True)
        out.print(f"warehouse: {Warehouse.from_config(c).duckdb_path}", soft_wrap=True)
    raise typer.Exit(res.exit_code)


@app.command()
def query(
    sql: Annotated[
        str,
        typer.Argument(
            help="SQL over the warehouse views, e.g. "
            '"SELECT status, count(*) FROM refractory_status GROUP BY 1"'
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | csv | json")] = "table",
    limit: Annotated[int, typer.Option(help="Rows shown in table format.")] = 200,
) -> None:
    """Run a read-only SQL query against the published warehouse and print the result."""
    import duckdb

    wh = Warehouse.from_config(cfg())
    if not wh.duckdb_path.exists():
        raise ConfigError(f"no published warehouse at {wh.duckdb_path}; run `txh run` first")
    con = duckdb.connect(str(wh.duckdb_path), read_only=True)
    con.execute("SET enable_progress_bar = false")
    try:
        rel = con.execute(sql)
        cols = [d[0] for d in rel.description] if rel.description else []
        rows = rel.fetchall()
    except duckdb.Error as e:
        raise ConfigError(f"query failed: {str(e).splitlines()[0]}") from e
    finally:
        con.close()
    if fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    elif fmt == "json":
        out.print_json(json.dumps([dict(zip(cols, r, strict=True)) for r in rows], default=str))
    else:
        t = Table(show_lines=False)
        for c in cols:
            t.add_column(c)
        for r in rows[:limit]:
            t.add_row(*["" if v is None else str(v) for v in r])
        out.print(t)
        if len(rows) > limit:
            out.print(f"... {len(rows) - limit} more rows (use --limit or --format csv)")


@app.command()
def report(
    out_path: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output file: .csv or .parquet (patient or summary report), .html (--html).",
        ),
    ],
    condition: Annotated[
        str | None,
        typer.Option(
            "--condition",
            help="Condition (rule pack) or `all`. Required for the patient report; "
            "--summary and --html default to all.",
        ),
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", help="Patient report: only these statuses (repeat or comma-separate)."
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Report as of this ISO date or timestamp: reads the published build if "
            "it has that date, else builds one (unpublished) for the report.",
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", "-f", help="csv | parquet (default: from the --out suffix)."),
    ] = None,
    pseudonymize: Annotated[
        bool,
        typer.Option(
            "--pseudonymize",
            help="Replace patient ids by keyed pseudonyms (px_...); the key is "
            "read from $TXH_PSEUDONYM_KEY (report.pseudonymize_key_env).",
        ),
    ] = False,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="The cohort summary (statuses, outcome classes, sensitivity) with "
            "small cells suppressed, instead of one row per patient.",
        ),
    ] = False,
    html: Annotated[
        bool,
        typer.Option(
            "--html",
            help="The self-contained HTML cohort report (charts, timelines, data quality).",
        ),
    ] = False,
    patients: Annotated[
        int | None,
        typer.Option(
            "--patients",
            help="HTML: refractory / pseudo-refractory patients per condition in the "
            "timelines (default 20).",
        ),
    ] = None,
    show_ids: Annotated[
        bool,
        typer.Option(
            "--show-ids",
            help="HTML: label patients by id (default: pseudonym when the key is set, "
            "else #1..#N).",
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the warehouse lock (--as-of builds only).")
    ] = 0.0,
) -> None:
    """Export a patient report, the cohort summary or the HTML cohort report (docs/reports.md)."""
    from pipelines.report import api

    if summary and html:
        raise ConfigError("--summary and --html exclude each other")
    if status and (summary or html):
        raise ConfigError("--status applies to the patient report only")
    if not html and (patients is not None or show_ids):
        raise ConfigError("--patients and --show-ids apply to --html only")
    if html and fmt not in (None, "html"):
        raise ConfigError("--html writes HTML; leave out --format")
    c = _with_lock_wait(cfg(), wait)
    ts = _parse_as_of(as_of)
    if html:
        res = api.write_html_report(
            c,
            out=out_path,
            condition=condition,
            as_of=ts,
            n_patients=20 if patients is None else patients,
            show_ids=show_ids,
            pseudonymize=pseudonymize,
        )
    elif summary:
        res = api.write_summary_report(c, condition=condition, out=out_path, fmt=fmt, as_of=ts)
    else:
        res = api.write_patient_report(
            c,
            condition=condition,
            out=out_path,
            fmt=fmt,
            statuses=status,
            as_of=ts,
            pseudonymize=pseudonymize,
        )
    if json_out:
        out.print_json(json.dumps(res.to_dict()))
        return
    what = f"{res.rows} rows" if res.rows is not None else "report"
    extra = [
        f"build {res.build_id}" if res.build_id else "no build",
        f"as of {res.as_of}" if res.as_of else "",
    ]
    if res.pseudonymized:
        extra.append("pseudonymised")
    if res.suppressed_cells:
        extra.append(f"{res.suppressed_cells} cells suppressed")
    out.print(f"wrote {what} to {res.path} ({', '.join(e for e in extra if e)})", soft_wrap=True)


@app.command()
def generate(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path(
        "data/generated"
    ),
    patients: Annotated[int | None, typer.Option(help="Number of patients.")] = None,
    events: Annotated[
        int | None, typer.Option(help="Target number of events (sizes the cohort).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 42,
    deliveries: Annotated[int, typer.Option(help="Number of delivery files.")] = 6,
    final_delivery_fraction: Annotated[
        float | None,
        typer.Option(
            help="Make the last delivery about this fraction of all events (incremental benchmarks)."
        ),
    ] = None,
) -> None:
    """Generate a synthetic cohort in the canonical format, with a hidden-truth folder."""
    from pipelines.generate import generate as do_generate

    if patients is None and events is None:
        patients = 300
    with progress_bar() as prog:
        res = do_generate(
            out_dir,
            n_patients=patients,
            n_events=events,
            seed=seed,
            n_deliveries=deliveries,
            final_delivery_fraction=final_delivery_fraction,
            progress=prog,
        )
    out.print(
        f"generated {getattr(res, 'n_events', '?')} events for "
        f"{getattr(res, 'n_patients', '?')} patients in {out_dir}"
    )


@app.command("config")
def config_cmd(
    as_yaml: Annotated[
        bool, typer.Option("--yaml", help="Print the resolved configuration as YAML.")
    ] = False,
) -> None:
    """Show every parameter with its value and documentation."""
    c = cfg()
    if as_yaml:
        import yaml

        out.print(yaml.safe_dump(c.to_dict(), sort_keys=False), end="")
        return
    t = Table(title="treatment-history configuration")
    t.add_column("parameter")
    t.add_column("value")
    t.add_column("meaning")
    for name, value, doc in describe(c):
        t.add_row(name, str(value), doc)
    out.print(t)


@quality_app.command("suites")
def quality_suites(
    write: Annotated[bool, typer.Option("--write", help="Rewrite quality/suites/*.json.")] = False,
) -> None:
    """Check (or rewrite) the committed suites against the contract and rules."""
    from quality.suites import SUITES_DIR, render_default_suites, write_default_suites

    if write:
        for p in write_default_suites():
            out.print(f"wrote {p.relative_to(REPO_ROOT)}")
        return
    stale = [
        name
        for name, text in render_default_suites().items()
        if not (SUITES_DIR / name).exists() or (SUITES_DIR / name).read_text() != text
    ]
    if stale:
        err.print(f"out of date: {', '.join(stale)} (run `txh quality suites --write`)")
        raise typer.Exit(EXIT_GATE_FAILED)
    out.print("quality suites are up to date with the contract and quality/rules.yaml")


@app.command()
def docs() -> None:
    """Regenerate docs/ from schemas/ (event contract) and the table sidecars (data dictionary)."""
    from pipelines.docs import write_docs

    for p in write_docs():
        out.print(f"wrote {p.relative_to(REPO_ROOT)}")


@app.command()
def status(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Batches in the event log with their counts."""
    wh = Warehouse.from_config(cfg())
    ms = wh.committed_manifests()
    if json_out:
        out.print_json(
            json.dumps(
                [
                    {"batch_id": m["batch_id"], **m["totals"], "ingested_at": m["ingested_at"]}
                    for m in ms
                ]
            )
        )
        return
    t = Table(title=f"event log in {wh.root}")
    for col in ("batch", "ingested_at", "read", "accepted", "quarantined", "duplicates", "gate"):
        t.add_column(col)
    for m in ms:
        tt = m["totals"]
        t.add_row(
            str(m["batch_id"]),
            m["ingested_at"],
            str(tt["rows_read"]),
            str(tt["accepted"]),
            str(tt["quarantined"]),
            str(tt["duplicates"]),
            "pass" if m["gate_passed"] else "FAIL",
        )
    out.print(t)


def main(argv: list[str] | None = None) -> None:
    """Console entry point with the documented exit codes."""
    from typer._click import exceptions as click_exc  # typer >= 0.26 vendors click

    try:
        rc = app(args=argv, standalone_mode=False)
    except click_exc.ClickException as e:  # usage errors
        e.show()
        sys.exit(EXIT_USAGE)
    except BrokenPipeError:  # stdout closed early (e.g. `txh ... | head`)
        sys.exit(EXIT_OK)
    except ConfigError as e:
        err.print(f"[red]configuration error:[/] {e}")
        sys.exit(EXIT_USAGE)
    except FileNotFoundError as e:
        err.print(f"[red]error:[/] {e}")
        sys.exit(EXIT_USAGE)
    except LockBusy as e:
        err.print(f"[yellow]busy:[/] {e}")
        sys.exit(EXIT_LOCKED)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:
        logs.get_logger("txh").exception("internal_error", error_type=type(e).__name__)
        err.print(f"[red]internal error:[/] {type(e).__name__}: {e}")
        sys.exit(EXIT_INTERNAL)
    sys.exit(rc if isinstance(rc, int) else EXIT_OK)


if __name__ == "__main__":  # pragma: no cover
    main()
