from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from ariel_airflow.localdev.docker_tools import COMPOSE_COMMANDS, Compose
from ariel_airflow.localdev.stack import connect_db
from ariel_airflow.localdev.state import StackState

KIT_ROOT = Path(__file__).resolve().parents[1]
# The unmodified official Airflow chart: ARIEL_AIRFLOW_CHART (as `ariel platform render` reads it; CI
# sets it, so there the tests fail rather than skip without the chart), else beside the kit's checkout.
CHART = Path(os.environ.get("ARIEL_AIRFLOW_CHART") or KIT_ROOT.parent / "shared" / "airflow-chart" / "chart")
ARIEL = [sys.executable, "-m", "ariel_airflow"]


def run_ariel(
    *args: str, cwd: Path | None = None, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ARIEL, *args],
        cwd=cwd,
        env={**os.environ, **env} if env else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A scratch folder every user can enter (Postgres runs unprivileged when the tests run as root)."""
    path = Path(tempfile.mkdtemp(prefix="ariel-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class ForegroundUp:
    """``ariel local up`` in the foreground, as a user runs it, stopped with Ctrl-C (SIGINT)."""

    def __init__(self, *args: str, log: Path) -> None:
        self.log = log
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [*ARIEL, "local", "up", *args], stdout=subprocess.DEVNULL, stderr=err
            )

    def wait_until_up(self, timeout: float = 300) -> None:
        """Until ``up`` says the stack is up and waits for Ctrl-C (not merely until it is healthy)."""
        deadline = time.monotonic() + timeout
        while "Press Ctrl-C to stop" not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(1)

    def ctrl_c(self, timeout: float = 120) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout), self.log.read_text()


DEMO_DAG = "demo__daily_export"  # the example DAG of a team called "demo"


def copy_demo_team(dest: Path) -> Path:
    """A demo team repository, generated from the template as a team would."""
    from ariel_airflow.template import generate_team_repo

    return generate_team_repo(dest, "demo")


def status_json(repo: Path, exit_code: int = 0) -> dict:
    """`ariel local status --json`, which must exit ``exit_code`` (0: running and healthy)."""
    result = run_ariel("local", "status", "--json", "--team-repo", str(repo))
    assert result.returncode == exit_code, result.stdout + result.stderr
    return json.loads(result.stdout)


def no_traceback(result: subprocess.CompletedProcess) -> bool:
    return "Traceback" not in result.stderr and "Traceback" not in result.stdout


# The tests remove their own containers; Ryuk, testcontainers' reaper, is an image from a registry.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


@pytest.fixture(scope="session")
def docker_client():  # noqa: ANN201 - docker is imported lazily
    """The Docker SDK's client. Without a daemon the Docker tests are skipped with the reason, or
    fail when ARIEL_REQUIRE_DOCKER is set (CI, where they must run)."""
    return require_docker_daemon()


def require_docker_daemon():  # noqa: ANN201
    """The Docker SDK's client of the daemon DOCKER_HOST names; skip or fail as ``docker_unavailable``."""
    import docker
    import requests

    try:
        client = docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        docker_unavailable(f"no Docker daemon answers ({exc.__class__.__name__}: {exc})")
    return client


def docker_unavailable(reason: str) -> NoReturn:
    """Skip a Docker test with the reason; fail it where it must run (ARIEL_REQUIRE_DOCKER, as in CI)."""
    if os.environ.get("ARIEL_REQUIRE_DOCKER"):
        pytest.fail(reason + "; ARIEL_REQUIRE_DOCKER is set")
    pytest.skip(reason)


@pytest.fixture(scope="module", params=COMPOSE_COMMANDS)
def compose_flavour(request: pytest.FixtureRequest) -> Iterator[Compose]:
    """Each Compose the kit supports in turn (ARIEL_COMPOSE set for the module's tests and the commands
    they run); a missing one is skipped with the reason, or fails under ARIEL_REQUIRE_DOCKER."""
    from ariel_airflow.errors import UserError
    from ariel_airflow.localdev.docker_tools import COMPOSE_SETTING, find_compose

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(COMPOSE_SETTING, request.param)
        try:
            found = find_compose()
        except UserError as exc:
            docker_unavailable(f"Compose {request.param} is missing: {exc.message}")
        yield found


def path_without(folder: Path, *commands: str) -> str:
    """A PATH that finds every command of the current one except ``commands``: links in ``folder``."""
    folder.mkdir(parents=True)
    for entry in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not os.path.isdir(entry):
            continue
        for program in Path(entry).iterdir():
            link = folder / program.name
            if program.name not in commands and not os.path.lexists(link) and os.access(program, os.X_OK):
                link.symlink_to(program)
    return str(folder)


def pgbouncer_view(state: StackState) -> tuple[set[str], set[tuple[str, str]]]:
    """Application names of PgBouncer's clients of the airflow database, and its (database, pool mode)s."""
    with connect_db(state.pgbouncer_port, "pgbouncer", state, autocommit=True) as admin:
        cur = admin.execute("SHOW CLIENTS")
        columns = [c.name for c in cur.description]
        clients = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
        pools = admin.execute("SHOW POOLS").fetchall()
    return {c["application_name"] for c in clients if c["database"] == "airflow"}, {
        (r[0], r[-1]) for r in pools
    }


@pytest.fixture(autouse=True)
def _no_user_airflow_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Anything that imports Airflow in-process keeps its files out of ~/airflow.
    monkeypatch.setenv("AIRFLOW_HOME", os.fspath(tmp_path / "airflow-home"))
