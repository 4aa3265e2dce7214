from airflow.sdk import dag

broken = (
