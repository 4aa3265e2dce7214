from datetime import datetime, timedelta

from airflow.sdk import Connection, Variable, dag, task

ARGS = {"owner": "recon@example.com", "retries": 1, "execution_timeout": timedelta(minutes=30)}


@dag(dag_id="recon__secrets", schedule=None, start_date=datetime(2025, 1, 1), tags=["team:recon"], default_args=ARGS)
def secrets_use():
    @task
    def read():
        Connection.get("recon_warehouse")
        Variable.get("recon_export_path")
        Variable.get("recon_undeclared_variable")
        return "{{ conn.recon_templated_conn.host }}"

    read()


secrets_use()
