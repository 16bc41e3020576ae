"""History features on the simulated world (issue #21): what they add to the model, and what keeping
their aggregates in DynamoDB costs.

Quality. `--days` world days (customers, terminals, the four fraud scenarios), history features
computed point in time over all of them (label delay = the delay period), then time-ordered windows
as in the Fraud Detection Handbook (Le Borgne et al., "Baseline fraud detection system"): train
days, validation days (early stopping), a delay period whose labels are not known yet, test days.
The last window ends on the last day; each further window ends `--test-days` earlier. The same
xgboost (the platform's train_model and default hyperparameters) is trained on the features the
platform uses without customers (V1..V28, Amount, Time, time and amount features) and with the
history features added; test ROC-AUC, PR-AUC (scikit-learn) and Precision@k / Card Precision@k per
test day (lib/inference/investigator, k = the alert budget) averaged over the test days.

Cost. On the embedded stack (moto over HTTP on 127.0.0.1, as the assets use it): the aggregates
table is filled with the 30 days before a day D, then for `--maintenance-days` days the three
calls the daily assets make are timed: serving the day's history (daily_scores: serve_history),
storing its transactions (feature_aggregates: store_customer_day) and the labelled day D-L's
terminal counts (terminal_risk_aggregates: store_terminal_days). Baselines in the same process:
raw boto3 BatchGetItem of the same items (serving), BatchGetItem + BatchWriteItem of the same
items (customers: the least a read-modify-write does) and BatchWriteItem of the same items
(terminals: the cheapest way to land the same state; the asset uses one UpdateItem per terminal so
that label days written concurrently never overwrite each other). Per 10,000 transactions: seconds, DynamoDB calls and request units by
DynamoDB's item-size rules (what on-demand capacity bills).

    python -m benchmarks.bench_history [--days 180] [--per-day 5000] [--windows 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from fraud_assets.lib.aws.dynamodb_batches import MAX_GET_KEYS, MAX_WRITE_REQUESTS
from fraud_assets.lib.config import LABEL_COLUMN
from fraud_assets.lib.features import aggregates, history, serving, store
from fraud_assets.lib.inference.investigator import investigator_measures
from fraud_assets.lib.seeding.world import SCENARIO_COLUMN, world_history
from fraud_assets.lib.training.features import add_features, engineered_feature_names, fit_feature_stats
from fraud_assets.lib.training.model import DEFAULT_HYPERPARAMETERS, train_model

START = "2026-01-01"
FEATURE_SETS = {"without history": False, "with history": True}


# --------------------------------------------------------------------------- quality


def world_with_history(days: int, per_day: int, delay_days: int, seed: int) -> pd.DataFrame:
    frame = world_history(START, days, per_day, seed=seed)
    frame = pd.concat([frame, history.history_features(frame, label_delay_days=delay_days)], axis=1)
    frame["day"] = (history.timestamp_micros(frame["timestamp"]) // history.MICROS_PER_DAY).astype(np.int64)
    frame["day"] -= frame["day"].min()
    return frame


def window_days(end: int, train: int, validation: int, delay: int, test: int) -> dict[str, tuple[int, int]]:
    """[first, last) day numbers of each period, the test period ending at `end`."""
    test_start = end - test
    validation_end = test_start - delay
    train_end = validation_end - validation
    return {
        "train": (train_end - train, train_end),
        "validation": (train_end, validation_end),
        "delay": (validation_end, test_start),
        "test": (test_start, end),
    }


def daily_investigator(test: pd.DataFrame, scores: np.ndarray, budget: int) -> dict[str, float]:
    per_day = []
    for _, rows in test.assign(fraudScore=scores, isFraud=test[LABEL_COLUMN].astype(bool)).groupby("day"):
        per_day.append(investigator_measures(rows, budget))
    return {
        "precision_at_k": statistics.fmean(d["precision_at_k"] for d in per_day),
        "card_precision_at_k": statistics.fmean(d["card_precision_at_k"] for d in per_day),
        "compromised_cards_found_per_day": statistics.fmean(d["compromised_cards_found"] for d in per_day),
        "compromised_cards_per_day": statistics.fmean(d["compromised_cards"] for d in per_day),
    }


def scenario_caught(test: pd.DataFrame, scores: np.ndarray, budget: int) -> dict[str, float]:
    """Per fraud scenario, the share of its test frauds among their day's `budget` highest scores."""
    ranked = test.assign(score=scores)
    ranked["top"] = ranked.groupby("day")["score"].rank(method="first", ascending=False) <= budget
    frauds = ranked[ranked[LABEL_COLUMN] == 1]
    return {str(k): round(float(v), 3) for k, v in frauds.groupby(SCENARIO_COLUMN)["top"].mean().items()}


def quality(frame: pd.DataFrame, args) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    last = int(frame["day"].max()) + 1
    windows = []
    for w in range(args.windows):
        periods = window_days(last - w * args.test_days, args.train_days, args.validation_days, args.delay_days, args.test_days)
        if periods["train"][0] < history.HISTORY_DAYS:
            raise SystemExit(f"window {w} starts on day {periods['train'][0]}: generate more --days (30 days of history first)")
        part = {name: frame[frame["day"].between(a, b - 1)] for name, (a, b) in periods.items()}
        stats = fit_feature_stats(part["train"])
        train, validation, test = (add_features(part[n], stats) for n in ("train", "validation", "test"))
        labels = test[LABEL_COLUMN].to_numpy()
        result = {"periods": periods, "rows": {n: len(part[n]) for n in part}, "test_frauds": int(labels.sum()), "sets": {}}
        for name, with_history in FEATURE_SETS.items():
            started = time.perf_counter()
            trained = train_model(train, validation, DEFAULT_HYPERPARAMETERS, engineered_feature_names(with_history))
            scores = trained.predict(test)
            result["sets"][name] = {
                "roc_auc": float(roc_auc_score(labels, scores)),
                "pr_auc": float(average_precision_score(labels, scores)),
                **daily_investigator(test, scores, args.budget),
                "caught_by_scenario": scenario_caught(test, scores, args.budget),
                "rounds": trained.best_iteration + 1,
                "train_seconds": round(time.perf_counter() - started, 1),
            }
        windows.append(result)
    summary = {
        name: {
            key: statistics.fmean(w["sets"][name][key] for w in windows)
            for key in (
                "roc_auc",
                "pr_auc",
                "precision_at_k",
                "card_precision_at_k",
                "compromised_cards_found_per_day",
                "compromised_cards_per_day",
            )
        }
        for name in FEATURE_SETS
    }
    return {"windows": windows, "mean": summary}


# --------------------------------------------------------------------------- maintenance cost


def attribute_bytes(value: dict) -> int:
    """An attribute value's size by DynamoDB's item-size rules: strings their UTF-8 length, numbers
    about one byte per two significant digits plus one, lists 3 bytes plus 1 per element. The rules
    are documented (DynamoDB developer guide, "Item sizes and formats"); no library computes them."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = inner.lstrip("-").replace(".", "").split("e")[0].split("E")[0].strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "L":
        return 3 + sum(1 + attribute_bytes(v) for v in inner)
    raise ValueError(f"unexpected attribute type {kind}")


def item_bytes(item: dict) -> int:
    return sum(len(name.encode()) + attribute_bytes(value) for name, value in item.items())


def raw_get(dynamodb, table: str, keys: list[str]) -> list[dict]:
    items = []
    for start in range(0, len(keys), MAX_GET_KEYS):
        request = {table: {"Keys": [{store.ENTITY_KEY: {"S": k}} for k in keys[start : start + MAX_GET_KEYS]], "ConsistentRead": True}}
        while request:
            response = dynamodb.batch_get_item(RequestItems=request)
            items += response["Responses"].get(table, [])
            request = response.get("UnprocessedKeys") or {}
    return items


def raw_updates(dynamodb, table: str, labelled: pd.DataFrame, date: str, workers: int = 8) -> None:
    """The same UpdateItem calls the asset makes (one per terminal: its day's [tx, frauds]), from
    plain boto3 in as many threads."""
    counts = labelled.groupby("merchant")[LABEL_COLUMN].agg(["size", "sum"])

    def update(merchant: str, tx: int, fraud: int) -> None:
        dynamodb.update_item(
            TableName=table,
            Key={store.ENTITY_KEY: {"S": store.TERMINAL_PREFIX + merchant}},
            UpdateExpression="SET #d = :c",
            ExpressionAttributeNames={"#d": store.DAY_ATTRIBUTE_PREFIX + date},
            ExpressionAttributeValues={":c": {"L": [{"N": str(tx)}, {"N": str(fraud)}]}},
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda row: update(str(row[0]), int(row[1]), int(row[2])), counts.itertuples()))


def raw_put(dynamodb, table: str, items: list[dict]) -> None:
    for start in range(0, len(items), MAX_WRITE_REQUESTS):
        request = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + MAX_WRITE_REQUESTS]]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


def write_units(items: list[dict]) -> int:
    return sum(math.ceil(item_bytes(i) / 1024) for i in items)


def read_units(items: list[dict]) -> int:
    """BatchGetItem with consistent reads: 1 unit per 4 KB of each item."""
    return sum(math.ceil(item_bytes(i) / 4096) for i in items)


def labelled_day(frame: pd.DataFrame, day: int) -> pd.DataFrame:
    return frame[frame["day"] == day]


def maintenance(frame: pd.DataFrame, args) -> dict:
    import boto3

    from fraud_assets.lib.config import PlatformNames
    from fraud_assets_local.stack import LocalStack

    first = int(frame["day"].max()) + 1 - args.maintenance_days
    days = [first + i for i in range(args.maintenance_days)]
    date_of = {d: (dt.date.fromisoformat(START) + dt.timedelta(days=d)).isoformat() for d in range(first - 40, first + len(days))}
    runs = []
    with LocalStack() as stack:
        os.environ.update(stack.env())
        dynamodb = boto3.client("dynamodb")
        table = PlatformNames.from_env().aggregates_table
        started = time.perf_counter()
        # The 30 days before the first: customers as the first partition's raw-tail bootstrap does,
        # terminals' labelled days up to D-L-1 in one UpdateItem per terminal.
        tail = frame[frame["day"].between(first - history.HISTORY_DAYS, first - 1)]
        aggregates.store_customer_day(dynamodb, table, tail.iloc[:0], date_of[first - 1], raw_tail=tail)
        known = frame[frame["day"].between(first - args.label_delay - history.HISTORY_DAYS - 1, first - args.label_delay - 2)]
        aggregates.store_terminal_days(dynamodb, table, known, None, args.label_delay)
        setup_seconds = time.perf_counter() - started

        for day in days:
            batch = frame[frame["day"] == day]
            labelled = labelled_day(frame, day - args.label_delay - 1)  # the labels that arrive on day D
            # In the assets' order: the labels of D-L-1 (fraud_labels), serving D (daily_scores,
            # which reads customers up to D-1 and terminals up to D-L-1), then storing D.
            t0 = time.perf_counter()
            terminals = aggregates.store_terminal_days(dynamodb, table, labelled, date_of[day - args.label_delay - 1], args.label_delay)
            t1 = time.perf_counter()
            served = serving.serve_history(dynamodb, table, date_of[day], batch, args.label_delay)
            t2 = time.perf_counter()
            customers = aggregates.store_customer_day(dynamodb, table, batch, date_of[day])
            t3 = time.perf_counter()

            customer_keys = [store.CUSTOMER_PREFIX + c for c in batch["customerId"].dropna().astype(str).unique()]
            terminal_keys = [store.TERMINAL_PREFIX + m for m in batch["merchant"].dropna().astype(str).unique()]
            labelled_keys = [store.TERMINAL_PREFIX + m for m in labelled["merchant"].dropna().astype(str).unique()]
            r0 = time.perf_counter()
            read_items = raw_get(dynamodb, table, customer_keys) + raw_get(dynamodb, table, terminal_keys)
            r1 = time.perf_counter()
            customer_items = raw_get(dynamodb, table, customer_keys)
            raw_put(dynamodb, table, customer_items)
            r3 = time.perf_counter()
            terminal_items = raw_get(dynamodb, table, labelled_keys)
            r4 = time.perf_counter()
            raw_put(dynamodb, table, terminal_items)
            r5 = time.perf_counter()
            raw_updates(dynamodb, table, labelled, date_of[day - args.label_delay - 1])
            r6 = time.perf_counter()
            runs.append(
                {
                    "date": date_of[day],
                    "transactions": len(batch),
                    "labelled": len(labelled),
                    "serve": {
                        "seconds": t2 - t1,
                        "baseline_seconds": r1 - r0,
                        "calls": math.ceil(len(customer_keys) / 100) + math.ceil(len(terminal_keys) / 100),
                        "read_units": read_units(read_items),
                        "items": len(read_items),
                        "history_rows_read": served.customer_transactions_read + served.terminal_days_read,
                    },
                    "customers": {
                        "seconds": t3 - t2,
                        "baseline_seconds": r3 - r1,
                        "calls": customers.calls,
                        "write_units": write_units(customer_items),
                        "read_units": read_units(customer_items),
                        "items": len(customer_items),
                    },
                    "terminals": {
                        "seconds": t1 - t0,
                        "baseline_seconds": r6 - r5,
                        "batch_write_seconds": r5 - r4,
                        "calls": terminals.calls,
                        "write_units": write_units(terminal_items),
                        "items": len(terminal_items),
                    },
                }
            )
    per = per_10k(runs)
    write = sum(p["write_units"] for p in per.values())
    read = sum(p["read_units"] for p in per.values())
    cost = {
        "usd_per_million_write_units": args.usd_per_million_write_units,
        "usd_per_million_read_units": args.usd_per_million_read_units,
        "write_units": round(write),
        "read_units": round(read),
        "usd": (write * args.usd_per_million_write_units + read * args.usd_per_million_read_units) / 1e6,
    }
    return {"setup_seconds": round(setup_seconds, 1), "days": runs, "per_10k": per, "on_demand_usd_per_10k": cost}


def per_10k(runs: list[dict]) -> dict:
    tx = sum(r["transactions"] for r in runs)
    out = {}
    for part in ("serve", "customers", "terminals"):
        total = lambda key: sum(r[part].get(key, 0) for r in runs)  # noqa: E731
        out[part] = {
            "seconds": total("seconds") / tx * 10_000,
            "baseline_seconds": total("baseline_seconds") / tx * 10_000,
            "ratio": total("seconds") / total("baseline_seconds"),
            "batch_write_seconds": total("batch_write_seconds") / tx * 10_000,
            "calls": total("calls") / tx * 10_000,
            "write_units": total("write_units") / tx * 10_000,
            "read_units": total("read_units") / tx * 10_000,
            "items": total("items") / tx * 10_000,
        }
    return out


# --------------------------------------------------------------------------- report


def markdown(result: dict, budget: int) -> str:
    lines = [
        f"| features | ROC-AUC | PR-AUC | Precision@{budget} | Card Precision@{budget} | compromised cards found / day (of) |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in result["quality"]["mean"].items():
        lines.append(
            f"| {name} | {m['roc_auc']:.3f} | {m['pr_auc']:.3f} | {m['precision_at_k']:.3f} | {m['card_precision_at_k']:.3f} | {m['compromised_cards_found_per_day']:.1f} ({m['compromised_cards_per_day']:.1f}) |"
        )
    if "maintenance" in result:
        lines += [
            "",
            "| per 10,000 transactions | seconds | raw boto3 baseline | seconds | ratio | DynamoDB calls | items | write units | read units |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        per = result["maintenance"]["per_10k"]
        for part, label, baseline in (
            ("serve", "serve history (daily_scores)", "BatchGetItem"),
            ("customers", "customer items (feature_aggregates)", "BatchGetItem + BatchWriteItem"),
            ("terminals", "terminal items (terminal_risk_aggregates)", "UpdateItem, 8 threads"),
        ):
            m = per[part]
            lines.append(
                f"| {label} | {m['seconds']:.2f} | {baseline} | {m['baseline_seconds']:.2f} | {m['ratio']:.2f}x | {m['calls']:.0f} | {m['items']:.0f} | {m['write_units']:.0f} | {m['read_units']:.0f} |"
            )
        cost = result["maintenance"]["on_demand_usd_per_10k"]
        lines += [
            "",
            f"Terminal items as raw BatchWriteItem instead: {per['terminals']['batch_write_seconds']:.2f} s "
            f"(not safe when label days are written concurrently). On-demand DynamoDB at "
            f"${cost['usd_per_million_write_units']}/M write and ${cost['usd_per_million_read_units']}/M read units: "
            f"${cost['usd']:.4f} per 10,000 transactions.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--per-day", type=int, default=5000)
    parser.add_argument("--train-days", type=int, default=21)
    parser.add_argument("--validation-days", type=int, default=7)
    parser.add_argument("--delay-days", type=int, default=7, help="the delay period; the history features' label delay")
    parser.add_argument("--test-days", type=int, default=14)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--budget", type=int, default=100, help="k of Precision@k and Card Precision@k")
    parser.add_argument("--maintenance-days", type=int, default=3, help="0 skips the cost part")
    parser.add_argument("--label-delay", type=int, default=1, help="the platform's label delay for the cost part")
    # us-east-1 on-demand prices (since November 2024); pass your region's.
    parser.add_argument("--usd-per-million-write-units", type=float, default=0.625)
    parser.add_argument("--usd-per-million-read-units", type=float, default=0.125)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()

    started = time.perf_counter()
    frame = world_with_history(args.days, args.per_day, args.delay_days, args.seed)
    result: dict = {
        "args": vars(args),
        "rows": len(frame),
        "fraud_rate": float(frame[LABEL_COLUMN].mean()),
        "features_seconds": round(time.perf_counter() - started, 1),
    }
    result["quality"] = quality(frame, args)
    if args.maintenance_days:
        result["maintenance"] = maintenance(frame, args)
    result["table"] = markdown(result, args.budget)
    print(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2, default=str))
    print(result["table"])
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=str)


if __name__ == "__main__":
    main()
