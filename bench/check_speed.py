"""Benchmark: `ariel check` against a plain DagBag import of the same 200 DAG files.

The plain import is the usual pytest DAG-integrity test; `ariel check` imports the same files the
same way and runs every rule on top. Target: ratio check/plain at most 1.5.
The last line printed is one JSON object with the figures and the ratio.

    python bench/check_speed.py [--files 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ariel_airflow.template import generate_team_repo

DAG_TEMPLATE = '''"""Generated DAG {n}: extract, wait, transform in parallel, load, report."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import Connection, Variable, dag, task

from ariel_airflow.profiles import profile

DEFAULT_ARGS = {{
    "owner": "bench@example.com",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "execution_timeout": timedelta(minutes=30),
}}


def export_ready() -> bool:
    return bool(Variable.get("bench_export_path"))


@dag(
    dag_id="bench__pipeline_{n:03d}",
    schedule="{schedule}",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["team:bench", "generated"],
    default_args=DEFAULT_ARGS,
)
def pipeline_{n:03d}():
    start = EmptyOperator(task_id="start")
    wait = PythonSensor(
        task_id="wait_for_export",
        python_callable=export_ready,
        mode="reschedule",
        poke_interval=300,
        timeout=6 * 3600,
        executor_config=profile("small"),
    )

    @task(executor_config=profile("small"))
    def extract() -> list[int]:
        warehouse = Connection.get("bench_warehouse")
        return [len(warehouse.host or ""), {n}]

    @task(executor_config=profile("medium"))
    def transform(rows: list[int], part: int) -> int:
        return sum(rows) * part

    @task(executor_config=profile("small"))
    def load(totals: list[int]) -> int:
        return sum(totals)

    @task(executor_config=profile("small"))
    def report(total: int) -> None:
        print(f"pipeline {n} loaded {{total}}")

    rows = extract()
    totals = [transform.override(task_id=f"transform_{{part}}")(rows, part) for part in range(4)]
    start >> wait >> rows
    report(load(totals))


pipeline_{n:03d}()
'''

PLAIN_DAGBAG = """
import sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
print(len(bag.dags))
"""


def make_repo(workdir: Path, files: int) -> Path:
    repo = generate_team_repo(workdir / "bench", "bench", include_examples=False)
    schedules = ["@daily", "@hourly", "0 6 * * 1-5", "@weekly"]
    for n in range(files):
        text = DAG_TEMPLATE.format(n=n, schedule=schedules[n % len(schedules)])
        (repo / "dags" / f"pipeline_{n:03d}.py").write_text(text)
    secrets = {
        "connections": {"bench_warehouse": {"type": "postgres", "description": "warehouse"}},
        "variables": {"bench_export_path": {"description": "export folder"}},
    }
    (repo / "secrets.yaml").write_text(yaml.safe_dump(secrets))
    return repo


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is kept")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ariel-bench-check-"))
    try:
        repo = make_repo(workdir, args.files)
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(workdir / "airflow-home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        plain_runs, check_runs = [], []
        for _ in range(args.repeat):
            seconds, done = timed([sys.executable, "-c", PLAIN_DAGBAG, str(repo / "dags")], env)
            if done.returncode != 0 or int(done.stdout.split()[-1]) != args.files:
                sys.exit(f"plain DagBag import failed:\n{done.stderr[-2000:]}")
            plain_runs.append(seconds)
            seconds, done = timed(
                [sys.executable, "-m", "ariel_airflow", "check", str(repo), "--format", "json"], env
            )
            if done.returncode != 0:
                sys.exit(
                    f"ariel check failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
                )
            check_runs.append(seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    plain, check = min(plain_runs), min(check_runs)
    runs = {
        "plain": ", ".join(f"{s:.2f}" for s in plain_runs),
        "check": ", ".join(f"{s:.2f}" for s in check_runs),
    }
    print(f"plain DagBag import of {args.files} files  {plain:6.2f} s  (runs: {runs['plain']})")
    print(f"ariel check, every rule             {check:6.2f} s  (runs: {runs['check']})")
    print(f"ratio check/plain                   {check / plain:6.2f}  (target <= 1.5)")
    print(
        json.dumps(
            {
                "figures": {"files": args.files, "plain_s": round(plain, 2), "check_s": round(check, 2)},
                "ratios": {"check_vs_plain": round(check / plain, 3)},
            }
        )
    )


if __name__ == "__main__":
    main()
