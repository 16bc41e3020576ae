# The fraud_assets code-location image (Dagster+ Hybrid or open-source Dagster on ECS/EKS).
# Build: docker build -t fraud-assets .   (Dagster+ Hybrid: --build-arg DAGSTER_CLOUD_VERSION=1.13.27)
# It talks to AWS with the task's role (infra/fraud-detection.yaml: CodeLocationRole): no keys, no
# endpoint overrides. Spark local mode (engine=spark) would need a JRE as well; the image serves the
# pandas and glue engines.
FROM python:3.11-slim

ARG DAGSTER_CLOUD_VERSION=""
# The first daily partition (YYYY-MM-DD): where your daily batches start (empty: the code's fixed
# default, lib/config.py DEFAULT_FIRST_DAY). In the image, so the code server and every run worker
# load the same partitions; e.g. --build-arg FRAUD_FIRST_DAY=2025-03-01.
ARG FRAUD_FIRST_DAY=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DAGSTER_HOME=/opt/dagster/home FRAUD_FIRST_DAY=$FRAUD_FIRST_DAY

WORKDIR /opt/fraud_assets
# Exactly the locked, hash-checked dependencies, in a layer of their own (rebuilt only when the lock changes).
COPY requirements.lock pyproject.toml ./
RUN pip install --no-cache-dir "uv==0.13.9" \
 && uv pip install --system --no-cache --require-hashes --compile-bytecode -r requirements.lock \
 && if [ -n "$DAGSTER_CLOUD_VERSION" ]; then uv pip install --system --no-cache "dagster-cloud==$DAGSTER_CLOUD_VERSION"; fi

# The package, the Glue scripts it uploads and the template (paths resolve beside the package).
# Not the embedded AWS stack (fraud_assets_local/: moto and the model server, development and tests
# only; .dockerignore keeps it out of the context too): fraud_assets_tests/test_image.py loads this
# file set's code location without it.
COPY fraud_assets ./fraud_assets
COPY glue_scripts ./glue_scripts
COPY infra ./infra
COPY workspace.yaml dagster_cloud.yaml ./
RUN uv pip install --system --no-cache --no-deps -e . \
 && python -m compileall -q fraud_assets glue_scripts \
 && useradd --create-home --uid 10001 dagster && mkdir -p "$DAGSTER_HOME" && chown dagster "$DAGSTER_HOME"
USER dagster

EXPOSE 4000
# Open-source Dagster: the code server the webserver and daemon reach (workspace.yaml grpc_server).
# Dagster+ Hybrid's agent starts its own command in this image.
CMD ["dagster", "api", "grpc", "--host", "0.0.0.0", "--port", "4000", "--module-name", "fraud_assets.definitions"]
