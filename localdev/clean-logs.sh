#!/usr/bin/env bash
# The chart's log-groomer sidecars run `bash /clean-logs`, the official Airflow image's contract:
# every AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES, delete the log files under $AIRFLOW_HOME/logs older
# than AIRFLOW__LOG_RETENTION_DAYS days, then the directories left empty. (Task logs are in Blob
# Storage; these are the components' own: the dag-processor's per-file logs, the scheduler's.)
set -euo pipefail
days="${AIRFLOW__LOG_RETENTION_DAYS:-15}"
every="${AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES:-15}"
logs="${AIRFLOW_HOME:-/opt/airflow}/logs"
while true; do
    find "$logs" -mindepth 1 -type f -name '*.log*' -mtime +"$days" -delete 2>/dev/null || true
    find "$logs" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    sleep "$((every * 60))"
done
