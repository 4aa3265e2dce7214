from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="orphan_dag", schedule=None, start_date=datetime(2025, 1, 1))
def orphan():
    @task
    def bare():
        pass

    bare()


orphan()
