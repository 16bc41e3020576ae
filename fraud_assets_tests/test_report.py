"""The daily fraud report: what it says, that data cannot inject markup, and that it renders in a
real headless Chromium with its charts and without console errors."""

import os
import re
import shutil

import numpy as np
import pytest

from fraud_assets.lib.inference import report as report_lib
from fraud_assets.lib.inference.alerts import alert_messages

HOSTILE = "<script>alert('x')</script>"
DATE = "2026-04-30"
OLD_MODEL, MODEL = "20260301-000000-0001", "20260401-000000-abcd"


def figures(performance: dict | None = None, alerts: int = 120, drift: dict | None = None, **extra) -> dict:
    rng = np.random.default_rng(1)
    alert_rows = [
        {
            "transactionId": f"txn-{i:04d}" if i else f'txn-"{HOSTILE}',
            # As after isotonic calibration: most alerts at exactly 1.0, the raw score tells them apart.
            "fraudScore": 1.0 if i < 85 else float(0.99 - i / 1_000),
            "rawScore": float(0.9999 - i * 1e-5),
            "alertPriority": "URGENT" if i < 10 else "HIGH",
            "amount": float(rng.uniform(10, 3_000)),
            "merchant": HOSTILE if i % 7 == 0 else f"merchant-{i % 5}",
            "category": "electronics & games" if i % 2 else "travel",
            "customerId": f"cust-{i}",
            "topReasons": [
                {"feature": "V14", "value": -7.25, "contribution": 2.5},
                {"feature": f"V{i % 28 + 1}", "value": 1.5, "contribution": 0.75},
            ],
        }
        for i in range(alerts)
    ]
    alert_rows = [alert_rows[i] for i in rng.permutation(alerts)]  # the report ranks them itself
    history = [
        {
            "date": f"2026-04-{d:02d}",
            "avgScore": 0.01 + 0.001 * d,
            "highRiskPct": 0.002 + 0.0001 * d,
            "driftDetected": d == 20,
            "modelVersion": OLD_MODEL if d < 15 else MODEL,
        }
        for d in range(1, 30)
    ]
    today = {
        "date": DATE,
        "avgScore": 0.05,
        "highRiskPct": 0.012,
        "driftDetected": True,
        "reason": "avgScore moved 0.04 > 0.1? no: high-risk share",
        "scorePsi": 0.31,
        "maxFeaturePsi": 0.12,
        "scoreHistogram": {"binEdges": [round(0.05 * i, 2) for i in range(21)], "counts": [9_000, 400, 100, 50] + [10] * 15 + [alerts]},
    }
    return report_lib.report_figures(
        date=DATE,
        counts={"received": 10_002, "accepted": 10_000, "quarantined": 2},
        score_summary={"high_risk_count": alerts, "medium_risk_count": 40, "low_risk_count": 10_000 - alerts - 40, "average_score": 0.05},
        alerts=alert_rows,
        drift={**today, **(drift or {})},
        history=history,
        model={
            "modelVersion": MODEL,
            "calibrated": True,
            "thresholds": {
                "policy": "target_recall",
                "target": 0.8,
                "target_met": True,
                "high": 0.62,
                "medium": 0.5,
                "expected": {"high": {"precision": 0.91, "recall": 0.8, "share": 0.001}},
            },
        },
        performance=performance,
        alert_messages_sent=2,
        **extra,
    )


PERFORMANCE = {
    "date": DATE,
    "model_version": "20260401-000000-abcd",
    "labelled": 9_000,
    "label_coverage": 0.9,
    "fraud": 31,
    "alerted": 120,
    "alert_precision": 0.2,
    "high_risk_threshold": 0.62,
    "realised_false_positive_rate_at_threshold": 0.0106,
    "realised_precision_at_threshold": 0.2,
    "realised_recall_at_threshold": 0.77,
    "missed_fraud": 7,
    "missed_fraud_amount": 1234.5,
    "roc_auc": None,
    "pr_auc": 0.7,
}


def test_the_page_escapes_data_and_shows_the_day():
    page = report_lib.render_html(figures(PERFORMANCE))
    assert HOSTILE not in page and "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "electronics &amp; games" in page
    assert page.count("<svg") == 3 and 'id="trend-average-score"' in page and 'id="risk-distribution"' in page
    assert "10,002" in page and "20260401-000000-abcd" in page and "target_recall 0.8" in page
    assert "confirmed fraud" in page and "1.06%" in page  # the false positive rate, from performance/{date}.json
    # ranked: the highest score first
    assert page.index("txn-0001") < page.index("txn-0002") < page.index("txn-0119")
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page


INVESTIGATOR = {
    "alert_budget": 100,
    "precision_at_k": 0.31,
    "card_precision_at_k": 0.42,
    "compromised_cards_found": 42,
    "compromised_cards": 57,
}


def test_investigator_measures_per_labelled_day_and_the_alerts_held_back():
    earlier = [
        {"date": "2026-04-27", "model_version": OLD_MODEL, "labelled": 8_000, **INVESTIGATOR, "precision_at_k": 0.25},
        {"date": "2026-04-28", "model_version": MODEL, "labelled": 0, **INVESTIGATOR},  # no labels yet: not a row
        {"date": "2026-04-29", "model_version": MODEL, "labelled": 7_000},  # written before the measures: n/a
    ]
    shown = figures({**PERFORMANCE, **INVESTIGATOR}, performance_history=earlier, alerts_held_back=20, alert_budget=100)
    assert [d["date"] for d in shown["investigator_days"]] == ["2026-04-27", "2026-04-29", DATE]
    page = report_lib.render_html(shown)
    table = page[page.index('<table id="investigator">') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr>") == 4  # the header and three labelled days
    assert "25.00%" in table and "31.00%" in table and "42.00%" in table and "42 of 57" in table and "n/a of n/a" in table
    assert 'id="trend-precision-at-k"' in page and 'id="trend-card-precision-at-k"' in page
    assert "precision@k (top-k transactions confirmed as fraud)" in page  # today's row in the performance table
    assert "20 further high-risk transactions were held back by the alert budget of 100" in page
    headline = report_lib.headline(shown)
    assert (headline["precision_at_k"], headline["card_precision_at_k"], headline["compromised_cards_found"]) == (0.31, 0.42, 42)
    assert headline["alerts_held_back"] == 20
    # Before labels: no row, no chart, and NaN (not 0) in the metadata.
    before = figures(None)
    assert before["investigator_days"] == [] and "No labelled day yet" in report_lib.render_html(before)
    assert np.isnan(report_lib.headline(before)["precision_at_k"]) and "held back" not in report_lib.render_html(before)


def test_the_drift_headline_says_what_the_drift_checks_say():
    # A day without average-score or high-risk drift whose score PSI fails its check: the page must
    # not say "No drift" above the failing PSI, and its metadata counts the warning.
    calm_record = {
        "driftDetected": False,
        "reason": "within thresholds over 29 days of history",
        "avgScoreDrift": 0.01,
        "highRiskDrift": 0.0,
    }
    warned = figures(PERFORMANCE, drift={**calm_record, "scorePsi": 3.1, "maxFeaturePsi": 0.05})
    page = report_lib.render_html(warned)
    assert "No drift" not in page and "Drift warning" in page and "scorePsi 3.1000 above 0.25" in page
    assert report_lib.headline(warned)["drift_warnings"] == 1 and not report_lib.headline(warned)["drift_detected"]
    calm = figures(PERFORMANCE, drift={**calm_record, "scorePsi": 0.02, "maxFeaturePsi": 0.05})
    page = report_lib.render_html(calm)
    assert "No drift" in page and "Drift warning" not in page and report_lib.headline(calm)["drift_warnings"] == 0


def alert_ids_on_the_page(page: str) -> list[str]:
    body = page[page.index('<table id="alerts">') :].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row)[1] for row in body.split("</tr>") if "<td" in row]


def test_alerts_are_listed_as_the_sns_messages_rank_them_ties_by_raw_score():
    f = figures(PERFORMANCE, alerts=97)
    page = report_lib.render_html(f)
    shown = alert_ids_on_the_page(page)
    # 85 alerts score exactly 1.0: among them the higher raw score first, then the rest by score.
    assert shown[:3] == ["txn-&quot;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;", "txn-0001", "txn-0002"]
    assert shown[1:] == [f"txn-{i:04d}" for i in range(1, 97)]
    # The same order as the SNS messages, built from the same alerts in whatever order they come.
    sent = [a["transactionId"] for m in alert_messages(f["alerts"][::-1], DATE) for a in m["alerts"]]
    assert [a["transactionId"] for a in f["alerts"]] == sent
    assert "<th>raw score</th>" in page and "<td class=num>0.999890</td>" in page  # txn-0001's raw score, told apart from 0.999880


def trend_chart(page: str, chart_id: str) -> str:
    return page[page.index(f'id="{chart_id}"') :].split("</svg>", 1)[0]


@pytest.mark.parametrize("chart_id, zero", [("trend-average-score", "0.0000"), ("trend-high-risk-share", "0.00%")])
def test_trend_axes_start_at_zero_so_heights_compare(chart_id, zero):
    chart = trend_chart(report_lib.render_html(figures(PERFORMANCE)), chart_id)
    [axis_y] = [float(y) for y in re.findall(r'<line[^>]* y1="([\d.]+)"[^>]*stroke="#555"', chart)]  # the x axis
    [zero_y] = [float(y) for y in re.findall(r'<text[^>]* y="([\d.]+)"[^>]*>' + re.escape(zero) + "</text>", chart)]
    assert zero_y == pytest.approx(axis_y, abs=5)  # 0 is labelled, at the axis
    # Every point's height above the axis is proportional to its value: twice the value, twice the height.
    key = "avg_score" if chart_id == "trend-average-score" else "high_risk_pct"
    values = [t[key] for t in figures(PERFORMANCE)["trend"]]
    heights = [axis_y - float(cy) for cy in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', chart)]
    assert len(heights) == len(values) == 30
    assert np.allclose(np.array(heights) / np.array(values), heights[-1] / values[-1], rtol=0.02)


def test_a_change_of_model_version_is_marked_on_both_trend_charts():
    f = figures(PERFORMANCE)
    assert [t["model_version"] for t in f["trend"]][-1] == MODEL  # today's record names none: the day's model
    page = report_lib.render_html(f)
    for chart_id in ("trend-average-score", "trend-high-risk-share"):
        chart = trend_chart(page, chart_id)
        [x] = re.findall(r'<line class="model-change" x1="([\d.]+)"', chart)
        days = [float(cx) for cx in re.findall(r'<circle cx="([\d.]+)"', chart)]
        assert days[13] < float(x) < days[14]  # between 2026-04-14 (old model) and 2026-04-15 (new)
        assert f">model {MODEL} from 2026-04-15</text>" in chart
    # A day whose record names no model is no change; one model throughout, no marker.
    trend = [{**t, "model_version": None if i == 20 else MODEL} for i, t in enumerate(f["trend"])]
    assert "model-change" not in report_lib.render_html({**f, "trend": trend})


def test_without_labels_the_report_says_so_and_the_headline_has_nan():
    f = figures(None, alerts=0)
    page = report_lib.render_html(f)
    assert "No labels for this day yet" in page and "No high-risk transactions today" in page
    headline = report_lib.headline(f)
    assert headline["transactions_processed"] == 10_002 and headline["high_risk"] == 0
    assert np.isnan(headline["alert_precision"]) and np.isnan(headline["confirmed_fraud"])
    assert report_lib.headline(figures(PERFORMANCE))["false_positive_rate"] == pytest.approx(0.0106)


def test_report_key_takes_only_a_date():
    assert report_lib.report_key(DATE) == f"reports/fraud-daily-{DATE}.html"
    with pytest.raises(ValueError):
        report_lib.report_key("../../etc")


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1100,1400",
)


def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(
    chromium_paths() is None,
    reason="chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver; .ci/run does this)",
)
def test_the_page_renders_in_headless_chromium_with_its_charts(tmp_path, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium manager must never try to download a driver
    page = tmp_path / "report.html"
    page.write_text(report_lib.render_html(figures(PERFORMANCE)), encoding="utf-8")
    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        driver.get(page.as_uri())
        assert driver.title == f"Fraud report {DATE}"
        charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert {c.get_attribute("id") for c in charts} == {"risk-distribution", "trend-average-score", "trend-high-risk-share"}
        for chart in charts:
            assert chart.size["width"] > 300 and chart.size["height"] > 100
            assert chart.find_elements(By.CSS_SELECTOR, "rect, polyline")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#alerts tbody tr")) == 120
        for chart in (c for c in charts if c.get_attribute("id").startswith("trend-")):
            # The model change drawn, its label whole inside the chart.
            [label] = chart.find_elements(By.CSS_SELECTOR, "text.model-change-label")
            assert label.is_displayed() and chart.find_elements(By.CSS_SELECTOR, "line.model-change")
            box, frame = label.rect, chart.rect
            assert frame["x"] <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"] and box["width"] > 150
        assert len(driver.find_elements(By.TAG_NAME, "script")) == 0  # the hostile merchant stayed text
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        if os.environ.get("FRAUD_REPORT_SCREENSHOT"):  # to look at it: FRAUD_REPORT_SCREENSHOT=/tmp/report.png
            shutil.copy(shot, os.environ["FRAUD_REPORT_SCREENSHOT"])
    finally:
        driver.quit()
