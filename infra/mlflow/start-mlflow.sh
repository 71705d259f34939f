#!/bin/sh
# Writes the basic-auth config from the environment (no secret is ever in a file in
# the repository), then serves MLflow with PostgreSQL runs and S3 artifacts.
set -eu
: "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}" "${POSTGRES_DB:?}"
: "${MLFLOW_ADMIN_USER:?}" "${MLFLOW_ADMIN_PASSWORD:?}" "${MLFLOW_ARTIFACT_BUCKET:?}"
DB="postgresql://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/${POSTGRES_DB}"
cat > /tmp/basic_auth.ini <<INI
[mlflow]
default_permission = READ
database_uri = ${DB}
admin_username = ${MLFLOW_ADMIN_USER}
admin_password = ${MLFLOW_ADMIN_PASSWORD}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
export MLFLOW_AUTH_CONFIG_PATH=/tmp/basic_auth.ini
# Studies only track runs: MLflow's GenAI job runner (a runner and seven huey consumer
# processes per server) would take memory and start-up CPU for nothing.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
exec mlflow server \
    --app-name basic-auth \
    --host 0.0.0.0 --port 5000 \
    --backend-store-uri "${DB}" \
    --artifacts-destination "s3://${MLFLOW_ARTIFACT_BUCKET}" \
    --workers 4
