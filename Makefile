# Every target bootstraps .venv first: a fresh machine needs only Python 3.11, make and a JDK.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast bench bench-scale check dev stack clean least-privilege

install: $(STAMP)

# Reinstall only when the lock file or the package metadata changed.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	# Bytecode compiled at install: where PYTHONDONTWRITEBYTECODE is set no .pyc is ever written, and
	# every process (each run launched from the UI) would compile its imports again (+2.4 s measured).
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(BIN)/python -m compileall -q fraud_assets fraud_assets_local glue_scripts
	touch $(STAMP)

# The main job on the embedded local AWS stack with synthetic data, as a story: train on the history;
# four calm days; from the fifth a fraud pattern the model never saw (it scores it as normal spending);
# labels arrive a day late and show realised recall collapse; once four labelled days are below the
# recall floor the drift sensor requests a retraining, which runs at once on the history plus the
# labelled days (the last two held out), beats the production model on those two days and is deployed;
# the following days' realised recall is back up. `--days 0` trains and deploys only.
run: install
	FRAUD_PERFORMANCE_DRIFT_DAYS=4 $(BIN)/fraud-assets run --days 11 --drift-last 7 --drift-kind new-pattern \
		--label-delay-days 1 --recent-window-days 2 --transactions-per-day 5000 --summary-json .fraud_assets/summary.json

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

# The e2e tests and the IAM comparison in one process: the code location's policy allows exactly what they call.
least-privilege: install
	$(BIN)/python -m pytest -n 0 -q -p no:logging -m "e2e or least_privilege" fraud_assets_tests

bench: install
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.bench_spark
	$(BIN)/python -m benchmarks.bench_analyst
	$(BIN)/python -m benchmarks.bench_launched
	$(BIN)/python -m benchmarks.bench_extraction --json .fraud_assets/bench_extraction.json

# Heavy (tens of minutes, several GB): training at 284,807 and 2,848,070 rows on pandas and Spark,
# the daily graph at 10K, 100K and 1M transactions; wall, CPU and peak RSS per step.
bench-scale: install
	$(BIN)/python -m benchmarks.bench_scale --json .fraud_assets/bench_scale.json

# dg validates the code location as Dagster's tooling sees it (run inside the project's venv).
check: install
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(BIN)):$$PATH dg check defs

# Dagster UI against the embedded stack (started by `make stack` in another shell, or any AWS).
dev: install
	$(BIN)/fraud-assets dev

stack: install
	$(BIN)/fraud-assets local-stack --state-dir .fraud_assets/state

clean:
	rm -rf $(VENV) .fraud_assets
