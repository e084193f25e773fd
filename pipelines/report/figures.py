"""Plotly figures of the HTML cohort report (built from plain rows; no data access here).

Colours: statuses and trial outcome classes have one colour each across every figure, chosen so
that efficacy outcomes read green (response) to red (non-response) and look-alikes (intolerant,
non-adherent, inadequate) stand apart in purple, pink and mustard.
"""

from __future__ import annotations

import textwrap
from collections import Counter, defaultdict
from datetime import date
from html import escape
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pipelines.report.source import EXPLANATIONS, STATUSES

STATUS_COLOURS = {
    "refractory": "#c0392b",
    "pseudo_refractory": "#e67e22",
    "at_risk": "#f4c542",
    "partial_responder": "#7fb3d5",
    "responder": "#27ae60",
    "undetermined": "#bdc3c7",
}
OUTCOME_COLOURS = {
    "response": "#1a9850",
    "partial_response": "#a6d96a",
    "non_response": "#d73027",
    "relapse_after_response": "#fc8d59",
    "intolerant": "#8e44ad",
    "non_adherent": "#e377c2",
    "inadequate_trial": "#d4ac0d",
    "insufficient_followup": "#b0b0b0",
    "inappropriate": "#5d6d7e",
    "not_judged": "#85c1e9",
}
EXPLANATION_COLOURS = {
    "true_non_response": "#c0392b",
    "non_adherence": "#e377c2",
    "intolerance": "#8e44ad",
    "inadequate_trial": "#d4ac0d",
    "measurement_artefact": "#5dade2",
}
# response markers: category -> (symbol, colour, legend name)
RESPONSE_MARKERS = {
    "complete": ("circle", "#1a9850", "complete response"),
    "partial": ("circle", "#a6d96a", "partial response"),
    "minimal": ("circle-open", "#1a9850", "minimal response"),
    "stable": ("diamond", "#7f8c8d", "stable disease"),
    "progression": ("x", "#b03a2e", "progression"),
}
EVENT_MARKERS = {
    "transplant": ("star", "#1f3a93", "autologous SCT"),
    "diagnosis_change": ("diamond-tall", "#e67e22", "diagnosis revised/refuted"),
    "death": ("square", "#17202a", "death"),
}
# efficacy outcomes first, then the look-alikes, then the non-informative classes
OUTCOME_ORDER = (
    "response",
    "partial_response",
    "non_response",
    "relapse_after_response",
    "intolerant",
    "non_adherent",
    "inadequate_trial",
    "insufficient_followup",
    "inappropriate",
    "not_judged",
)
PLOT_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
}
_LAYOUT = {
    "template": "plotly_white",
    "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
    "hoverlabel": {"align": "left"},
}


def nice(s: str) -> str:
    return s.replace("_", " ")


def _wrap(s: str, width: int = 90) -> str:
    return "<br>".join(escape(line) for line in textwrap.wrap(s, width)) if s else ""


def status_split(
    counts: dict[str, dict[str, int]], explained: dict[str, dict[str, int]]
) -> go.Figure:
    """Stacked 100% bars per condition: patients by status and, beside them, apparent
    non-responders by explanation."""
    conds = sorted(counts)
    has_expl = any(sum(explained.get(c, {}).values()) for c in conds)
    fig = make_subplots(
        rows=1,
        cols=2 if has_expl else 1,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        column_widths=[0.55, 0.45] if has_expl else None,
        subplot_titles=("Patients by status", "Apparent non-responders: why")
        if has_expl
        else ("Patients by status",),
    )

    def bars(
        data: dict[str, dict[str, int]], domain: tuple[str, ...], colours: dict[str, str], col: int
    ) -> None:
        cats = [c for c in domain if any(data.get(k, {}).get(c) for k in conds)]
        for cat in cats:
            ns = [data.get(k, {}).get(cat, 0) for k in conds]
            tot = [sum(data.get(k, {}).values()) or 1 for k in conds]
            fig.add_trace(
                go.Bar(
                    y=[nice(k) for k in conds],
                    x=[n / t for n, t in zip(ns, tot, strict=True)],
                    orientation="h",
                    name=nice(cat),
                    marker_color=colours.get(cat, "#999"),
                    legendgroup=f"c{col}",
                    text=[str(n) if n else "" for n in ns],
                    textposition="inside",
                    insidetextanchor="middle",
                    customdata=[[n, t] for n, t in zip(ns, tot, strict=True)],
                    hovertemplate=f"<b>%{{y}}</b><br>{escape(nice(cat))}: %{{customdata[0]}} of "
                    "%{customdata[1]} (%{x:.0%})<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(tickformat=".0%", range=[0, 1], row=1, col=col)

    bars(counts, STATUSES, STATUS_COLOURS, 1)
    if has_expl:
        bars(explained, EXPLANATIONS, EXPLANATION_COLOURS, 2)
    fig.update_layout(
        **_LAYOUT,
        barmode="stack",
        height=150 + 44 * len(conds),
        margin={"l": 20, "r": 20, "t": 56, "b": 40},
        legend={
            "orientation": "h",
            "y": -0.12 - 0.5 / max(len(conds), 1),
            "x": 0,
            "traceorder": "normal",
        },
        uniformtext={"minsize": 9, "mode": "hide"},
    )
    fig.update_yaxes(autorange="reversed", automargin=True)
    return fig


def _short(regimen: str, n: int = 24) -> str:
    """A node label: long combinations as 4-letter stems (bort+dexa+lena), then truncated."""
    if len(regimen) > n and "+" in regimen:
        regimen = "+".join(part[:4] for part in regimen.split("+"))
    return regimen if len(regimen) <= n else regimen[: n - 1] + "…"


def pathways_sankey(
    paths: list[dict[str, Any]], unit: str, max_steps: int = 4, top_k: int = 5
) -> go.Figure:
    """Sankey of treatment pathways: the regimens of the first ``max_steps`` trials (or lines)
    of each patient, ending in the patient's status. ``paths``: one dict per distinct pathway
    with ``regimens``, ``outcomes`` (lists, in order), ``status`` and ``n`` (patients). Per
    step, regimens beyond the ``top_k`` most frequent are pooled as "other"; links are coloured
    by the outcome of the trial they leave."""
    prefix = "L" if unit == "line" else "T"
    freq: list[Counter[str]] = [Counter() for _ in range(max_steps)]
    for p in paths:
        for i, reg in enumerate(p["regimens"][:max_steps]):
            freq[i][reg] += p["n"]
    keep = [{r for r, _ in sorted(f.items(), key=lambda x: (-x[1], x[0]))[:top_k]} for f in freq]
    nodes: dict[tuple[int, str, str], int] = {}
    labels: list[str] = []
    full: list[str] = []
    colours: list[str] = []
    xs: list[float] = []
    palette = [
        "#4e79a7",
        "#59a14f",
        "#9c755f",
        "#76b7b2",
        "#b07aa1",
        "#edc948",
        "#ff9da7",
        "#86bcb6",
        "#bab0ac",
        "#d37295",
    ]
    reg_colour: dict[str, str] = {}
    n_cols = 1 + max((min(len(p["regimens"]), max_steps) for p in paths), default=0)

    def node(step: int, name: str, is_status: bool = False) -> int:
        k = (step, "status" if is_status else "regimen", name)
        if k not in nodes:
            nodes[k] = len(labels)
            if is_status:
                labels.append(nice(name))
                full.append(f"status: {nice(name)}")
                colours.append(STATUS_COLOURS.get(name, "#999"))
                xs.append(0.999)
            else:
                labels.append(f"{prefix}{step + 1}: {_short(name)}")
                full.append(f"{unit} {step + 1}: {name}")
                if name not in reg_colour:
                    reg_colour[name] = (
                        "#9e9e9e"
                        if name == "other"
                        else palette[len([r for r in reg_colour if r != "other"]) % len(palette)]
                    )
                colours.append(reg_colour[name])
                xs.append(0.001 + 0.998 * step / max(n_cols - 1, 1))
        return nodes[k]

    links: Counter[tuple[int, int, str]] = Counter()
    for p in sorted(
        paths,
        key=lambda p: (
            STATUSES.index(p["status"]) if p["status"] in STATUSES else 99,
            p["regimens"],
            -p["n"],
        ),
    ):
        regs = [r if r in keep[i] else "other" for i, r in enumerate(p["regimens"][:max_steps])]
        outs = list(p["outcomes"][:max_steps])
        for i, reg in enumerate(regs):
            src = node(i, reg)
            tgt = (
                node(i + 1, regs[i + 1])
                if i + 1 < len(regs)
                else node(max_steps, p["status"], is_status=True)
            )
            links[(src, tgt, outs[i] or "not_judged")] += p["n"]
    order = sorted(
        links,
        key=lambda k: (k[0], k[1], OUTCOME_ORDER.index(k[2]) if k[2] in OUTCOME_ORDER else 99),
    )
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={
                "label": labels,
                "color": colours,
                "pad": 12,
                "thickness": 14,
                "x": xs,
                "customdata": full,
                "line": {"color": "rgba(0,0,0,0.25)", "width": 0.5},
                "hovertemplate": "%{customdata}: %{value} patients<extra></extra>",
            },
            link={
                "source": [k[0] for k in order],
                "target": [k[1] for k in order],
                "value": [links[k] for k in order],
                "color": [rgba(OUTCOME_COLOURS.get(k[2], "#999"), 0.5) for k in order],
                "customdata": [nice(k[2]) for k in order],
                "hovertemplate": "%{source.customdata} → %{target.customdata}<br>trial outcome: "
                "%{customdata}<br>%{value} patients<extra></extra>",
            },
        )
    )
    per_col = max(Counter(k[0] for k in nodes).values(), default=1)
    fig.update_layout(
        **_LAYOUT, height=max(300, 44 * per_col + 120), margin={"l": 10, "r": 10, "t": 26, "b": 10}
    )
    return fig


def rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _tracks(intervals: list[tuple[int, int]]) -> tuple[list[int], int]:
    """Greedy interval packing: a track per interval so that overlapping ones sit apart."""
    ends: list[int] = []
    out = []
    for s, e in intervals:
        for t, end in enumerate(ends):
            if s > end:
                ends[t] = e
                out.append(t)
                break
        else:
            ends.append(e)
            out.append(len(ends) - 1)
    return out, max(len(ends), 1)


def swimmer(lanes: list[dict[str, Any]], show_dates: bool) -> go.Figure:
    """One lane per patient: trials as bars coloured by outcome class (overlapping trials
    side by side), lines of therapy as grey bands, response assessments, transplant, diagnosis
    change and death as markers; x = days since the patient's first trial (or line) start."""
    bars: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    marks: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    band: dict[str, list[Any]] = defaultdict(list)
    ticks, ticktext = [], []
    for y, lane in enumerate(lanes):
        origin: date = lane["origin"]

        def day(d: date | None, origin: date = origin) -> int | None:
            return None if d is None else (d - origin).days

        ticks.append(y)
        colour = STATUS_COLOURS.get(lane["status"], "#555")
        ticktext.append(f"{escape(lane['label'])} <span style='color:{colour}'>■</span>")
        for ln in lane["lines"]:
            s, e = day(ln["start_date"]), day(ln["end_date"] or ln["start_date"])
            band["y"].append(y)
            band["base"].append(s)
            band["x"].append(e - s + 1)
            band["text"].append(f"L{ln['line_number']}")
            band["hover"].append(f"line {ln['line_number']}: {escape(ln['regimen_key'] or '')}")
        trials = sorted(lane["trials"], key=lambda t: (t["start_date"], t["trial_seq"]))
        spans = [(day(t["start_date"]), day(t["end_date"] or t["start_date"])) for t in trials]
        track, n_tracks = _tracks(spans)
        width = 0.56 / n_tracks
        for t, (s, e), k in zip(trials, spans, track, strict=True):
            oc = t["outcome_class"] or "not_judged"
            b = bars[oc]
            b["y"].append(y - 0.28 + width * (k + 0.5))
            b["base"].append(s)
            b["x"].append(e - s + 1)
            b["width"].append(width * 0.92)
            when = f"{t['start_date']} .. {t['end_date']}" if show_dates else f"day {s} .. {e}"
            pdc = f"PDC {t['pdc']:.2f}" if t.get("pdc") is not None else "PDC n/a"
            best = t.get("best_response_original") or "none"
            b["hover"].append(
                f"<b>#{t['trial_seq']} {escape(t['regimen_key'] or '')}</b> "
                f"({escape(nice(oc))})<br>{when}{' (ongoing)' if t['is_ongoing'] else ''}"
                f"<br>{pdc} · best response: {escape(str(best))}"
                f"<br>{_wrap(t.get('rule_fired') or '')}"
            )
            if t["is_ongoing"]:
                m = marks["ongoing"]
                m["x"].append(e + 1)
                m["y"].append(y - 0.28 + width * (k + 0.5))
                m["hover"].append("ongoing at the as-of date")
        for r in lane["responses"]:
            cat = r["response_category"]
            if cat not in RESPONSE_MARKERS:
                continue
            m = marks[cat]
            m["x"].append(day(r["assessment_date"]))
            m["y"].append(y)
            m["hover"].append(
                f"{escape(str(r['original_response'] or cat))} "
                f"({escape(r['criteria'] or '')})"
                + (
                    f", {r['assessment_date']}"
                    if show_dates
                    else f", day {day(r['assessment_date'])}"
                )
            )
        for ev in lane["events"]:
            m = marks[ev["kind"]]
            m["x"].append(day(ev["date"]))
            m["y"].append(y)
            m["hover"].append(
                escape(ev["what"])
                + (f", {ev['date']}" if show_dates else f", day {day(ev['date'])}")
            )
    fig = go.Figure()
    if band["y"]:
        fig.add_trace(
            go.Bar(
                y=band["y"],
                base=band["base"],
                x=band["x"],
                orientation="h",
                width=0.86,
                name="line of therapy",
                marker={
                    "color": "rgba(60,60,60,0.07)",
                    "line": {"color": "rgba(60,60,60,0.35)", "width": 1},
                },
                text=band["text"],
                textposition="inside",
                insidetextanchor="start",
                textfont={"size": 9, "color": "#555"},
                hovertext=band["hover"],
                hoverinfo="text",
            )
        )
    for oc in OUTCOME_ORDER:
        if oc not in bars:
            continue
        b = bars[oc]
        fig.add_trace(
            go.Bar(
                y=b["y"],
                base=b["base"],
                x=b["x"],
                width=b["width"],
                orientation="h",
                name=nice(oc),
                marker={"color": OUTCOME_COLOURS[oc], "line": {"width": 0}},
                hovertext=b["hover"],
                hoverinfo="text",
                legendgroup="trials",
                legendgrouptitle_text="trial outcome",
            )
        )
    if "ongoing" in marks:
        m = marks["ongoing"]
        fig.add_trace(
            go.Scatter(
                x=m["x"],
                y=m["y"],
                mode="markers",
                name="ongoing",
                marker={"symbol": "triangle-right", "size": 9, "color": "#333"},
                hovertext=m["hover"],
                hoverinfo="text",
                legendgroup="marks",
                legendgrouptitle_text="markers",
            )
        )
    for cat, (symbol, colour, name) in [*RESPONSE_MARKERS.items(), *EVENT_MARKERS.items()]:
        if cat not in marks:
            continue
        m = marks[cat]
        fig.add_trace(
            go.Scatter(
                x=m["x"],
                y=m["y"],
                mode="markers",
                name=name,
                marker={
                    "symbol": symbol,
                    "size": 11 if cat in EVENT_MARKERS else 8,
                    "color": colour,
                    "line": {"width": 1, "color": "white"}
                    if not symbol.endswith("open") and symbol != "x"
                    else {"width": 2},
                },
                hovertext=m["hover"],
                hoverinfo="text",
                legendgroup="marks",
                legendgrouptitle_text="markers",
            )
        )
    fig.update_layout(
        **_LAYOUT,
        barmode="overlay",
        bargap=0,
        height=170 + 34 * len(lanes),
        margin={"l": 10, "r": 10, "t": 34, "b": 50},
        xaxis={
            "title": {"text": "days since first treatment"},
            "zeroline": True,
            "zerolinecolor": "#999",
            "gridcolor": "#eee",
        },
        yaxis={
            "tickvals": ticks,
            "ticktext": ticktext,
            "autorange": "reversed",
            "range": None,
            "showgrid": False,
            "automargin": True,
        },
        legend={
            "orientation": "v",
            "x": 1.01,
            "y": 1,
            "groupclick": "toggleitem",
            "traceorder": "grouped",
        },
    )
    return fig


def ingest_bars(batches: list[Any]) -> go.Figure:
    """Stacked bars per batch: rows accepted, quarantined, duplicates."""
    xs = [f"batch {b.batch_id}" for b in batches]
    fig = go.Figure()
    for attr, colour in (
        ("accepted", "#27ae60"),
        ("quarantined", "#c0392b"),
        ("duplicates", "#95a5a6"),
    ):
        fig.add_trace(
            go.Bar(
                x=xs,
                y=[getattr(b, attr) for b in batches],
                name=attr,
                marker_color=colour,
                hovertemplate=f"%{{x}}: %{{y}} rows {attr}<extra></extra>",
            )
        )
    fig.update_layout(
        **_LAYOUT,
        barmode="stack",
        height=260,
        margin={"l": 60, "r": 10, "t": 10, "b": 40},
        yaxis={"title": {"text": "rows"}},
        legend={"orientation": "h", "y": 1.12, "x": 0},
    )
    return fig
