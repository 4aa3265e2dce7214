from datetime import datetime, timedelta

from airflow.providers.microsoft.azure.sensors.wasb import WasbBlobSensor
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import dag

ARGS = {"owner": "recon@example.com", "retries": 1, "execution_timeout": timedelta(minutes=30)}


@dag(dag_id="recon__sensors", schedule=None, start_date=datetime(2025, 1, 1), tags=["team:recon"], default_args=ARGS)
def sensors():
    PythonSensor(task_id="poke_forever", python_callable=lambda: True, mode="poke")
    PythonSensor(task_id="poke_short", python_callable=lambda: True, mode="poke", timeout=1800)
    PythonSensor(task_id="reschedule_long", python_callable=lambda: True, mode="reschedule", timeout=6 * 3600)
    PythonSensor(task_id="reschedule_default", python_callable=lambda: True, mode="reschedule")
    blob = {"container_name": "in", "blob_name": "x.csv", "wasb_conn_id": "recon_blob", "timeout": 1800}
    WasbBlobSensor(task_id="deferred_with_team_connection", deferrable=True, **blob)
    WasbBlobSensor(task_id="rescheduled_with_team_connection", mode="reschedule", **blob)


sensors()
