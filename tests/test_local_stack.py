"""The native local stack on real processes: Postgres, PgBouncer and the Airflow 3.3 components.

The tests share one stack (the module's fixture) but not each other's results: each passes alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ariel_airflow.localdev.stack import connect_db
from ariel_airflow.localdev.state import StackState, free_port

from conftest import (
    DEMO_DAG,
    ForegroundUp,
    copy_demo_team,
    no_traceback,
    pgbouncer_view,
    run_ariel,
    status_json,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

QUICK_DAG = """
from datetime import datetime, timedelta
from airflow.sdk import dag, task

@dag(dag_id="{dag_id}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False,
     tags=["team:demo"],
     default_args={{"owner": "demo", "retries": 0, "execution_timeout": timedelta(minutes=5)}})
def quick():
    @task
    def hello():
        print("hello")
    hello()

quick()
"""

FAILING_DAG = """
from datetime import datetime, timedelta
from airflow.sdk import dag, task

@dag(dag_id="demo__fails", schedule=None, start_date=datetime(2025, 1, 1), catchup=False,
     tags=["team:demo"],
     default_args={"owner": "demo", "retries": 0, "execution_timeout": timedelta(minutes=5)})
def fails():
    @task
    def explode():
        raise RuntimeError("MARKER-7f3a this task fails on purpose")
    explode()

fails()
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    base = Path(os.environ.get("ARIEL_TEST_DIR", "/tmp")) / f"ariel-stack-{os.getpid()}"
    base.mkdir(mode=0o755, parents=True)
    repo = copy_demo_team(base / "team-demo")
    (repo / "dags" / "demo_fails.py").write_text(FAILING_DAG)
    port = free_port()
    result = run_ariel(
        "local", "up", "--engine", "native", "--detach", "--port", str(port), "--team-repo", str(repo)
    )
    assert result.returncode == 0, result.stderr
    yield repo, port
    run_ariel("local", "down", "--purge", "--team-repo", str(repo))
    subprocess.run(["rm", "-rf", str(base)], check=False)


def stack_state(repo: Path) -> StackState:
    return StackState.model_validate_json((repo / ".ariel" / "stack.json").read_text())


def test_up_reports_progress_and_every_service_healthy(stack: tuple[Path, int]) -> None:
    repo, port = stack
    status = status_json(repo)
    assert status["url"] == f"http://127.0.0.1:{port}"
    health = {row["service"]: row["health"] for row in status["services"]}
    assert health == dict.fromkeys(
        ["postgres", "pgbouncer", "api-server", "scheduler", "dag-processor", "triggerer"],
        "healthy",
    )
    assert status["import_errors"] == []


def test_the_teams_pool_exists_and_its_tasks_run_in_it(stack: tuple[Path, int]) -> None:
    """The same pool as on the platform, the stack's parallelism its slots, and the platform's
    task_policy putting the team's tasks into it (the demo DAG names no pool)."""
    repo, _ = stack
    state = stack_state(repo)
    with connect_db(state.postgres_port, "airflow", state) as db:
        pools = dict(db.execute("SELECT pool, slots FROM slot_pool").fetchall())
    assert pools["team-demo"] == state.parallelism
    result = run_ariel("local", "trigger", DEMO_DAG, "--wait", "--timeout", "300", "--team-repo", str(repo))
    assert result.returncode == 0, result.stderr
    with connect_db(state.postgres_port, "airflow", state) as db:
        ran = db.execute(
            "SELECT DISTINCT pool, state FROM task_instance WHERE dag_id = %s", (DEMO_DAG,)
        ).fetchall()
    assert ran == [("team-demo", "success")]


def test_postgres_never_runs_as_root(stack: tuple[Path, int]) -> None:
    repo, _ = stack
    pid = json.loads((repo / ".ariel" / "run" / "postgres.pid").read_text())["pid"]
    owner = psutil.Process(pid).username()
    if os.geteuid() == 0:
        assert owner != "root"
    else:
        assert psutil.Process(pid).uids().real == os.getuid()


def test_demo_dag_reads_local_secrets_and_succeeds(stack: tuple[Path, int]) -> None:
    repo, _ = stack
    result = run_ariel("local", "trigger", DEMO_DAG, "--wait", "--timeout", "300", "--team-repo", str(repo))
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stderr


def test_failed_run_exits_nonzero_with_the_task_log(stack: tuple[Path, int]) -> None:
    repo, _ = stack
    result = run_ariel(
        "local", "trigger", "demo__fails", "--wait", "--timeout", "300", "--team-repo", str(repo)
    )
    assert result.returncode == 1
    assert "ended failed" in result.stderr
    assert "task explode" in result.stderr
    assert "MARKER-7f3a" in result.stderr


def test_every_component_talks_to_the_database_through_pgbouncer(stack: tuple[Path, int]) -> None:
    repo, _ = stack
    state = stack_state(repo)
    apps, pools = pgbouncer_view(state)
    assert {"ariel-api-server", "ariel-scheduler", "ariel-dag-processor", "ariel-triggerer"} <= apps
    assert ("airflow", "transaction") in pools
    # Postgres itself sees only PgBouncer's server connections, never a component directly.
    with connect_db(state.postgres_port, "postgres", state) as direct:
        ports = direct.execute(
            "SELECT client_port FROM pg_stat_activity WHERE datname = 'airflow' AND pid <> pg_backend_pid()"
        ).fetchall()
    pgbouncer = psutil.Process(json.loads((repo / ".ariel" / "run" / "pgbouncer.pid").read_text())["pid"])
    pgbouncer_ports = {c.laddr.port for c in pgbouncer.net_connections(kind="tcp")}
    assert ports and {p for (p,) in ports} <= pgbouncer_ports


def test_broken_dag_file_is_reported_and_harms_nothing_else(stack: tuple[Path, int]) -> None:
    repo, _ = stack
    (repo / "dags" / "broken_syntax.py").write_text(
        # It names airflow and dag, or the dag-processor's safe mode would not even open it.
        "from airflow.sdk import dag\n\ndef oops(:\n    pass\n"
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        errors = status_json(repo)["import_errors"] or []
        if any(e["file"].endswith("broken_syntax.py") for e in errors):
            break
        time.sleep(3)
    else:
        pytest.fail("the import error of broken_syntax.py never showed in `ariel local status`")
    text = run_ariel("local", "status", "--team-repo", str(repo))
    assert "broken_syntax.py" in text.stdout and "SyntaxError" in text.stdout
    assert text.returncode == 0  # all services still healthy
    result = run_ariel("local", "trigger", DEMO_DAG, "--wait", "--timeout", "300", "--team-repo", str(repo))
    assert result.returncode == 0, result.stderr
    (repo / "dags" / "broken_syntax.py").unlink()


POKE_FOREVER_DAG = """
from datetime import datetime, timedelta
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import dag

@dag(dag_id="demo__poke_forever", schedule=None, start_date=datetime(2025, 1, 1), tags=["team:demo"],
     default_args={"owner": "demo", "retries": 1, "execution_timeout": timedelta(minutes=5)})
def poke_forever():
    PythonSensor(task_id="wait", python_callable=lambda: False, mode="poke")

poke_forever()
"""


def test_the_local_dag_processor_refuses_what_ariel_check_refuses(stack: tuple[Path, int]) -> None:
    repo, _ = stack
    (repo / "dags" / "demo_poke_forever.py").write_text(POKE_FOREVER_DAG)
    check = run_ariel("check", str(repo), "--format", "json", "--select", "ARL101")
    assert check.returncode == 1 and json.loads(check.stdout)[0]["task_id"] == "wait"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        errors = status_json(repo)["import_errors"] or []
        refused = [e for e in errors if e["file"].endswith("demo_poke_forever.py")]
        if refused:
            break
        time.sleep(3)
    else:
        pytest.fail("the local dag-processor accepted a DAG that `ariel check` refuses")
    assert "AirflowClusterPolicyViolation" in refused[0]["error"] and "ARL101" in refused[0]["error"]
    (repo / "dags" / "demo_poke_forever.py").unlink()


def test_second_up_of_a_running_stack_is_refused(stack: tuple[Path, int]) -> None:
    repo, _ = stack
    result = run_ariel(
        "local", "up", "--engine", "native", "--detach", "--port", str(free_port()), "--team-repo", str(repo)
    )
    assert result.returncode == 2
    assert "already running" in result.stderr


def test_two_team_repositories_run_side_by_side(stack: tuple[Path, int]) -> None:
    repo, _ = stack
    other = copy_demo_team(repo.parent / "team-other")
    result = run_ariel(
        "local", "up", "--engine", "native", "--detach", "--port", str(free_port()), "--team-repo", str(other)
    )
    try:
        assert result.returncode == 0, result.stderr
        first, second = stack_state(repo), stack_state(other)
        assert {first.postgres_port, first.pgbouncer_port}.isdisjoint(
            {second.postgres_port, second.pgbouncer_port}
        )
        for team in (repo, other):
            assert {row["health"] for row in status_json(team)["services"]} == {"healthy"}
    finally:
        run_ariel("local", "down", "--purge", "--team-repo", str(other))


def _runs(repo: Path, dag_id: str) -> int:
    from ariel_airflow.localdev.native import NativeEngine
    from ariel_airflow.team import TeamRepo

    engine = NativeEngine(TeamRepo.load(repo))
    with engine.client() as client:
        engine.find_dag(client, dag_id, timeout=120)  # a new database knows the DAG once it is parsed
        return client.run_count(dag_id)


def test_unknown_dag_id_is_answered_at_once_with_the_close_match(stack: tuple[Path, int]) -> None:
    repo, _ = stack
    for parsed in (DEMO_DAG, "demo__fails"):  # every file is parsed: what follows is the answer's own time
        _runs(repo, parsed)
    for typo, expected in (("demo_daily_export", f"did you mean `{DEMO_DAG}`?"), ("no_such_dag", DEMO_DAG)):
        t0 = time.monotonic()
        result = run_ariel("local", "trigger", typo, "--wait", "--team-repo", str(repo))
        took = time.monotonic() - t0
        assert result.returncode == 2, result.stderr
        assert f"no DAG {typo!r}" in result.stderr and expected in result.stderr
        assert no_traceback(result)
        assert took < 15, f"`ariel local trigger {typo} --wait` took {took:.0f}s"


def test_unknown_dag_id_lists_the_import_errors(stack: tuple[Path, int]) -> None:
    repo, _ = stack
    broken = repo / "dags" / "demo_broken_import.py"
    broken.write_text("from airflow.sdk import dag\nimport no_such_module_4d1e\n")
    try:
        # Asked at once: the answer waits for the new file's parse, then names its error.
        result = run_ariel("local", "trigger", "demo__broken_import", "--team-repo", str(repo))
        assert result.returncode == 2, result.stderr
        assert "1 file fails to import" in result.stderr
        assert "demo_broken_import.py: ModuleNotFoundError" in result.stderr
        assert "no_such_module_4d1e" in result.stderr
    finally:
        broken.unlink()


def test_a_dag_file_added_just_now_is_found_and_runs(stack: tuple[Path, int]) -> None:
    repo, _ = stack
    added = repo / "dags" / "demo_added_now.py"
    added.write_text(QUICK_DAG.format(dag_id="demo__added_now"))
    try:
        result = run_ariel(
            "local", "trigger", "demo__added_now", "--wait", "--timeout", "300", "--team-repo", str(repo)
        )
        assert result.returncode == 0, result.stderr
        assert "succeeded" in result.stderr
    finally:
        added.unlink()


def test_down_keeps_history_foreground_stops_on_ctrl_c_and_purge_forgets(
    stack: tuple[Path, int],
) -> None:
    repo, port = stack
    ran = run_ariel("local", "trigger", DEMO_DAG, "--wait", "--timeout", "300", "--team-repo", str(repo))
    assert ran.returncode == 0, ran.stderr
    before = _runs(repo, DEMO_DAG)
    assert before >= 1
    assert run_ariel("local", "down", "--team-repo", str(repo)).returncode == 0
    assert not list((repo / ".ariel" / "run").glob("*.pid"))

    # Stopped: `status` says so, since when, and that the database is kept.
    stopped = status_json(repo, exit_code=3)
    assert stopped["running"] is False and stopped["stopped_cleanly"] is True
    assert stopped["database_kept"] is True and stopped["database"] == str(repo / ".ariel" / "pgdata")
    assert stopped["started_at"] < stopped["stopped_at"]
    text = run_ariel("local", "status", "--team-repo", str(repo))
    assert text.returncode == 3
    assert "is not running: stopped with `ariel local down`" in text.stdout
    assert "metadata database is kept" in text.stdout
    assert "import errors" not in text.stdout and f":{port}" not in text.stdout

    # Foreground `up`: history is back, and Ctrl-C stops everything.
    up = ForegroundUp(
        "--engine", "native", "--port", str(port), "--team-repo", str(repo), log=repo.parent / "up.log"
    )
    up.wait_until_up()
    assert _runs(repo, DEMO_DAG) == before
    assert status_json(repo)["running"] is True
    pids = [json.loads(p.read_text())["pid"] for p in (repo / ".ariel" / "run").glob("*.pid")]
    code, err = up.ctrl_c()
    assert code == 0, err
    assert "stopping" in err
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)

    assert run_ariel("local", "down", "--purge", "--team-repo", str(repo)).returncode == 0
    assert not (repo / ".ariel").exists()
    purged = status_json(repo, exit_code=3)
    assert purged["running"] is False and purged["database_kept"] is False
    assert "No metadata database is kept" in run_ariel("local", "status", "--team-repo", str(repo)).stdout
    result = run_ariel(
        "local", "up", "--engine", "native", "--detach", "--port", str(port), "--team-repo", str(repo)
    )
    assert result.returncode == 0, result.stderr
    assert "database cluster created" in result.stderr
    assert _runs(repo, DEMO_DAG) == 0


def test_an_idle_scheduler_holds_no_task_workers(stack: tuple[Path, int]) -> None:
    """Airflow's LocalExecutor forks `parallelism` workers at start and keeps them, each 30-90 MB
    once it has supervised a task; the stack's executor forks one per workload and retires it when
    the workload is done."""
    repo, _ = stack
    result = run_ariel("local", "trigger", DEMO_DAG, "--wait", "--timeout", "300", "--team-repo", str(repo))
    assert result.returncode == 0, result.stderr
    scheduler = psutil.Process(json.loads((repo / ".ariel" / "run" / "scheduler.pid").read_text())["pid"])
    deadline = time.monotonic() + 30  # the scheduler reads the last result on its next heartbeat
    while (workers := scheduler.children()) and time.monotonic() < deadline:
        time.sleep(1)
    assert workers == []
