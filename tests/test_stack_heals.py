"""A detached stack heals like the platform, and nothing of it outlives `down` (native and Docker).

Real processes and containers killed with SIGKILL; the proof that nothing is left is a scan of
every process on the machine (by the stack's mark, its working directory and its sessions).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from ariel_airflow.localdev.docker_engine import DockerEngine
from ariel_airflow.localdev.native import NativeEngine
from ariel_airflow.localdev.processes import STACK_ENV
from ariel_airflow.localdev.state import free_port
from ariel_airflow.team import TeamRepo

from conftest import copy_demo_team, run_ariel, status_json

AIRFLOW = ["api-server", "scheduler", "dag-processor", "triggerer"]


@pytest.fixture
def base() -> Iterator[Path]:
    folder = Path(os.environ.get("ARIEL_TEST_DIR", "/tmp")) / f"ariel-heal-{os.getpid()}-{time.time_ns()}"
    folder.mkdir(mode=0o755, parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def up(repo: Path, engine: str) -> str:
    result = run_ariel(
        "local", "up", "--engine", engine, "--detach", "--port", str(free_port()), "--team-repo", str(repo)
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def down(repo: Path, *args: str) -> None:
    result = run_ariel("local", "down", *args, "--team-repo", str(repo))
    assert result.returncode == 0, result.stderr


def rows(repo: Path, exit_code: int = 0) -> dict[str, dict]:
    return {row["service"]: row for row in status_json(repo, exit_code)["services"]}


def eventually(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        time.sleep(1)


def healthy_again(repo: Path, service: str, restarts: int) -> Callable[[], bool]:
    def check() -> bool:
        status = status_json_any(repo)
        row = {r["service"]: r for r in status.get("services", [])}.get(service, {})
        return row.get("restarts") == restarts and all(
            r["health"] == "healthy" for r in status.get("services", [])
        )

    return check


def status_json_any(repo: Path) -> dict:
    import json

    result = run_ariel("local", "status", "--json", "--team-repo", str(repo))
    return json.loads(result.stdout) if result.stdout.strip() else {}


# A task that runs long enough to be caught running: the local executor forks a worker per task and
# retires it when the task ends, so workers exist only while a task runs.
LONG_DAG_ID = "demo__long_task"
LONG_DAG = f"""
import time
from datetime import datetime, timedelta
from airflow.sdk import dag, task

@dag(dag_id="{LONG_DAG_ID}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False,
     tags=["team:demo"],
     default_args={{"owner": "demo", "retries": 0, "execution_timeout": timedelta(minutes=10)}})
def long_task():
    @task
    def wait():
        time.sleep(600)
    wait()

long_task()
"""


def scheduler_with_workers(repo: Path, table) -> tuple[object, list[psutil.Process]]:  # noqa: ANN001
    """The scheduler and its LocalExecutor worker (and the task it runs), in its session, mid-task."""
    result = run_ariel("local", "trigger", LONG_DAG_ID, "--team-repo", str(repo))
    assert result.returncode == 0, result.stderr
    scheduler = table.get("scheduler")

    def in_its_session() -> list[psutil.Process]:
        return [p for p in psutil.process_iter() if _sid(p.pid) == scheduler.pid and p.pid != scheduler.pid]

    eventually(lambda: bool(in_its_session()), 240, "a running task's worker in the scheduler's session")
    return scheduler, in_its_session()


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:  # gone meanwhile
        return None


def leftovers(state_dir: Path, sessions: set[int]) -> list[str]:
    """Every process on the machine that belongs to the stack: its mark, its cwd, or one of its sessions."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            mine = (
                proc.environ().get(STACK_ENV, "").startswith(str(state_dir))
                or proc.cwd().startswith(str(state_dir))
                or os.getsid(proc.pid) in sessions
            )
            if mine and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:120]}")
        except (psutil.Error, OSError):
            continue
    return found


@pytest.mark.slow
@pytest.mark.postgres
def test_native_stack_restarts_what_dies_up_starts_what_is_missing_and_down_leaves_nothing(
    base: Path,
) -> None:
    repo = copy_demo_team(base / "team-demo")
    (repo / "dags" / "demo_long_task.py").write_text(LONG_DAG)
    up(repo, "native")
    table = NativeEngine(TeamRepo.load(repo)).table
    sessions = {table.get(name).pid for name in ["postgres", "pgbouncer", *AIRFLOW]}
    assert table.get("launcher").alive(), "a detached stack keeps its supervisor"

    # kill -9 of the scheduler: its LocalExecutor workers lose their parent, the supervisor
    # kills them (its pod's other processes) and starts the scheduler again.
    scheduler = table.get("scheduler")
    workers = [
        p for p in psutil.process_iter() if os.getsid(p.pid) == scheduler.pid and p.pid != scheduler.pid
    ]
    os.kill(scheduler.pid, signal.SIGKILL)
    eventually(healthy_again(repo, "scheduler", 1), 240, "the scheduler restarted once and all healthy")
    row = rows(repo)["scheduler"]
    assert row["last_exit"] == "signal SIGKILL" and row["pid"] != scheduler.pid
    assert not [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    sessions.add(row["pid"])

    # Without its supervisor, a killed component stays dead: status says so, and `up` starts only it.
    os.kill(table.get("launcher").pid, signal.SIGKILL)
    before = {name: table.get(name).pid for name in ["postgres", "pgbouncer", "api-server", "triggerer"]}
    processor = table.get("dag-processor")
    os.kill(processor.pid, signal.SIGKILL)
    eventually(lambda: not processor.alive(), 10, "the dag-processor is gone")
    assert rows(repo, exit_code=1)["dag-processor"]["health"] == "stopped"
    assert "partly running: starting dag-processor" in up(repo, "native")
    assert {name: table.get(name).pid for name in before} == before, "what ran was left alone"
    assert all(row["health"] == "healthy" for row in rows(repo).values())
    sessions.add(table.get("dag-processor").pid)

    # `down` with the scheduler's leader gone and an unreadable stack.json still stops everything.
    scheduler, workers = scheduler_with_workers(repo, table)
    sessions.add(scheduler.pid)
    os.kill(table.get("launcher").pid, signal.SIGKILL)  # so nobody restarts it
    os.kill(scheduler.pid, signal.SIGKILL)
    (repo / ".ariel" / "stack.json").write_text("{ not json")
    down(repo)
    assert leftovers(repo / ".ariel", sessions) == []
    assert not [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    down(repo, "--purge")


@pytest.mark.slow
@pytest.mark.docker
def test_docker_stack_restarts_what_dies_and_up_starts_what_is_missing(docker_client, base: Path) -> None:  # noqa: ANN001
    repo = copy_demo_team(base / "team-demo")
    up(repo, "docker")
    engine = DockerEngine(TeamRepo.load(repo))
    try:
        # The scheduler's process dies (an OOM kill, a crash): its restart policy starts it again.
        scheduler = engine.containers()["scheduler"]
        os.kill(scheduler.attrs["State"]["Pid"], signal.SIGKILL)
        # At once: the daemon's event log, where the code is once the container runs again, is short.
        now = {row["service"]: row for row in status_json_any(repo)["services"]}
        assert now["scheduler"]["last_exit"] == "signal SIGKILL"
        eventually(healthy_again(repo, "scheduler", 1), 240, "the scheduler restarted once and all healthy")

        # `docker kill` is a stop by hand (the policy leaves it stopped); `up` starts only it.
        started = {
            n: c.attrs["State"]["StartedAt"] for n, c in engine.containers().items() if n != "triggerer"
        }
        engine.containers()["triggerer"].kill()
        assert rows(repo, exit_code=1)["triggerer"]["health"] == "stopped"
        assert "partly running: starting triggerer" in up(repo, "docker")
        after = {n: c.attrs["State"]["StartedAt"] for n, c in engine.containers().items() if n in started}
        assert {n: after[n] for n in AIRFLOW if n != "triggerer"} == {
            n: started[n] for n in AIRFLOW if n != "triggerer"
        }
        assert all(row["health"] == "healthy" for row in rows(repo).values())
    finally:
        down(repo, "--purge")
    assert engine.containers() == {}
