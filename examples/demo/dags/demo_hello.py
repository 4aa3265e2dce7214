"""The demo team's DAG: reads a connection and a variable from the local secret files."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Connection, Variable, dag, task


@dag(
    dag_id="demo__hello",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["team:demo"],
    default_args={"owner": "demo", "retries": 1, "retry_delay": timedelta(seconds=10)},
)
def hello():
    @task(execution_timeout=timedelta(minutes=5))
    def read_secrets() -> str:
        conn = Connection.get("demo_api")
        greeting = Variable.get("demo_greeting")
        if conn.host != "api.demo.example" or not greeting:
            raise ValueError(f"unexpected secrets: host={conn.host!r} greeting={greeting!r}")
        return f"{greeting} ({conn.conn_type}://{conn.host})"

    read_secrets()


hello()
