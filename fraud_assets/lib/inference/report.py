"""The daily fraud report (the original design's "Daily report -> S3"): one self-contained HTML page for people
who never open Dagster.

`report_figures` gathers the day's numbers (the same headline figures go to the asset's metadata);
`render_html` turns them into a page with inline CSS and inline SVG charts: no script, no font, no
image loaded from anywhere. Everything that comes from data (ids, merchants, categories, feature
names, reasons) goes through `html.escape`.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from typing import Any, Mapping, Sequence

import pandas as pd

from fraud_assets.lib.config import TRANSACTION_ID
from fraud_assets.lib.inference.alerts import rank_alerts
from fraud_assets.lib.inference.drift import drift_warnings

REPORT_PREFIX = "reports"
MAX_ALERT_ROWS = 500  # a day with more alerts lists the top ones and says how many it left out
TOP_GROUPS = 10
INVESTIGATOR_DAYS = 30  # labelled days in the investigator table and trend
# Keys of performance/{date}.json (model_performance) shown in the report, with their labels.
PERFORMANCE_FIELDS = (
    ("labelled", "labelled transactions", "int"),
    ("label_coverage", "label coverage", "pct"),
    ("fraud", "confirmed fraud", "int"),
    ("alerted", "alerted", "int"),
    ("alert_precision", "alert precision (alerts that were fraud)", "pct"),
    ("high_risk_threshold", "high-risk threshold (the scoring model's)", "num"),
    ("realised_false_positive_rate_at_threshold", "false positive rate at the high-risk threshold", "pct"),
    ("realised_precision_at_threshold", "precision at the high-risk threshold", "pct"),
    ("realised_recall_at_threshold", "recall at the high-risk threshold", "pct"),
    ("missed_fraud", "fraud not alerted", "int"),
    ("missed_fraud_amount", "amount of fraud not alerted", "money"),
    ("roc_auc", "ROC-AUC", "num"),
    ("pr_auc", "PR-AUC", "num"),
    ("alert_budget", "alert budget k (alerts the investigators examine a day)", "int"),
    ("precision_at_k", "precision@k (top-k transactions confirmed as fraud)", "pct"),
    ("card_precision_at_k", "card precision@k (top-k cards compromised)", "pct"),
    ("compromised_cards_found", "compromised cards found in the top k", "int"),
    ("compromised_cards", "compromised cards of the day", "int"),
)


def report_key(date: str) -> str:
    dt.date.fromisoformat(date)  # a date, nothing else, becomes part of the key
    return f"{REPORT_PREFIX}/fraud-daily-{date}.html"


def _group_top(high: pd.DataFrame, column: str) -> list[dict[str, Any]]:
    if high.empty:
        return []
    grouped = high.groupby(high[column].astype(str)).agg(alerts=(TRANSACTION_ID, "size"), amount=("amount", "sum"))
    grouped = grouped.sort_values(["alerts", "amount"], ascending=[False, False]).head(TOP_GROUPS)
    return [{"name": name, "alerts": int(row.alerts), "amount": float(row.amount)} for name, row in grouped.iterrows()]


def report_figures(
    *,
    date: str,
    counts: Mapping[str, Any],
    score_summary: Mapping[str, Any],
    alerts: Sequence[dict[str, Any]],
    drift: dict[str, Any],
    history: Sequence[dict[str, Any]],
    model: dict[str, Any],
    performance: dict[str, Any] | None,
    alert_messages_sent: int | None = None,
    performance_history: Sequence[dict[str, Any]] = (),
    alerts_held_back: int = 0,
    alert_budget: int | None = None,
) -> dict[str, Any]:
    """The report's content as plain data. `counts`: daily_transactions' summary (received,
    accepted, quarantined: `TransactionCounts`); `score_summary`: daily_scores' (high_risk_count,
    medium_risk_count, low_risk_count, average_score: `ScoreSummary`); `alerts`: high-risk
    alerts with topReasons (and rawScore), listed in the SNS messages' order (`rank_alerts`);
    `drift`: today's metrics record; `history`: earlier records (oldest first; each names its
    modelVersion); `model`: modelVersion, thresholds, calibrated; `performance`: the day's
    performance/{date}.json or None before labels; `performance_history`: earlier days'
    performance records (oldest first), whose labelled days make the investigator table with
    today's; `alerts_held_back`: high-risk transactions fraud_alerts kept out of its messages at
    `alert_budget` (None: not capped)."""
    high = (
        pd.DataFrame(list(alerts), columns=[TRANSACTION_ID, "amount", "merchant", "category"])
        if alerts
        else pd.DataFrame(columns=[TRANSACTION_ID, "amount", "merchant", "category"])
    )
    alerts = rank_alerts(alerts)
    # Today's record names its model too; the model argument stands in for a record that does not.
    trend = [h for h in history if h.get("date") and h.get("date") < date] + [
        {**drift, "modelVersion": drift.get("modelVersion") or model.get("modelVersion")}
    ]
    return {
        "date": date,
        "received": int(counts["received"]),
        "scored": int(counts["accepted"]),
        "quarantined": int(counts["quarantined"]),
        "high_risk": int(score_summary["high_risk_count"]),
        "medium_risk": int(score_summary["medium_risk_count"]),
        "low_risk": int(score_summary["low_risk_count"]),
        "average_score": score_summary["average_score"],
        "alert_messages_sent": alert_messages_sent,
        "high_risk_amount": float(high["amount"].sum()) if len(high) else 0.0,
        "alerts": alerts,
        "top_merchants": _group_top(high, "merchant"),
        "top_categories": _group_top(high, "category"),
        "histogram": drift.get("scoreHistogram"),
        "drift_detected": bool(drift.get("driftDetected")),
        "drift_reason": drift.get("reason") or "",
        # The drift checks' own verdicts: the page says what the UI's warnings say.
        "drift_warnings": [w["detail"] for w in drift_warnings(drift) if not w["passed"]],
        "score_psi": drift.get("scorePsi"),
        "max_feature_psi": drift.get("maxFeaturePsi"),
        "trend": [
            {
                "date": str(h.get("date")),
                "avg_score": h.get("avgScore"),
                "high_risk_pct": h.get("highRiskPct"),
                "drift": bool(h.get("driftDetected")),
                "model_version": h.get("modelVersion"),
            }
            for h in trend[-30:]
        ],
        "model_version": model.get("modelVersion"),
        "thresholds": model.get("thresholds") or {},
        "calibrated": bool(model.get("calibrated")),
        "performance": performance,
        "investigator_days": investigator_days(performance_history, performance, date),
        "alerts_held_back": int(alerts_held_back),
        "alert_budget": alert_budget,
    }


def investigator_days(history: Sequence[dict[str, Any]], today: dict[str, Any] | None, date: str) -> list[dict[str, Any]]:
    """The investigator measures of each labelled day among the earlier records and today's, oldest
    first, the last HISTORY rows: date, model_version, alert_budget, labelled, precision_at_k,
    card_precision_at_k, compromised_cards_found, compromised_cards (None where a record predates them)."""
    records = [h for h in history if str(h.get("date", "")) < date] + ([today] if today else [])
    keys = ("alert_budget", "labelled", "precision_at_k", "card_precision_at_k", "compromised_cards_found", "compromised_cards")
    return [
        {"date": str(r.get("date")), "model_version": r.get("model_version"), "drift": False, **{k: r.get(k) for k in keys}}
        for r in records
        if r.get("labelled")
    ][-INVESTIGATOR_DAYS:]


def headline(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures the asset's metadata shows (numbers the UI plots; NaN where undefined)."""
    perf = figures.get("performance") or {}

    def number(value):
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")

    return {
        "transactions_processed": figures["received"],
        "scored": figures["scored"],
        "quarantined": figures["quarantined"],
        "high_risk": figures["high_risk"],
        "medium_risk": figures["medium_risk"],
        "low_risk": figures["low_risk"],
        "average_score": number(figures["average_score"]),
        "high_risk_amount": figures["high_risk_amount"],
        "drift_detected": figures["drift_detected"],
        "high_risk_threshold": number(figures["thresholds"].get("high")),
        "confirmed_fraud": number(perf.get("fraud")),
        "drift_warnings": len(figures["drift_warnings"]),
        "false_positive_rate": number(perf.get("realised_false_positive_rate_at_threshold")),
        "alert_precision": number(perf.get("alert_precision")),
        "precision_at_k": number(perf.get("precision_at_k")),
        "card_precision_at_k": number(perf.get("card_precision_at_k")),
        "compromised_cards_found": number(perf.get("compromised_cards_found")),
        "alerts_held_back": figures["alerts_held_back"],
    }


# -- rendering ------------------------------------------------------------------------------------

_e = html.escape


def _fmt(value: Any, kind: str = "num") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return f"{100 * float(value):.2f}%"
    if kind == "money":
        return f"{float(value):,.2f}"
    if kind == "raw":  # raw scores of tied alerts differ in the 5th or 6th decimal
        return f"{float(value):.6f}"
    return f"{float(value):.4f}"


def _histogram_svg(histogram: dict[str, Any] | None, thresholds: dict[str, Any]) -> str:
    """Scores in 20 bins, bar heights on a log scale (nearly every transaction scores near 0)."""
    if not histogram or not histogram.get("counts"):
        return "<p>No scores today.</p>"
    counts, edges = histogram["counts"], histogram["binEdges"]
    width, height, left, bottom, top = 640, 220, 50, 30, 16
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = math.log10(max(counts) + 1) or 1.0
    bar_w = plot_w / len(counts)
    high = float(thresholds.get("high", 0.8))
    parts = [
        f'<svg class="chart" id="risk-distribution" role="img" aria-label="Score distribution" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#555"/>',
    ]
    for i, count in enumerate(counts):
        h = plot_h * math.log10(count + 1) / peak
        x = left + i * bar_w
        colour = "#c0392b" if edges[i] >= high else "#e67e22" if edges[i] >= float(thresholds.get("medium", 0.5)) else "#2c7fb8"
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" fill="{colour}">'
            f"<title>{edges[i]:.2f}-{edges[i + 1]:.2f}: {count:,} transactions</title></rect>"
        )
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + tick * plot_w
        parts.append(f'<text x="{x:.1f}" y="{height - 10}" font-size="11" text-anchor="middle">{tick:.2f}</text>')
    threshold_x = left + high * plot_w
    parts.append(
        f'<line x1="{threshold_x:.1f}" y1="{top}" x2="{threshold_x:.1f}" y2="{top + plot_h}" stroke="#c0392b" stroke-dasharray="4 3"/>'
    )
    parts.append(f'<text x="{threshold_x + 4:.1f}" y="{top + 10}" font-size="11" fill="#c0392b">high-risk threshold {high:.3g}</text>')
    parts.append(f'<text x="{left - 8}" y="{top + 4}" font-size="11" text-anchor="end">{max(counts):,}</text>')
    parts.append(f'<text x="{left - 8}" y="{top + plot_h}" font-size="11" text-anchor="end">0</text>')
    parts.append("</svg>")
    return "".join(parts)


def _round_top(peak: float) -> float:
    """The smallest round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 x 10^k) at or above `peak`: a
    top for an axis from 0, with the halfway tick round too, that leaves little of the chart empty."""
    if not peak > 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(peak))
    steps = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
    return next(step * scale for step in steps if step * scale >= peak * (1 - 1e-12))


def _version_changes(versions: Sequence[Any]) -> list[int]:
    """Indices whose model version differs from the last known one before them. A record without a
    version (written before records named it) is no evidence of a change either way."""
    changes, known = [], None
    for i, version in enumerate(versions):
        if version is None:
            continue
        if known is not None and version != known:
            changes.append(i)
        known = version
    return changes


def _trend_svg(trend: Sequence[dict[str, Any]], key: str, label: str, chart_id: str, as_percent: bool) -> str:
    points = [(t["date"], t[key], t["drift"], t.get("model_version")) for t in trend if isinstance(t.get(key), (int, float))]
    if not points:
        return "<p>No history yet.</p>"
    width, height, left, bottom, top = 640, 180, 60, 34, 14
    plot_w, plot_h = width - left - 14, height - bottom - top
    values = [p[1] for p in points]
    if min(values) >= 0:
        # From 0: a scale cut just below the lowest day makes a 20% move look like a tenfold one.
        low, high = 0.0, _round_top(1.05 * max(values))
    else:
        low, high = min(values), max(values)
        span = high - low or max(abs(high), 1e-6)
        low, high = low - 0.1 * span, high + 0.1 * span

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (plot_w * i / (len(points) - 1) if len(points) > 1 else plot_w / 2)
        return x, top + plot_h * (1 - (v - low) / (high - low))

    shown = (lambda v: f"{100 * v:.2f}%") if as_percent else (lambda v: f"{v:.4f}")
    coords = [xy(i, p[1]) for i, p in enumerate(points)]
    parts = [
        f'<svg class="chart" id="{_e(chart_id)}" role="img" aria-label="{_e(label)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
    ]
    for tick in (low, (low + high) / 2, high):
        y = xy(0, tick)[1]
        grid = "#555" if tick == low else "#eee"  # the bottom line is the axis
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{grid}"/>')
        parts.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{_e(shown(tick))}</text>')
    labels, last_label_x, row = [], -math.inf, 0
    for i in _version_changes([p[3] for p in points]):
        # Between the last day of the old model and the first of the new: each day scored with one model.
        x = (coords[i - 1][0] + coords[i][0]) / 2
        row = 1 - row if x - last_label_x < 170 else 0  # two changes close together: labels on two rows
        last_label_x = x
        anchor, dx = ("end", -4) if x > left + plot_w - 170 else ("start", 4)
        version, date = _e(str(points[i][3])), _e(points[i][0])
        parts.append(
            f'<line class="model-change" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#7f8c8d" '
            f'stroke-dasharray="3 3"><title>model {version} from {date}</title></line>'
        )
        # Drawn last, with a white halo: readable where the line of values crosses it.
        labels.append(
            f'<text class="model-change-label" x="{x + dx:.1f}" y="{top + 9 + 12 * row}" font-size="10" fill="#555" '
            f'text-anchor="{anchor}" stroke="#fff" stroke-width="3" paint-order="stroke">model {version} from {date}</text>'
        )
    parts.append(
        '<polyline fill="none" stroke="#2c7fb8" stroke-width="2" points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>'
    )
    for (date, value, drifted, _), (x, y) in zip(points, coords):
        colour = "#c0392b" if drifted else "#2c7fb8"
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{5 if drifted else 3}" fill="{colour}">'
            f"<title>{_e(date)}: {_e(shown(value))}{' (drift)' if drifted else ''}</title></circle>"
        )
    for i in sorted({0, len(points) - 1}):
        x, _ = coords[i]
        anchor = "end" if i and i == len(points) - 1 else "start" if len(points) > 1 else "middle"  # dates stay inside the chart
        parts.append(f'<text x="{x:.1f}" y="{height - 12}" font-size="11" text-anchor="{anchor}">{_e(points[i][0])}</text>')
    parts.extend(labels)
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], table_id: str, numeric: Sequence[int] = ()) -> str:
    """Cells arrive escaped (or as markup built here from escaped parts)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i in numeric else ''}>{c}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f'<table id="{_e(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _reasons(alert: dict[str, Any]) -> str:
    reasons = alert.get("topReasons") or []
    return "<br>".join(f"{_e(str(r['feature']))} = {_e(_fmt(r['value']))} ({float(r['contribution']):+.3f})" for r in reasons) or "-"


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1000px;color:#222;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin-top:0}.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:130px}.card b{display:block;font-size:22px}
.card.alert b{color:#c0392b}.ok{color:#1e8449;font-weight:bold}.bad{color:#c0392b;font-weight:bold}
table{border-collapse:collapse;width:100%;font-size:13px;margin-top:8px}th,td{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.num{text-align:right;font-variant-numeric:tabular-nums}.charts{display:flex;flex-wrap:wrap;gap:16px}
svg.chart{max-width:100%;height:auto;border:1px solid #eee;background:#fff}.note{color:#666;font-size:13px}
"""


def _investigator_html(days: Sequence[dict[str, Any]]) -> str:
    """Precision@k, card precision@k and compromised cards found per labelled day: a table and the
    two trends."""
    if not days:
        return "<p>No labelled day yet.</p>"
    rows = [
        (
            _e(d["date"]),
            _e(str(d.get("model_version") or "")),
            _fmt(d.get("alert_budget"), "int"),
            _fmt(d.get("labelled"), "int"),
            _fmt(d.get("precision_at_k"), "pct"),
            _fmt(d.get("card_precision_at_k"), "pct"),
            f"{_fmt(d.get('compromised_cards_found'), 'int')} of {_fmt(d.get('compromised_cards'), 'int')}",
        )
        for d in days
    ]
    return (
        '<p class="note">k is the alert budget, the alerts the investigators examine a day. Precision@k: the share of the '
        "day's k highest-ranked transactions confirmed as fraud (unlabelled ones count as not confirmed); card precision@k: "
        "the share of the k highest-ranked cards (each by its best transaction of the day) with a confirmed fraud. Ranked "
        "as the alerts are.</p>"
        + _table(
            ["date", "model", "k", "labelled", "precision@k", "card precision@k", "compromised cards found in top k"],
            rows,
            "investigator",
            numeric=(2, 3, 4, 5),
        )
        + "".join(
            _trend_svg(days, key, label, chart_id, True)
            for key, label, chart_id in (
                ("precision_at_k", "Precision@k per labelled day", "trend-precision-at-k"),
                ("card_precision_at_k", "Card precision@k per labelled day", "trend-card-precision-at-k"),
            )
            if any(isinstance(d.get(key), (int, float)) for d in days)  # records written before these figures have none
        )
    )


def render_html(figures: dict[str, Any]) -> str:
    f = figures
    date = _e(f["date"])
    thresholds = f["thresholds"]
    expected = thresholds.get("expected", {}).get("high", {})
    cards = [
        ("transactions processed", _fmt(f["received"], "int"), ""),
        ("scored", _fmt(f["scored"], "int"), ""),
        ("quarantined", _fmt(f["quarantined"], "int"), ""),
        ("high-risk alerts", _fmt(f["high_risk"], "int"), "alert"),
        ("medium risk", _fmt(f["medium_risk"], "int"), ""),
        ("amount at high risk", _fmt(f["high_risk_amount"], "money"), ""),
        ("average score", _fmt(f["average_score"]), ""),
    ]
    if f["alerts_held_back"]:
        cards.insert(4, ("held back by the alert budget", _fmt(f["alerts_held_back"], "int"), ""))
    card_html = "".join(f'<div class="card {cls}"><b>{value}</b>{_e(label)}</div>' for label, value, cls in cards)

    alerts = f["alerts"][:MAX_ALERT_ROWS]
    alert_rows = [
        (
            str(i),
            _e(str(a["transactionId"])),
            _fmt(a["fraudScore"]),
            _fmt(a.get("rawScore"), "raw"),
            _e(str(a.get("alertPriority", ""))),
            _fmt(a.get("amount"), "money"),
            _e(str(a.get("merchant", ""))),
            _e(str(a.get("category", ""))),
            _e(str(a.get("customerId", ""))),
            _reasons(a),
        )
        for i, a in enumerate(alerts, start=1)
    ]
    left_out = len(f["alerts"]) - len(alerts)
    alerts_html = (
        _table(
            [
                "#",
                "transaction",
                "score",
                "raw score",
                "priority",
                "amount",
                "merchant",
                "category",
                "customer",
                "top reasons (feature = value (contribution, log-odds))",
            ],
            alert_rows,
            "alerts",
            numeric=(0, 2, 3, 5),
        )
        if alert_rows
        else "<p>No high-risk transactions today.</p>"
    )
    if left_out > 0:
        alerts_html += f'<p class="note">{left_out:,} further alerts are in the SNS messages and the FraudScores table.</p>'
    if f["alerts_held_back"]:
        alerts_html = (
            f'<p class="note">{_fmt(f["alerts_held_back"], "int")} further high-risk transactions were held back by the alert '
            f"budget of {_fmt(f['alert_budget'], 'int')} alerts a day (not sent; they are in the FraudScores table).</p>" + alerts_html
        )

    def groups(rows, table_id, what):
        if not rows:
            return "<p>None.</p>"
        return _table(
            [what, "alerts", "amount"],
            [(_e(r["name"]), _fmt(r["alerts"], "int"), _fmt(r["amount"], "money")) for r in rows],
            table_id,
            numeric=(1, 2),
        )

    if f["drift_detected"]:
        drift_status = f'<span class="bad">Drift detected</span>: {_e(f["drift_reason"])}'
    elif f["drift_warnings"]:
        drift_status = f'<span class="bad">Drift warning</span>: {_e("; ".join(f["drift_warnings"]))}'
    else:
        drift_status = f'<span class="ok">No drift</span>{": " + _e(f["drift_reason"]) if f["drift_reason"] else ""}'

    perf = f["performance"]
    if perf:
        perf_rows = [(_e(label), _fmt(perf.get(key), kind)) for key, label, kind in PERFORMANCE_FIELDS]
        performance_html = (
            f'<p class="note">From confirmed labels (model {_e(str(perf.get("model_version", "")))}); '
            "figures are n/a where no label makes them defined.</p>" + _table(["measure", "value"], perf_rows, "performance", numeric=(1,))
        )
    else:
        performance_html = (
            "<p>No labels for this day yet: confirmed fraud, false positive rate and alert precision appear once labels arrive.</p>"
        )

    investigator_html = _investigator_html(f["investigator_days"])

    policy = str(thresholds.get("policy", "fixed"))
    if thresholds.get("target") is not None:
        policy += f" {thresholds['target']}"
    model_rows = [
        ("model version", _e(str(f["model_version"]))),
        ("scores calibrated (isotonic, fitted on validation)", "yes" if f["calibrated"] else "no"),
        ("threshold policy", _e(policy)),
        ("high-risk threshold", _fmt(thresholds.get("high"))),
        ("medium-risk threshold", _fmt(thresholds.get("medium"))),
        ("expected precision at the high-risk threshold (validation)", _fmt(expected.get("precision"), "pct")),
        ("expected recall at the high-risk threshold (validation)", _fmt(expected.get("recall"), "pct")),
    ]
    generated = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fraud report {date}</title><style>{_CSS}</style></head>
<body>
<h1>Daily fraud report: {date}</h1>
<p class="sub">Model {_e(str(f["model_version"]))} &middot; generated {_e(generated)}</p>
<div class="cards">{card_html}</div>
<h2>Risk distribution</h2>
<p class="note">{_fmt(f["high_risk"], "int")} high, {_fmt(f["medium_risk"], "int")} medium, {_fmt(f["low_risk"], "int")} low risk.
Bar heights on a log scale; red bars at or above the high-risk threshold.</p>
{_histogram_svg(f["histogram"], thresholds)}
<h2>Where the high-risk transactions are</h2>
<div class="charts"><div><h3>Top merchants</h3>{groups(f["top_merchants"], "top-merchants", "merchant")}</div>
<div><h3>Top categories</h3>{groups(f["top_categories"], "top-categories", "category")}</div></div>
<h2>Drift</h2>
<p>{drift_status}</p>
<p class="note">Score PSI against validation: {_fmt(f["score_psi"])}; largest feature PSI against training: {_fmt(f["max_feature_psi"])}.</p>
<h3>Average score, last {len(f["trend"])} days</h3>
{_trend_svg(f["trend"], "avg_score", "Average score trend", "trend-average-score", False)}
<h3>High-risk share, last {len(f["trend"])} days</h3>
{_trend_svg(f["trend"], "high_risk_pct", "High-risk share trend", "trend-high-risk-share", True)}
<p class="note">Axes start at 0. Red points are days with drift; a dashed grey line marks a change of model version
(the days right of it were scored by the model it names).</p>
<h2>Measured performance</h2>
{performance_html}
<h3>Investigator measures per labelled day</h3>
{investigator_html}
<h2>Model and threshold policy</h2>
{_table(["", ""], model_rows, "model")}
<h2>Alerts, highest score first</h2>
<p class="note">Ranked by score, equal scores by the model's raw (uncalibrated) score, as in the SNS alert messages:
calibration gives many alerts the same score.</p>
{alerts_html}
</body></html>
"""
