# Every target bootstraps .venv first: a fresh machine needs only Python 3.11, make and a JDK.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The SageMaker XGBoost container's scoring environment (XGBoost 1.7.6, NumPy 1.x) for the local
# model server: a venv of its own, since it cannot share .venv with the project's XGBoost 3.x and NumPy 2.
CONTAINER_VENV := .venv-container
CONTAINER_STAMP := $(CONTAINER_VENV)/.installed

.PHONY: install run test test-fast bench bench-scale check dev stack clean least-privilege

install: $(STAMP) $(CONTAINER_STAMP)

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

# Exactly requirements-container.lock (sync removes anything else); the model server imports the
# package from this checkout (PYTHONPATH, set by the stack), so nothing of the project is installed here.
$(CONTAINER_STAMP): requirements-container.lock | $(STAMP)
	test -x $(CONTAINER_VENV)/bin/python || $(PYTHON) -m venv --without-pip $(CONTAINER_VENV)
	$(BIN)/uv pip sync --quiet --python $(CONTAINER_VENV)/bin/python --require-hashes --compile-bytecode requirements-container.lock
	touch $(CONTAINER_STAMP)

# The main job on the embedded local AWS stack with synthetic data, as a story: train on the history;
# four calm days; from the fifth a fraud pattern the model never saw (it scores it as normal spending);
# labels arrive a day late and show realised recall collapse; once four labelled days are below the
# recall floor the drift sensor requests a retraining, which runs at once on the history plus the
# labelled days (the last two held out), beats the production model on those two days and is deployed;
# the following days' realised recall is back up. `--days 0` trains and deploys only.
run: install
	FRAUD_PERFORMANCE_DRIFT_DAYS=4 $(BIN)/fraud-assets run --days 11 --drift-last 7 --drift-kind new-pattern \
		--label-delay-days 1 --recent-window-days 2 --transactions-per-day 5000 --summary-json .fraud_assets/summary.json

# The suite on two workers, then the least-privilege comparison in a process of its own: it needs the
# calls of every e2e test, which xdist spreads over the workers, so the first run writes them all
# (collected from the workers) to a file and the second compares that file with the IAM policy.
# Skips print their reasons (-rs, pyproject.toml).
AWS_CALLS_FILE := .fraud_assets/test-e2e-aws-calls.json
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q -m "not least_privilege" --aws-calls-out=$(AWS_CALLS_FILE)
	$(BIN)/python -m pytest -n 0 -q -p no:logging -m least_privilege --aws-calls-in=$(AWS_CALLS_FILE)

# The e2e tests and the IAM comparison in one process: the code location's policy allows exactly what they call.
least-privilege: install
	$(BIN)/python -m pytest -n 0 -q -p no:logging -m "e2e or least_privilege" fraud_assets_tests

bench: install
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.bench_spark
	$(BIN)/python -m benchmarks.bench_analyst
	$(BIN)/python -m benchmarks.bench_launched
	$(BIN)/python -m benchmarks.bench_extraction --json .fraud_assets/bench_extraction.json
	$(BIN)/python -m benchmarks.bench_history --json .fraud_assets/bench_history.json

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
	rm -rf $(VENV) $(CONTAINER_VENV) .fraud_assets
