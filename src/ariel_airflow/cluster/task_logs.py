"""Task logs in Azure Blob Storage, kept apart by team.

Airflow's Blob log handler (``WasbRemoteLogIO``) takes the storage account from its connection and
the container from ``[azure_remote_logging] remote_wasb_log_container`` (default "airflow-logs");
``remote_base_log_folder`` after ``wasb://`` is only a prefix of blob names. Render sets all three
from the environment file's ``task_logs``, so none is left to a default.

A log's blob is ``tasks/dag_id=<dag_id>/run_id=…/task_id=…/attempt=<n>.log`` (Airflow's default
``log_filename_template``), and every dag_id of a team starts with the team's prefix (the cluster
policies refuse others): each team's logs sit under ``tasks/dag_id=<team>__``. The task pod writes
its own log with the team's identity (the connection has no key: azure-identity's workload
identity), whose role assignment is conditioned on that prefix; the api-server reads every team's
with the platform's identity.
"""

from __future__ import annotations

import json
from typing import Any

from ariel_airflow.cluster.environments import Environment
from ariel_airflow.team import Team

CONNECTION_ID = "wasb_task_logs"
PREFIX = "tasks"


def connection(env: Environment) -> str:
    """The Blob connection, in Airflow's JSON form: the account only; the pod's identity signs in."""
    return json.dumps({"conn_type": "wasb", "host": env.task_logs.account_url})


def chart_values(env: Environment) -> dict[str, Any]:
    """The connection for every component and task pod (the chart's ``env``), and the log config."""
    return {
        "env": [{"name": f"AIRFLOW_CONN_{CONNECTION_ID.upper()}", "value": connection(env)}],
        "config": {
            "logging": {
                "remote_logging": "True",
                "remote_log_conn_id": CONNECTION_ID,
                "remote_base_log_folder": f"wasb://{PREFIX}",
            },
            "azure_remote_logging": {"remote_wasb_log_container": env.task_logs.container},
        },
    }


def team_prefix(team: Team) -> str:
    """The blob name prefix of ``team``'s task logs (its role assignment's condition)."""
    return f"{PREFIX}/dag_id={team.dag_id_prefix}"
