from datetime import datetime, timedelta

from airflow.sdk import dag, task

ARGS = {"owner": "recon@example.com", "retries": 1, "execution_timeout": timedelta(minutes=30)}


@dag(dag_id="recon__pools", schedule=None, start_date=datetime(2025, 1, 1), tags=["team:recon"], default_args=ARGS)
def pools():
    @task(pool="team-demo")
    def other_team():
        pass

    @task(pool="shared_database")
    def own_throttle():
        pass

    @task(pool="team-recon")
    def own_pool():
        pass

    @task
    def no_pool():
        pass

    @task(pool="team-demo")
    def mapped_other_team(n):
        pass

    other_team()
    own_throttle()
    own_pool()
    no_pool()
    mapped_other_team.expand(n=[1, 2])


pools()
