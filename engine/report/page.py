"""The report as one self-contained HTML file, and model cards as pages with the same look.

Everything a page needs is inline: the data (JSON in a ``<script type="application/json">``,
``<`` escaped so no value can close the tag), the styles, the page script and uPlot
(engine/report/vendor, MIT, 51 KB minified; chosen over Vega-Lite's ~800 KB runtime and
Plotly's >1 MB bundle: it draws time series on canvas, which is what the panels are). No
network request at view time. A card page is rendered on the server side (tables and CSS
bars only, no script).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
PANELS = [
    ("kpi", "Business KPIs", True),
    ("drift", "Drift per feature over time", True),
    ("uplift", "Qini and uplift curves of the champion", False),
    ("fairness", "Fairness per sensitive attribute and group", False),
    ("latency", "Latency, volume and decision rate", True),
    ("alerts", "Alerts timeline", False),
    ("models", "Model timeline", True),
    ("demand", "Demand: forecast accuracy and stock", True),
    ("targeting", "Targeting: whom to contact under a budget", True),
]


def asset(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")


def _json_script(data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def card_href(model: str, version: str) -> str:
    return f"cards/{model}-v{version}.html"


def render_report(
    data: dict[str, Any], *, refresh_s: int | None = None, panels: list[str] | None = None
) -> str:
    """The report page. ``refresh_s``: the live dashboard reloads itself that often;
    ``panels``: the panels shown (default all; a forecasting-only project has no churn
    panels)."""
    h = data["header"]
    links = {
        v["version"]: card_href(h["model"], v["version"])
        for v in data.get("versions", [])
        if v.get("has_card")
    }
    payload = {**data, "card_links": links}
    sections = "\n".join(
        f'<section class="panel{" wide" if wide else ""}" id="{pid}" data-panel="{pid}">'
        f'<h2>{html.escape(title)}</h2><div class="body" tabindex="0" aria-label="{html.escape(title)}"></div></section>'
        for pid, title, wide in (
            PANELS
            if panels is None
            else sorted((p for p in PANELS if p[0] in panels), key=lambda p: panels.index(p[0]))
        )
    )
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    title = f"{h['project']} · {h['model']} · Insight Engine report"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">{refresh}
<title>{html.escape(title)}</title>
<style>{asset("vendor/uPlot.min.css")}</style>
<style>{asset("static/style.css")}</style>
</head><body>
<header class="top"><h1>{html.escape(title)}</h1><div class="meta"></div>
<div class="meta segments"></div></header>
<main>
{sections}
</main>
<footer>Built from aggregates only (monitor history, alert state, control audit log,
registry, model cards): no request, input row or identifier is in this file.
Charts: uPlot 1.6.32 (MIT).</footer>
<script type="application/json" id="report-data">{_json_script(payload)}</script>
<script>{asset("vendor/uPlot.iife.min.js")}</script>
<script>{asset("static/app.js")}</script>
</body></html>
"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _ci(d: dict[str, Any] | None, digits: int = 4) -> str:
    if not d:
        return "–"
    est = d.get("estimate", d.get("value"))
    if est is None:
        return _e(f"undefined ({d.get('undefined', 'not enough rows')})")
    if d.get("low") is None:
        return f"{est:.{digits}f}"
    return f"{est:.{digits}f} ({d['low']:.{digits}f} – {d['high']:.{digits}f})"


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    top = f"<tr>{th}</tr>" if any(head) else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}">{top}{body}</table>'


def _bar(v: float, top: float) -> str:
    w = 100 * v / top if top > 0 else 0
    return f'<div class="bar"><div class="fill" style="width:{w:.1f}%"></div></div>'


def render_card(card: dict[str, Any], *, report_href: str | None = "../report.html") -> str:
    """A model card as a page (the Markdown and JSON stay; this is the same content)."""
    m, td, mod = card["metrics"], card["training_data"], card["model"]
    title = f"Model card: {mod['name']} v{mod['version']} ({mod['family']})"
    sec: list[str] = []

    def panel(name: str, body: str) -> None:
        sec.append(
            f'<section class="panel" data-panel="{_e(name)}"><h2>{_e(name)}</h2>{body}</section>'
        )

    panel("Intended use", f"<p>{_e(card['intended_use'])}</p>")
    from engine.registry.card import split_ranges

    spans = [[_e(what), _e(r)] for what, r in split_ranges(td)]
    lineage = [
        ["snapshot", f"<code>{_e(td['snapshot_id'])}</code>"],
        *(spans or [["label times", "labels without time"]]),
        ["split", _e(td["split"]["how"])],
        ["final model", _e(td.get("final_fit", "the best trial"))],
        ["parent run", f"<code>{_e(mod.get('parent_run_id', ''))}</code>"],
        ["code version", f"<code>{_e(mod.get('code_version', ''))}</code>"],
        ["features", _e(", ".join(td["features"]))],
    ]
    if td.get("categorical"):
        lineage.append(
            ["categorical", _e(", ".join(f"{c} ({n})" for c, n in td["categorical"].items()))]
        )
    panel("Training data and lineage", _table(["", ""], lineage, "kv"))
    rows = [
        ["ROC AUC (95% BCa bootstrap CI)", _ci(m["auc"])],
        ["log loss", f"{m['logloss']:.4f}"],
        ["Brier", f"{m['brier']:.4f}"],
        [f"accuracy at {m['threshold']}", f"{m['accuracy_at_threshold']:.4f}"],
        ["selection rate", f"{m['selection_rate']:.4f}"],
        ["rows / positive rate", f"{m['rows']} / {m['positive_rate']:.3f}"],
    ]
    if m.get("lift_top_decile") is not None:
        rows.append(["lift in the top decile", f"{m['lift_top_decile']:.2f}x"])
    if m.get("confusion"):
        c = m["confusion"]
        rows.append(["TP / FP / FN / TN", f"{c['tp']} / {c['fp']} / {c['fn']} / {c['tn']}"])
    panel("Metrics on the test split", _table(["metric", "value"], rows, "kv"))
    cal = m["calibration"]
    panel(
        f"Calibration (ECE {cal['ece']:.4f})",
        _table(
            ["decile", "rows", "mean score", "observed rate", ""],
            [
                [
                    _e(b["bin"]),
                    _e(b["rows"]),
                    f"{b['mean_score']:.3f}",
                    f"{b['observed_rate']:.3f}",
                    _bar(b["observed_rate"], 1.0),
                ]
                for b in cal["bins"]
            ],
        ),
    )
    fair = []
    for attr, res in m["fairness"].items():
        metrics = [
            [_e(k.replace("_", " ")), _ci(res.get(k))]
            for k in (
                "demographic_parity_difference",
                "equal_opportunity_difference",
                "equalized_odds_difference",
            )
        ]
        groups = [
            [_e(g), *[f"{float(v):.3f}" for v in r.values()]]
            for g, r in res.get("by_group", {}).items()
        ]
        head = ["group", *next(iter(res.get("by_group", {}).values()), {}).keys()]
        fair.append(f"<h3>{_e(attr)}</h3>" + _table(["difference", "value (95% CI)"], metrics))
        if groups:
            fair.append(_table([str(h) for h in head], groups))
    panel(
        "Fairness",
        "".join(fair) or "<p>No sensitive attribute with two or more groups in the test split.</p>",
    )
    u = card.get("uplift")
    if u:
        rows = [
            [_e(n), _ci(r["qini_auc"]), f"{r['uplift_auc']:.4f}"] for n, r in u["learners"].items()
        ]
        panel(
            "Uplift",
            f"<p>campaign ATE {_ci(u['ate'])} on {u['rows']} held-out rows; best learner "
            f"{_e(u['best'])}</p>" + _table(["learner", "Qini AUC (95% CI)", "uplift AUC"], rows),
        )
    imp = list(card["shap_importance"].items())[:15]
    top = max((v for _, v in imp), default=0.0)
    panel(
        f"Global SHAP importance (mean |SHAP|, {card.get('shap_output', 'log_odds')})",
        _table(["feature", "mean |SHAP|", ""], [[_e(k), f"{v:.4f}", _bar(v, top)] for k, v in imp]),
    )
    notes = [*card.get("family_notes", []), *card["limitations"]]
    panel("Known limitations", "<ul>" + "".join(f"<li>{_e(x)}</li>" for x in notes) + "</ul>")
    back = f'<div class="meta"><a href="{_e(report_href)}">report</a></div>' if report_href else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{asset("static/style.css")}</style>
</head><body class="card-page">
<header class="top"><h1>{_e(title)}</h1>{back}</header>
<main>
{"".join(sec)}
</main>
</body></html>
"""
