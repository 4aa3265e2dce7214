"""Task usage on a real native stack: a task over its profile's memory limit fails `trigger --wait`
though Airflow says success, one that fits passes, and `ariel local usage` suggests the profile."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ariel_airflow.localdev.state import free_port

from conftest import copy_demo_team, run_ariel

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MI = 2**20
# A task on the demo team's profile {profile} that holds {mib} MiB (every page written) for 3 seconds.
ALLOCATING_DAG = """
import time
from datetime import datetime, timedelta
from airflow.sdk import dag, task
from ariel_airflow.profiles import profile

@dag(dag_id="{dag_id}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False, tags=["team:demo"],
     default_args={{"owner": "demo", "retries": 0, "execution_timeout": timedelta(minutes=5)}})
def allocating():
    @task(executor_config=profile("{profile}"))
    def allocate():
        block = bytes([1]) * ({mib} * 2**20)  # written in C: every page, little CPU
        time.sleep(3)  # mostly idle, so its average cores stay under every profile's request
    allocate()

allocating()
"""


@pytest.fixture(scope="module")
def repo() -> Iterator[Path]:
    base = Path(os.environ.get("ARIEL_TEST_DIR", "/tmp")) / f"ariel-usage-{os.getpid()}"
    base.mkdir(mode=0o755, parents=True)
    repo = copy_demo_team(base / "team-demo")
    # small: 512Mi request, 768Mi limit; medium: 2Gi request, 3Gi limit (platform/resource_profiles.yaml).
    (repo / "dags" / "demo_hungry.py").write_text(
        ALLOCATING_DAG.format(dag_id="demo__hungry", profile="small", mib=1024)
    )
    (repo / "dags" / "demo_modest.py").write_text(
        ALLOCATING_DAG.format(dag_id="demo__modest", profile="medium", mib=100)
    )
    result = run_ariel(
        "local", "up", "--engine", "native", "--detach", "--port", str(free_port()), "--team-repo", str(repo)
    )
    assert result.returncode == 0, result.stderr
    yield repo
    run_ariel("local", "down", "--purge", "--team-repo", str(repo))
    subprocess.run(["rm", "-rf", str(base)], check=False)


def trigger(repo: Path, dag_id: str, *extra: str) -> subprocess.CompletedProcess:
    """``ariel local trigger --wait``, its stderr's whitespace folded (the table wraps its last column)."""
    args = ("local", "trigger", dag_id, "--wait", "--timeout", "300", *extra, "--team-repo", str(repo))
    result = run_ariel(*args)
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout, " ".join(result.stderr.split())
    )


def test_a_task_over_its_memory_limit_fails_the_run_though_airflow_says_success(repo: Path) -> None:
    result = trigger(repo, "demo__hungry")
    assert result.returncode == 1, result.stderr
    assert "succeeded" in result.stderr  # Airflow's own verdict
    assert "memory over the limit 768Mi: the pod would be OOM-killed" in result.stderr
    assert "allocate used more memory than the pod's limit" in result.stderr
    allowed = trigger(repo, "demo__hungry", "--allow-over-limit")
    assert allowed.returncode == 0, allowed.stderr
    assert "OOM-killed" in allowed.stderr


def test_a_task_that_fits_passes(repo: Path) -> None:
    result = trigger(repo, "demo__modest")
    assert result.returncode == 0, result.stderr
    assert "medium" in result.stderr and "fits" in result.stderr


def test_usage_suggests_the_profile_that_covers_the_peak(repo: Path) -> None:
    assert trigger(repo, "demo__hungry").returncode == 1
    result = run_ariel("local", "usage", "demo__hungry", "--json", "--team-repo", str(repo))
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)["tasks"]
    worst = row["worst"]
    # The task process's own RSS (Airflow, the DAG) plus the 1 GiB it holds.
    assert worst["peak_memory_bytes"] > 1024 * MI
    assert worst["profile"] == "small" and row["verdict"] == "over the limit"
    assert worst["requests"] == {"cpu": "250m", "memory": "512Mi"}
    assert worst["limits"] == {"cpu": "375m", "memory": "768Mi"}
    # x 1.25 the peak: above small's 512Mi request, within medium's 2Gi while the peak is under 1.6 GiB.
    assert worst["peak_memory_bytes"] < 1600 * MI, worst
    assert row["suggestion"]["profile"] == "medium" and row["suggestion"]["source"] == "team"
    text = run_ariel("local", "usage", "--team-repo", str(repo), env={"COLUMNS": "200"})
    assert "demo__hungry" in text.stdout and "over the limit" in text.stdout and "medium" in text.stdout
