from datetime import datetime, timedelta, timezone

from airflow.sdk import dag, task

ARGS = {"owner": "recon@example.com", "retries": 1, "execution_timeout": timedelta(minutes=30)}
NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


@dag(dag_id="recon__catchup_storm", schedule="@hourly", start_date=NOW - timedelta(days=4), catchup=True,
     tags=["team:recon"], default_args=ARGS)
def storm():
    @task
    def work():
        pass

    work()


@dag(dag_id="recon__catchup_bounded", schedule="@daily", start_date=NOW - timedelta(days=3), catchup=True,
     max_active_runs=1, tags=["team:recon"], default_args=ARGS)
def bounded():
    @task
    def work():
        pass

    work()


storm()
bounded()
