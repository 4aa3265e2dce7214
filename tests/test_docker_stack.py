"""The Docker engine on a real daemon: images built here, Compose, the same commands as native."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import psycopg
import pytest

from ariel_airflow.localdev.docker_engine import DockerEngine
from ariel_airflow.localdev.docker_tools import Compose
from ariel_airflow.localdev.progress import Progress
from ariel_airflow.localdev.state import StackState, free_port
from ariel_airflow.team import TeamRepo

from conftest import (
    DEMO_DAG,
    ForegroundUp,
    copy_demo_team,
    no_traceback,
    pgbouncer_view,
    run_ariel,
    status_json,
)

pytestmark = pytest.mark.docker

SERVICES = ["postgres", "pgbouncer", "api-server", "scheduler", "dag-processor", "triggerer"]
COMPOSE_VERSION_LABEL = "com.docker.compose.version"  # which Compose created a container


class DockerStack(NamedTuple):
    repo: Path
    progress: str  # what `up` printed
    compose: Compose  # the Compose that runs it


@pytest.fixture(scope="module")
def docker_stack(docker_client, compose_flavour: Compose) -> Iterator[DockerStack]:  # noqa: ANN001
    """A demo team repository on the Docker engine, started with ``--engine auto`` (a daemon answers),
    once under each Compose (ARIEL_COMPOSE set by ``compose_flavour``)."""
    base = (
        Path(os.environ.get("ARIEL_TEST_DIR", "/tmp"))
        / f"ariel-docker-{os.getpid()}-{compose_flavour.flavour}"
    )
    base.mkdir(mode=0o755, parents=True)
    repo = copy_demo_team(base / "team-demo")
    port = free_port()
    result = run_ariel("local", "up", "--detach", "--port", str(port), "--team-repo", str(repo))
    assert result.returncode == 0, result.stderr
    assert "(docker engine)" in result.stderr
    yield DockerStack(repo, result.stderr, compose_flavour)
    run_ariel("local", "down", "--purge", "--team-repo", str(repo))
    shutil.rmtree(base, ignore_errors=True)


def engine(repo: Path) -> DockerEngine:
    return DockerEngine(TeamRepo.load(repo))


def stack_state(repo: Path) -> StackState:
    return StackState.model_validate_json((repo / ".ariel" / "stack.json").read_text())


@pytest.mark.slow
def test_up_reports_progress_and_every_service_healthy(docker_stack: DockerStack) -> None:
    repo, progress, _ = docker_stack
    for line in ("postgres healthy", "pgbouncer healthy", "metadata database migrated", "triggerer healthy"):
        assert line in progress
    assert "Airflow is up" in progress
    status = status_json(repo)
    assert status["engine"] == "docker"
    assert {row["service"]: row["health"] for row in status["services"]} == dict.fromkeys(SERVICES, "healthy")
    assert status["import_errors"] == []
    # Compose made exactly the model's services, and the one-shot jobs (migration, pool) succeeded.
    containers = engine(repo).containers()
    assert set(containers) == {*SERVICES, "migrate"}
    assert containers["migrate"].attrs["State"]["ExitCode"] == 0


@pytest.mark.slow
def test_the_compose_asked_for_made_the_containers(docker_stack: DockerStack) -> None:
    repo, _, compose = docker_stack
    labels = {c.labels[COMPOSE_VERSION_LABEL] for c in engine(repo).containers().values()}
    reported = subprocess.run(
        [*compose.argv, "version", "--short"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert labels == {reported.removeprefix("v")}, compose.argv
    if compose.flavour == "v2":
        assert reported.removeprefix("v").startswith("2."), reported


@pytest.mark.slow
def test_database_runs_unprivileged_and_airflow_as_the_host_user(docker_stack: DockerStack) -> None:
    repo = docker_stack.repo
    containers = engine(repo).containers()
    for name in ("postgres", "pgbouncer"):
        code, out = containers[name].exec_run(["id", "-u"])
        assert code == 0 and out.strip() != b"0", name
    assert containers["scheduler"].attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"


@pytest.mark.slow
def test_demo_dag_reads_local_secrets_and_succeeds(docker_stack: DockerStack) -> None:
    """It succeeds, and each task's usage, recorded in its container, reaches the host's CLI."""
    repo = docker_stack.repo
    result = run_ariel("local", "trigger", DEMO_DAG, "--wait", "--timeout", "300", "--team-repo", str(repo))
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stderr
    assert "fits" in result.stderr  # the verdict table, from the usage records
    usage = run_ariel("local", "usage", DEMO_DAG, "--json", "--team-repo", str(repo))
    assert usage.returncode == 0, usage.stderr
    rows = json.loads(usage.stdout)["tasks"]
    assert len(rows) >= 2
    for row in rows:
        worst = row["worst"]
        assert worst["peak_memory_bytes"] > 20 * 2**20, row  # a Python task process, at least
        assert worst["profile"] and worst["limits"]["memory"], row  # its pod, merged as `ariel check` does


@pytest.mark.slow
def test_the_teams_pool_exists_and_its_tasks_run_in_it(docker_stack: DockerStack) -> None:
    """The same pool as on the native engine and the platform, made by the compose's migration job."""
    repo = docker_stack.repo
    state = stack_state(repo)
    result = run_ariel("local", "trigger", DEMO_DAG, "--wait", "--timeout", "300", "--team-repo", str(repo))
    assert result.returncode == 0, result.stderr
    query = (
        "SELECT 'pool', pool, slots FROM slot_pool WHERE pool = 'team-demo' UNION ALL "
        f"SELECT DISTINCT 'ran', pool, 0 FROM task_instance WHERE dag_id = '{DEMO_DAG}'"
    )
    postgres = engine(repo).containers()["postgres"]
    argv = ["psql", "-h", "127.0.0.1", "-p", str(state.postgres_port), "-U", "airflow", "-d", "airflow"]
    code, out = postgres.exec_run([*argv, "-tAc", query])
    assert code == 0, out
    assert sorted(out.decode().split()) == sorted([f"pool|team-demo|{state.parallelism}", "ran|team-demo|0"])


@pytest.mark.slow
def test_every_airflow_connection_goes_through_pgbouncer(docker_stack: DockerStack) -> None:
    repo = docker_stack.repo
    state = stack_state(repo)
    apps, pools = pgbouncer_view(state)
    assert {"ariel-api-server", "ariel-scheduler", "ariel-dag-processor", "ariel-triggerer"} <= apps
    assert ("airflow", "transaction") in pools
    # Seen from Postgres, every session of the airflow database comes from the PgBouncer container.
    containers = engine(repo).containers()
    pgbouncer_ips = {
        net["IPAddress"] for net in containers["pgbouncer"].attrs["NetworkSettings"]["Networks"].values()
    }
    query = (
        "SELECT DISTINCT host(client_addr) FROM pg_stat_activity "
        "WHERE datname = 'airflow' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    code, out = containers["postgres"].exec_run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(state.postgres_port),
            "-U",
            "airflow",
            "-d",
            "airflow",
            "-tAc",
            query,
        ]
    )
    assert code == 0, out
    sources = set(out.decode().split()) - {"127.0.0.1"}  # our own psql
    assert sources and sources <= pgbouncer_ips


@pytest.mark.slow
def test_logs_of_one_service_and_a_clear_error_for_an_unknown_one(docker_stack: DockerStack) -> None:
    repo = docker_stack.repo
    result = run_ariel("local", "logs", "api-server", "-n", "50", "--team-repo", str(repo))
    assert result.returncode == 0 and "status_code=200" in result.stdout
    result = run_ariel("local", "logs", "nope", "--team-repo", str(repo))
    assert result.returncode == 2 and "dag-processor" in result.stderr


@pytest.mark.slow
def test_second_up_is_refused_while_running(docker_stack: DockerStack) -> None:
    repo = docker_stack.repo
    result = run_ariel(
        "local", "up", "--engine", "docker", "--detach", "--port", str(free_port()), "--team-repo", str(repo)
    )
    assert result.returncode == 2 and "already running" in result.stderr
    result = run_ariel(
        "local", "up", "--engine", "native", "--detach", "--port", str(free_port()), "--team-repo", str(repo)
    )
    assert result.returncode == 2 and "on the docker engine" in result.stderr


def test_malformed_secrets_file_names_the_line_before_anything_starts(docker_client, workdir: Path) -> None:  # noqa: ANN001
    repo = copy_demo_team(workdir / "team")
    (repo / ".local" / "connections.yaml").write_text("demo_warehouse: http://h\nbad: [\n")
    result = run_ariel(
        "local", "up", "--engine", "docker", "--detach", "--port", str(free_port()), "--team-repo", str(repo)
    )
    assert result.returncode == 2
    assert "connections.yaml" in result.stderr and "line 2" in result.stderr
    assert no_traceback(result)
    stack = engine(repo)
    assert stack.containers() == {}
    assert not docker_client.volumes.list(filters={"name": f"{stack.project}_pgdata"})


@pytest.mark.slow  # builds the images when they are not there yet
def test_db_image_follows_the_official_postgres_contract(docker_client, workdir: Path) -> None:  # noqa: ANN001
    """testcontainers' PostgresContainer, made for the official image, drives ours unchanged."""
    from testcontainers.community.postgres import PostgresContainer

    repo = copy_demo_team(workdir / "team")
    image = engine(repo).build_images(Progress())["db"]
    with PostgresContainer(image, username="tc", password="s3cret", dbname="tcdb", driver=None) as pg:
        with psycopg.connect(pg.get_connection_url()) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == ("tc", "tcdb")
        code, out = pg.exec(["pgbouncer", "--version"])
        assert code == 0 and b"PgBouncer" in out


@pytest.mark.slow
def test_down_keeps_history_foreground_stops_on_ctrl_c_and_purge_forgets(
    docker_stack: DockerStack,
    docker_client,  # noqa: ANN001
) -> None:
    repo = docker_stack.repo
    stack = engine(repo)
    result = run_ariel("local", "trigger", DEMO_DAG, "--wait", "--timeout", "300", "--team-repo", str(repo))
    assert result.returncode == 0, result.stderr  # history that `down` must keep
    with stack.client() as client:
        before = client.run_count(DEMO_DAG)
    assert before >= 1
    result = run_ariel("local", "down", "--team-repo", str(repo))
    assert result.returncode == 0 and "stopped" in result.stderr
    assert stack.containers() == {}

    # Foreground `up`: the images are not rebuilt, history is back, and Ctrl-C removes every container.
    port = stack_state(repo).ui_port
    up = ForegroundUp(
        "--engine", "docker", "--port", str(port), "--team-repo", str(repo), log=repo.parent / "up.log"
    )
    up.wait_until_up()
    with stack.client() as client:
        client.wait_for_dag(DEMO_DAG, timeout=120)
        assert client.run_count(DEMO_DAG) == before
    code, err = up.ctrl_c()
    assert code == 0, err
    assert "is up to date" in err and "stopping" in err
    assert stack.containers() == {}

    volume = f"{stack.project}_pgdata"
    assert docker_client.volumes.list(filters={"name": volume})
    assert run_ariel("local", "down", "--purge", "--team-repo", str(repo)).returncode == 0
    assert not docker_client.volumes.list(filters={"name": volume})
    assert not (repo / ".ariel").exists()


@pytest.mark.slow  # builds the db image when it is not there yet
def test_a_failed_image_build_names_its_log_and_the_settings_that_help(docker_client, workdir: Path) -> None:  # noqa: ANN001
    repo = copy_demo_team(workdir / "team")
    (repo / "requirements.txt").write_text("ariel-no-such-package-7f3a==1.0\n")
    containers_before = {c.id for c in docker_client.containers.list(all=True)}
    result = run_ariel(
        "local", "up", "--engine", "docker", "--detach", "--port", str(free_port()), "--team-repo", str(repo)
    )
    assert result.returncode == 2, result.stderr
    assert "building ariel-local/airflow" in result.stderr and "ariel-no-such-package-7f3a" in result.stderr
    assert "ARIEL_PIP_INDEX_URL" in result.stderr
    assert (repo / ".ariel" / "docker" / "build" / "airflow.build.log").is_file()
    assert no_traceback(result)
    # No stack container, and no container of the failed build step either.
    assert {c.id for c in docker_client.containers.list(all=True)} == containers_before
